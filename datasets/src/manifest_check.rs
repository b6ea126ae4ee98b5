//! Checks of a manifest's values against the fixed limits, before any of them sizes anything.

use crate::limits::{
    product, Limit, MAX_CLASSES, MAX_CLASS_NAME_BYTES, MAX_FILE_NAME_BYTES, MAX_IMAGE_SIDE,
    MAX_SAMPLES, MAX_SPLITS, MAX_SPLIT_NAME_BYTES,
};
use crate::{DatasetError, FileRef, Manifest};
use std::path::Path;

impl Manifest {
    /// Checks every value against the fixed limits ([`crate::limits`]) and the shape rules:
    /// C is 1 or 3, H and W between 1 and [`MAX_IMAGE_SIDE`]; at most [`MAX_CLASSES`] class
    /// names of at most [`MAX_CLASS_NAME_BYTES`] each; at most [`MAX_SPLITS`] splits named by
    /// tokens, each of at most [`MAX_SAMPLES`] samples; file names are plain names (no `/`,
    /// `\`, NUL, `.` or `..`) of at most [`MAX_FILE_NAME_BYTES`]; sha256s are 64 hex digits;
    /// `mean` and `std` have 0, 1 or C values. `path` names the manifest in errors.
    pub fn validate(&self, path: &Path) -> Result<(), DatasetError> {
        let [c, h, w] = self.shape;
        if !self.splits.is_empty() && c != 1 && c != 3 {
            let reason = format!("images have 1 or 3 channels, not {c}");
            return Err(DatasetError::bad_manifest(path, reason));
        }
        for side in [h, w] {
            DatasetError::check(path, Limit::ImageSide, MAX_IMAGE_SIDE.into(), side.into())?;
        }
        if !self.splits.is_empty() && (h == 0 || w == 0) {
            let reason = format!("images of {w}x{h} pixels hold nothing");
            return Err(DatasetError::bad_manifest(path, reason));
        }
        self.check_classes(path)?;
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if ![0, 1, c as usize].contains(&v.len()) {
                let reason = format!("{name} has {} values for {c} channels", v.len());
                return Err(DatasetError::bad_manifest(path, reason));
            }
        }
        self.check_splits(path)
    }

    fn check_classes(&self, path: &Path) -> Result<(), DatasetError> {
        let count = self.classes.len() as u64;
        DatasetError::check(path, Limit::Classes, MAX_CLASSES as u64, count)?;
        let longest = self.classes.iter().map(String::len).max().unwrap_or(0);
        let max = MAX_CLASS_NAME_BYTES as u64;
        DatasetError::check(path, Limit::ClassNameBytes, max, longest as u64)
    }

    fn check_splits(&self, path: &Path) -> Result<(), DatasetError> {
        let count = self.splits.len() as u64;
        DatasetError::check(path, Limit::Splits, MAX_SPLITS as u64, count)?;
        for (name, split) in &self.splits {
            let max = MAX_SPLIT_NAME_BYTES as u64;
            DatasetError::check(path, Limit::SplitNameBytes, max, name.len() as u64)?;
            if !is_token(name) {
                let reason = format!("split name {name:?} is not letters, digits, '-' and '_'");
                return Err(DatasetError::bad_manifest(path, reason));
            }
            DatasetError::check(path, Limit::Samples, MAX_SAMPLES, split.count)?;
            if split.labels.is_some() && self.classes.is_empty() {
                let reason = format!("split {name} has labels but the dataset has no classes");
                return Err(DatasetError::bad_manifest(path, reason));
            }
            let files = std::iter::once(&split.images)
                .chain(&split.labels)
                .chain(&split.files);
            for file in files {
                check_file(path, file)?;
            }
        }
        Ok(())
    }

    /// Bytes of data in an images file of `count` samples (N·C·H·W); `u64::MAX` on overflow.
    pub fn images_bytes(&self, count: u64) -> u64 {
        product([count].into_iter().chain(self.shape.map(u64::from)))
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A file of the dataset directory: a plain name, a 64-hex-digit sha256.
fn check_file(path: &Path, file: &FileRef) -> Result<(), DatasetError> {
    let name = &file.file;
    let max = MAX_FILE_NAME_BYTES as u64;
    DatasetError::check(path, Limit::FileNameBytes, max, name.len() as u64)?;
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if !plain {
        let reason = format!("file {name:?} is not a plain file name");
        return Err(DatasetError::bad_manifest(path, reason));
    }
    let sha = &file.sha256;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        let reason = format!("file {name:?} has no valid sha256 ({sha:?})");
        return Err(DatasetError::bad_manifest(path, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, SplitInfo, MANIFEST_VERSION};

    fn file(name: &str) -> FileRef {
        FileRef {
            file: name.into(),
            size: 1,
            sha256: "ab".repeat(32),
        }
    }

    fn manifest() -> Manifest {
        let split = SplitInfo {
            count: 2,
            images: file("train-images.idx"),
            labels: Some(file("train-labels.idx")),
            files: None,
        };
        Manifest {
            version: MANIFEST_VERSION,
            name: "x".into(),
            source: Source::Idx,
            shape: [1, 4, 5],
            classes: vec!["a".into(), "b".into()],
            splits: [("train".to_string(), split)].into_iter().collect(),
            mean: vec![],
            std: vec![0.1],
            created_ms: 0,
        }
    }

    fn limit_of(m: &Manifest) -> Option<Limit> {
        match m.validate(Path::new("m")) {
            Err(DatasetError::TooLarge { limit, .. }) => Some(limit),
            _ => None,
        }
    }

    #[test]
    fn a_valid_manifest_passes() {
        manifest().validate(Path::new("m")).unwrap();
        assert_eq!(manifest().images_bytes(2), 40);
        assert_eq!(manifest().images_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn each_limit_is_named() {
        let mut m = manifest();
        m.shape = [1, MAX_IMAGE_SIDE + 1, 4];
        assert_eq!(limit_of(&m), Some(Limit::ImageSide));
        let mut m = manifest();
        m.classes = vec!["x".repeat(MAX_CLASS_NAME_BYTES + 1)];
        assert_eq!(limit_of(&m), Some(Limit::ClassNameBytes));
        let mut m = manifest();
        m.splits.get_mut("train").unwrap().count = MAX_SAMPLES + 1;
        assert_eq!(limit_of(&m), Some(Limit::Samples));
        let mut m = manifest();
        m.splits.get_mut("train").unwrap().images.file = "x".repeat(300);
        assert_eq!(limit_of(&m), Some(Limit::FileNameBytes));
        let mut m = manifest();
        let split = m.splits["train"].clone();
        for i in 0..=MAX_SPLITS {
            m.splits.insert(format!("s{i}"), split.clone());
        }
        assert_eq!(limit_of(&m), Some(Limit::Splits));
    }

    #[test]
    fn unsafe_names_and_shapes_are_refused() {
        let bad_names = ["../../etc/passwd", "/abs", "a\\b", "..", ".", "", "a\0b"];
        for name in bad_names {
            let mut m = manifest();
            m.splits.get_mut("train").unwrap().images.file = name.into();
            let err = m.validate(Path::new("m")).unwrap_err();
            assert!(matches!(err, DatasetError::BadManifest { .. }), "{name:?}");
        }
        for shape in [[2, 4, 4], [0, 4, 4], [1, 0, 4], [3, 4, 0]] {
            let mut m = manifest();
            m.shape = shape;
            assert!(m.validate(Path::new("m")).is_err(), "{shape:?}");
        }
        let mut m = manifest();
        m.mean = vec![0.0; 2];
        assert!(m.validate(Path::new("m")).is_err());
        let mut m = manifest();
        m.classes.clear();
        assert!(
            m.validate(Path::new("m")).is_err(),
            "labels without classes"
        );
        let mut m = manifest();
        m.splits.get_mut("train").unwrap().images.sha256 = "00".into();
        assert!(m.validate(Path::new("m")).is_err());
    }
}
