//! Importing Fashion-MNIST from its four gzipped IDX files.

use crate::canonical::{write_dataset, Dataset, SplitData};
use crate::idx_dir::read_pair;
use crate::{DatasetError, Manifest, Source};
use std::path::Path;

/// Where Debian's packaged Fashion-MNIST files live.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The ten Fashion-MNIST class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Reads the Fashion-MNIST files from `src` (e.g. [`FASHION_MNIST_DIR`]) and writes the
/// canonical form of dataset `name` to `out`, with splits `train` and `test`.
pub fn import_fashion_mnist(src: &Path, out: &Path, name: &str) -> Result<Manifest, DatasetError> {
    let splits = vec![
        read_split(src, "train", "train")?,
        read_split(src, "test", "t10k")?,
    ];
    let dataset = Dataset {
        source: Source::FashionMnist,
        classes: FASHION_MNIST_CLASSES
            .iter()
            .map(|c| c.to_string())
            .collect(),
        splits,
    };
    write_dataset(out, name, dataset)
}

fn read_split(src: &Path, split: &str, prefix: &str) -> Result<SplitData, DatasetError> {
    let images = src.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let labels = src.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let data = read_pair(split, &images, &labels)?;
    if data.shape != [1, 28, 28] {
        let reason = format!(
            "Fashion-MNIST images are 28x28 grayscale, not C,H,W = {:?}",
            data.shape
        );
        return Err(DatasetError::layout(&images, reason));
    }
    let labels_ok = data.labels.iter().flatten().all(|l| (0..10).contains(l));
    if !labels_ok {
        return Err(DatasetError::layout(
            &labels,
            "Fashion-MNIST labels must be 0..9",
        ));
    }
    Ok(data)
}
