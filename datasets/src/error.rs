//! The one error type of this crate.

use crate::limits::{sentence, Limit};
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while importing or loading a dataset.
///
/// No variant is retryable by itself: each names the file or directory at fault, and the
/// user has to fix it. An import that fails may leave a partly written output directory
/// (never a `manifest.json`, which is written last); a failed load changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or directory could not be read, written or listed.
    #[error("could not access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file is not a well-formed IDX file (bad magic, type, dimensions or trailing data).
    #[error("{path} is not a valid IDX file: {reason}")]
    BadIdx {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An IDX file ends before the payload its header announces.
    #[error("{path} is truncated: its header announces {expected} bytes of data but only {actual} are present")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Payload bytes announced by the header.
        expected: u64,
        /// Payload bytes present.
        actual: u64,
    },
    /// A directory matches none of the supported layouts.
    #[error("{dir} is neither an MNIST-IDX directory (train-images…/train-labels…) nor an image folder (train/<class>/*.png|jpg) nor a folder of images")]
    UnknownFormat {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory has a supported layout but something in it does not fit.
    #[error("{path}: {reason}")]
    Layout {
        /// The file or directory at fault.
        path: PathBuf,
        /// One sentence saying what does not fit.
        reason: String,
    },
    /// An images file and its labels file hold different numbers of samples.
    #[error("{images} holds {images_count} images but {labels} holds {labels_count} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images in it.
        images_count: u64,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels in it.
        labels_count: u64,
    },
    /// Two images of one dataset differ in width or height (sizes are width×height).
    #[error("images differ in size: {first} is {}x{} but {second} is {}x{}", first_size.0, first_size.1, second_size.0, second_size.1)]
    MixedSizes {
        /// One image (or images file).
        first: PathBuf,
        /// Its width and height.
        first_size: (u32, u32),
        /// Another image (or images file) of a different size.
        second: PathBuf,
        /// Its width and height.
        second_size: (u32, u32),
    },
    /// An image file could not be decoded.
    #[error("could not decode the image {path}: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A canonical file's content does not match the sha256 recorded in the manifest.
    #[error("{file} is corrupt: its sha256 is {actual} but the manifest records {expected}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// sha256 recorded in the manifest.
        expected: String,
        /// sha256 of the file on disk.
        actual: String,
    },
    /// A `manifest.json` cannot be parsed, has an unknown version, or disagrees with its files.
    #[error("the manifest {path} is invalid: {reason}")]
    BadManifest {
        /// The manifest (or the file it disagrees with).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value read from a file (a size, a count, a dimension, a name) is beyond one of the
    /// documented limits ([`crate::limits`]); it was refused before it sized anything.
    #[error("{path}: {}", sentence(*limit, *max, *found))]
    TooLarge {
        /// The file that declares it.
        path: PathBuf,
        /// Which limit.
        limit: Limit,
        /// The limit's value.
        max: u64,
        /// The value found (`u64::MAX` when it overflows).
        found: u64,
    },
    /// A file declares or holds more data than its manifest declares (a header claiming larger
    /// dimensions, or a stream that decompresses past the declared size). Nothing past the
    /// declared size plus one byte was read.
    #[error("{path} is refused: {detail}; {declared} bytes of data are declared for it (the limit for this file) and nothing past them is read")]
    ExceedsDeclared {
        /// The file.
        path: PathBuf,
        /// Bytes of data declared for it (by the manifest, or by its own header).
        declared: u64,
        /// What the file declares or holds instead.
        detail: String,
    },
    /// The requested split is not in the manifest.
    #[error("dataset {name} has no split {split:?} (it has {available})")]
    UnknownSplit {
        /// Dataset name.
        name: String,
        /// The split asked for.
        split: String,
        /// Comma-separated splits the dataset has.
        available: String,
    },
}

impl DatasetError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`DatasetError::Layout`] error.
    pub(crate) fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DatasetError::Layout {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A [`DatasetError::TooLarge`] error.
    pub(crate) fn too_large(path: impl Into<PathBuf>, limit: Limit, max: u64, found: u64) -> Self {
        DatasetError::TooLarge {
            path: path.into(),
            limit,
            max,
            found,
        }
    }

    /// A [`DatasetError::BadManifest`] error.
    pub(crate) fn bad_manifest(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DatasetError::BadManifest {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Checks `found <= max`, else a [`DatasetError::TooLarge`] about `path`.
    pub(crate) fn check(
        path: &std::path::Path,
        limit: Limit,
        max: u64,
        found: u64,
    ) -> Result<(), Self> {
        if found > max {
            return Err(Self::too_large(path, limit, max, found));
        }
        Ok(())
    }

    /// A [`DatasetError::BadIdx`] error.
    pub(crate) fn bad_idx(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DatasetError::BadIdx {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
