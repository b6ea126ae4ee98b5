//! Importing the real Fashion-MNIST files that Debian ships.

use flate2::read::GzDecoder;
use idunno_datasets::{
    import_fashion_mnist, load_split, Manifest, Source, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR,
};
use std::io::Read;
use std::path::Path;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn imports_and_loads_fashion_mnist() {
    let src = Path::new(FASHION_MNIST_DIR);
    let out = tempfile::tempdir().unwrap();
    let m = import_fashion_mnist(src, out.path(), "fashion").unwrap();

    assert_eq!(m.name, "fashion");
    assert_eq!(m.source, Source::FashionMnist);
    assert_eq!(m.shape, [1, 28, 28]);
    assert_eq!(m.input_elems(), 784);
    assert_eq!(m.classes, FASHION_MNIST_CLASSES.map(String::from).to_vec());
    assert_eq!(m.splits["train"].count, 60_000);
    assert_eq!(m.splits["test"].count, 10_000);
    assert!((m.mean[0] - 0.286).abs() < 0.002, "mean {}", m.mean[0]);
    assert!((m.std[0] - 0.353).abs() < 0.002, "std {}", m.std[0]);
    assert_eq!(m.files().len(), 4);
    assert!(m.files().iter().all(|f| f.sha256.len() == 64));
    assert_eq!(Manifest::read(out.path()).unwrap(), m);

    let test = load_split(out.path(), &m, "test").unwrap();
    assert_eq!((test.count, test.shape), (10_000, [1, 28, 28]));
    let raw_images = gunzip(&src.join("t10k-images-idx3-ubyte.gz"));
    let raw_labels = gunzip(&src.join("t10k-labels-idx1-ubyte.gz"));
    assert_eq!(test.pixels, raw_images[16..]);
    let expected: Vec<i64> = raw_labels[8..].iter().map(|&l| l as i64).collect();
    assert_eq!(test.labels.unwrap(), expected);

    let train = load_split(out.path(), &m, "train").unwrap();
    let raw_train = gunzip(&src.join("train-images-idx3-ubyte.gz"));
    assert_eq!(train.pixels[..784 * 3], raw_train[16..16 + 784 * 3]);
    assert_eq!(train.labels.unwrap().len(), 60_000);
}
