//! IDunno's canonical on-disk dataset form.
//!
//! A user's local dataset (Fashion-MNIST, an MNIST-style IDX directory, an image folder with
//! one sub-folder per class, or a plain folder of images) is turned into a directory of
//! IDX files plus a `manifest.json` ([`Manifest`]). The CLI uploads each file of that directory
//! to the cluster's file store as `datasets/<name>/<file>`; worker nodes download them and read
//! one split back with [`load_split`], which checks every file against the manifest's sha256.
//!
//! Per split (`train`, `test`, or `all` for an unlabelled folder) the directory holds:
//! - `<split>-images.idx`: IDX ubyte, dims `N×H×W` (C = 1) or `N×H×W×C` (C = 3), row-major;
//! - `<split>-labels.idx`: IDX ubyte when there are at most 256 classes, else int32; absent
//!   when unlabelled;
//! - `<split>-files.txt`: for image-folder sources, one source path per line in sample order.
//!
//! This crate does blocking file I/O and hashing: call it from a blocking thread, never on an
//! async runtime.

#![warn(missing_docs)]

mod canonical;
mod decode;
mod error;
mod fashion;
mod folder;
mod hash;
pub mod idx;
mod idx_dir;
mod import;
pub mod limits;
mod load;
mod manifest;
mod manifest_check;

pub use decode::{decode_limits, image_to_chw, ImageError};
pub use error::DatasetError;
pub use fashion::{import_fashion_mnist, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR};
pub use hash::sha256_file;
pub use import::import_dir;
pub use limits::{Limit, Limits};
pub use load::{load_split, load_split_with, Split};
pub use manifest::{FileRef, Manifest, Source, SplitInfo, MANIFEST_FILE, MANIFEST_VERSION};
