//! The limits every dataset file is checked against before anything it declares sizes an
//! allocation, a loop or a tensor (documented in `docs/bus.md`, "Limits").
//!
//! Fixed limits are constants; the one a user may need to raise (the largest dataset file) is
//! a field of [`Limits`], which nodes take from `--max-dataset-file-bytes`.

use std::fmt;

/// Largest `manifest.json`, in bytes (checked before it is downloaded or parsed).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Most classes a dataset (or a model) may have.
pub const MAX_CLASSES: usize = 1 << 20;
/// Longest class name, in bytes.
pub const MAX_CLASS_NAME_BYTES: usize = 256;
/// Most splits in one manifest.
pub const MAX_SPLITS: usize = 16;
/// Longest split name, in bytes (a split name is a token: letters, digits, `-`, `_`).
pub const MAX_SPLIT_NAME_BYTES: usize = 64;
/// Longest file name inside a dataset directory, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Most samples in one split.
pub const MAX_SAMPLES: u64 = 1 << 28;
/// Largest image width or height of a dataset or a model input, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 2048;
/// Largest width or height of an image decoded for online inference (it is resized to the
/// model's input afterwards), in pixels.
pub const MAX_DECODE_SIDE: u32 = 8192;
/// Most bytes the image decoder may allocate for one image.
pub const MAX_DECODE_ALLOC: u64 = 256 << 20;
/// Default of [`Limits::max_file_bytes`]: 4 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;

/// The configurable limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest dataset file, stored or decompressed (an images file's data, N·C·H·W bytes).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Which limit a value broke, for callers to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_MANIFEST_BYTES`].
    ManifestBytes,
    /// [`Limits::max_file_bytes`].
    FileBytes,
    /// [`MAX_SAMPLES`].
    Samples,
    /// [`MAX_IMAGE_SIDE`] or [`MAX_DECODE_SIDE`].
    ImageSide,
    /// [`MAX_CLASSES`].
    Classes,
    /// [`MAX_CLASS_NAME_BYTES`].
    ClassNameBytes,
    /// [`MAX_SPLITS`].
    Splits,
    /// [`MAX_SPLIT_NAME_BYTES`].
    SplitNameBytes,
    /// [`MAX_FILE_NAME_BYTES`].
    FileNameBytes,
}

impl Limit {
    /// What is limited, as the start of a sentence ("a manifest holds at most").
    fn phrase(self) -> &'static str {
        match self {
            Limit::ManifestBytes => "a manifest.json holds at most",
            Limit::FileBytes => "a dataset file holds at most",
            Limit::Samples => "a split holds at most",
            Limit::ImageSide => "an image side is at most",
            Limit::Classes => "a dataset has at most",
            Limit::ClassNameBytes => "a class name is at most",
            Limit::Splits => "a dataset has at most",
            Limit::SplitNameBytes => "a split name is at most",
            Limit::FileNameBytes => "a dataset file name is at most",
        }
    }

    /// The unit of the limit ("bytes", "samples").
    fn unit(self) -> &'static str {
        match self {
            Limit::ManifestBytes
            | Limit::FileBytes
            | Limit::ClassNameBytes
            | Limit::SplitNameBytes
            | Limit::FileNameBytes => "bytes",
            Limit::Samples => "samples",
            Limit::ImageSide => "pixels",
            Limit::Classes => "classes",
            Limit::Splits => "splits",
        }
    }

    /// The limit's name as documented (and, for [`Limit::FileBytes`], the node flag).
    pub fn name(self) -> &'static str {
        match self {
            Limit::ManifestBytes => "MAX_MANIFEST_BYTES",
            Limit::FileBytes => "--max-dataset-file-bytes",
            Limit::Samples => "MAX_SAMPLES",
            Limit::ImageSide => "MAX_IMAGE_SIDE",
            Limit::Classes => "MAX_CLASSES",
            Limit::ClassNameBytes => "MAX_CLASS_NAME_BYTES",
            Limit::Splits => "MAX_SPLITS",
            Limit::SplitNameBytes => "MAX_SPLIT_NAME_BYTES",
            Limit::FileNameBytes => "MAX_FILE_NAME_BYTES",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// "a split holds at most 268435456 samples (MAX_SAMPLES), not 4294967295".
pub(crate) fn sentence(limit: Limit, max: u64, found: u64) -> String {
    format!(
        "{} {max} {} ({}), not {found}",
        limit.phrase(),
        limit.unit(),
        limit.name()
    )
}

/// `a·b·c…` with overflow reported as `u64::MAX` (which every limit refuses); 0 when any
/// factor is 0.
pub(crate) fn product(values: impl IntoIterator<Item = u64>) -> u64 {
    let values: Vec<u64> = values.into_iter().collect();
    if values.contains(&0) {
        return 0;
    }
    values
        .iter()
        .try_fold(1u64, |acc, &v| acc.checked_mul(v))
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_name_the_limit_and_both_values() {
        let s = sentence(Limit::Samples, MAX_SAMPLES, u64::from(u32::MAX));
        assert_eq!(
            s,
            "a split holds at most 268435456 samples (MAX_SAMPLES), not 4294967295"
        );
    }

    #[test]
    fn products_saturate_instead_of_overflowing() {
        assert_eq!(product([2, 3, 4]), 24);
        assert_eq!(product([u64::MAX, 2]), u64::MAX);
        assert_eq!(product([u32::MAX.into(), u32::MAX.into(), 3]), u64::MAX);
        assert_eq!(product([]), 1);
        assert_eq!(product([u64::MAX, u64::MAX, 0]), 0);
    }
}
