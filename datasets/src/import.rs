//! `import_dir`: detecting a local dataset's layout and importing it.

use crate::canonical::write_dataset;
use crate::{folder, idx_dir, DatasetError, Manifest};
use std::path::Path;

/// Detects the layout of the dataset in `src` and writes the canonical form of dataset
/// `name` to `out`.
///
/// Layouts, tried in this order:
/// 1. MNIST-IDX: `{train,t10k,test}-images*` with matching `…-labels*` files (optionally
///    gzipped); `t10k` and `test` both become split `test`; classes are `"0"`..`"k-1"`.
/// 2. Image folder: `train/<class>/*` and/or `test/<class>/*` with `.png`/`.jpg`/`.jpeg`
///    files; classes are the sorted union of the class folder names.
/// 3. Unlabelled: image files directly in `src`, giving one split `all`.
///
/// All images must share one width and height. Images are grayscale (C = 1) when every one
/// is, otherwise all are converted to RGB (C = 3). Samples are ordered by path.
pub fn import_dir(src: &Path, out: &Path, name: &str) -> Result<Manifest, DatasetError> {
    let names = folder::list_names(src)?;
    let dataset = match idx_dir::try_import(src, &names)? {
        Some(d) => d,
        None => match folder::try_import(src, &names)? {
            Some(d) => d,
            None => {
                return Err(DatasetError::UnknownFormat {
                    dir: src.to_path_buf(),
                })
            }
        },
    };
    write_dataset(out, name, dataset)
}
