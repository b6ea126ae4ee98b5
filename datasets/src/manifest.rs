//! `manifest.json`: what a canonical dataset directory holds.

use crate::limits::{Limit, MAX_MANIFEST_BYTES};
use crate::DatasetError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the manifest inside a canonical dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Version of the manifest format this crate writes; newer versions are refused on read.
pub const MANIFEST_VERSION: u32 = 1;

/// Where a dataset came from.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Fashion-MNIST gzipped IDX files.
    FashionMnist,
    /// An MNIST-style directory of IDX files.
    Idx,
    /// `train/<class>/*` and/or `test/<class>/*` image files.
    ImageFolder,
    /// A folder of image files without labels.
    Unlabelled,
}

/// One file of the canonical form, with its size and content hash.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// File name inside the dataset directory, e.g. `train-images.idx`.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-hex sha256 of the content.
    pub sha256: String,
}

/// The files of one split.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SplitInfo {
    /// Number of samples.
    pub count: u64,
    /// `<split>-images.idx`.
    pub images: FileRef,
    /// `<split>-labels.idx`; `None` when unlabelled.
    #[serde(default)]
    pub labels: Option<FileRef>,
    /// `<split>-files.txt` (source path of each sample); only for image-folder sources.
    #[serde(default)]
    pub files: Option<FileRef>,
}

/// Description of a canonical dataset directory, stored as `manifest.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_VERSION`]).
    #[serde(default = "default_version")]
    pub version: u32,
    /// Dataset name (the CLI stores the files under `datasets/<name>/`).
    pub name: String,
    /// Where the dataset came from.
    pub source: Source,
    /// Sample shape as channels, height, width.
    pub shape: [u32; 3],
    /// Class names, indexed by label; empty when unlabelled.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Splits by name (`train`, `test`, `all`).
    pub splits: BTreeMap<String, SplitInfo>,
    /// Per-channel mean of the first split (train if present), pixels scaled to [0, 1].
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, same basis as `mean`.
    #[serde(default)]
    pub std: Vec<f32>,
    /// Creation time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
}

fn default_version() -> u32 {
    MANIFEST_VERSION
}

impl Manifest {
    /// True when the dataset has class labels.
    pub fn labelled(&self) -> bool {
        !self.classes.is_empty()
    }

    /// Number of input values per sample (C·H·W); saturates instead of overflowing.
    pub fn input_elems(&self) -> usize {
        let elems = crate::limits::product(self.shape.map(u64::from));
        usize::try_from(elems).unwrap_or(usize::MAX)
    }

    /// Every file of the canonical form except `manifest.json`, split by split.
    pub fn files(&self) -> Vec<&FileRef> {
        self.splits
            .values()
            .flat_map(|s| std::iter::once(&s.images).chain(&s.labels).chain(&s.files))
            .collect()
    }

    /// Reads `<dir>/manifest.json` (at most [`MAX_MANIFEST_BYTES`], checked before reading).
    pub fn read(dir: &Path) -> Result<Manifest, DatasetError> {
        let path = dir.join(MANIFEST_FILE);
        let size = std::fs::metadata(&path)
            .map_err(|e| DatasetError::io(&path, e))?
            .len();
        DatasetError::check(&path, Limit::ManifestBytes, MAX_MANIFEST_BYTES, size)?;
        let bytes = std::fs::read(&path).map_err(|e| DatasetError::io(&path, e))?;
        Manifest::from_json(&bytes, &path)
    }

    /// Parses a manifest of at most [`MAX_MANIFEST_BYTES`] and checks it
    /// ([`Manifest::validate`]); `path` only names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Manifest, DatasetError> {
        let size = bytes.len() as u64;
        DatasetError::check(path, Limit::ManifestBytes, MAX_MANIFEST_BYTES, size)?;
        let bad = |reason: String| DatasetError::BadManifest {
            path: path.to_path_buf(),
            reason,
        };
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if manifest.version > MANIFEST_VERSION {
            return Err(bad(format!(
                "version {} is newer than the supported {MANIFEST_VERSION}",
                manifest.version
            )));
        }
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Writes `<dir>/manifest.json` (pretty JSON).
    pub fn write(&self, dir: &Path) -> Result<(), DatasetError> {
        let path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        std::fs::write(&path, json).map_err(|e| DatasetError::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> FileRef {
        FileRef {
            file: name.into(),
            size: 1,
            sha256: "0a".repeat(32),
        }
    }

    fn sample() -> Manifest {
        let split = SplitInfo {
            count: 2,
            images: file("train-images.idx"),
            labels: Some(file("train-labels.idx")),
            files: None,
        };
        Manifest {
            version: MANIFEST_VERSION,
            name: "x".into(),
            source: Source::ImageFolder,
            shape: [3, 4, 5],
            classes: vec!["a".into(), "b".into()],
            splits: [("train".to_string(), split)].into_iter().collect(),
            mean: vec![0.5; 3],
            std: vec![0.1; 3],
            created_ms: 7,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let m = sample();
        let json = serde_json::to_vec_pretty(&m).unwrap();
        assert!(String::from_utf8_lossy(&json).contains("\"image_folder\""));
        assert_eq!(Manifest::from_json(&json, Path::new("m")).unwrap(), m);
        assert_eq!(m.input_elems(), 60);
        assert!(m.labelled());
        assert_eq!(m.files().len(), 2);
    }

    #[test]
    fn reads_tolerantly_and_refuses_newer_versions() {
        let mut v = serde_json::to_value(sample()).unwrap();
        let obj = v.as_object_mut().unwrap();
        for key in ["version", "classes", "mean", "std", "created_ms"] {
            obj.remove(key);
        }
        // Without classes a split has no labels.
        obj["splits"]["train"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        let m = Manifest::from_json(v.to_string().as_bytes(), Path::new("m")).unwrap();
        assert_eq!(m.version, MANIFEST_VERSION);
        assert!(!m.labelled());
        obj_set_version(&mut v, MANIFEST_VERSION + 1);
        let err = Manifest::from_json(v.to_string().as_bytes(), Path::new("m")).unwrap_err();
        assert!(matches!(err, DatasetError::BadManifest { .. }));
    }

    fn obj_set_version(v: &mut serde_json::Value, version: u32) {
        v.as_object_mut()
            .unwrap()
            .insert("version".into(), version.into());
    }
}
