//! Reading one split of a canonical dataset directory back, verified against its manifest.

use crate::hash::sha256_bytes;
use crate::idx::{self, IdxType};
use crate::{DatasetError, FileRef, Manifest};
use std::path::{Path, PathBuf};

/// One split in memory, ready for training or inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Number of samples.
    pub count: usize,
    /// Sample shape as channels, height, width.
    pub shape: [usize; 3],
    /// N·C·H·W bytes in NCHW order (transposed from the file's NHWC when C = 3).
    pub pixels: Vec<u8>,
    /// One label per sample; `None` when unlabelled.
    pub labels: Option<Vec<i64>>,
    /// Source path of each sample, for image-folder sources.
    pub files: Option<Vec<String>>,
}

/// Reads split `split` of the canonical dataset in `dir`, checking every file's sha256
/// against `manifest` (a mismatch is [`DatasetError::Corrupt`]).
pub fn load_split(dir: &Path, manifest: &Manifest, split: &str) -> Result<Split, DatasetError> {
    let info = manifest
        .splits
        .get(split)
        .ok_or_else(|| DatasetError::UnknownSplit {
            name: manifest.name.clone(),
            split: split.to_string(),
            available: manifest
                .splits
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let count = info.count as usize;
    let [c, h, w] = manifest.shape.map(|d| d as usize);
    let (path, bytes) = read_verified(dir, &info.images)?;
    let images = idx::read_from(&bytes[..], &path)?;
    let dims = if c == 1 {
        vec![count, h, w]
    } else {
        vec![count, h, w, c]
    };
    if images.kind != IdxType::U8 || images.dims != dims {
        let reason = format!(
            "it holds {:?} {:?} but the manifest says U8 {dims:?}",
            images.kind, images.dims
        );
        return Err(DatasetError::BadManifest { path, reason });
    }
    let pixels = if c == 1 {
        images.data
    } else {
        nhwc_to_nchw(&images.data, c, h * w)
    };
    let labels = match &info.labels {
        Some(file) => Some(read_labels(dir, file, count)?),
        None => None,
    };
    let files = match &info.files {
        Some(file) => Some(read_files(dir, file, count)?),
        None => None,
    };
    Ok(Split {
        count,
        shape: [c, h, w],
        pixels,
        labels,
        files,
    })
}

/// Reads `dir/<file>` whole and checks its sha256.
fn read_verified(dir: &Path, file: &FileRef) -> Result<(PathBuf, Vec<u8>), DatasetError> {
    let path = dir.join(&file.file);
    let bytes = std::fs::read(&path).map_err(|e| DatasetError::io(&path, e))?;
    let actual = sha256_bytes(&bytes);
    if actual != file.sha256.to_ascii_lowercase() {
        return Err(DatasetError::Corrupt {
            file: path,
            expected: file.sha256.clone(),
            actual,
        });
    }
    Ok((path, bytes))
}

fn read_labels(dir: &Path, file: &FileRef, count: usize) -> Result<Vec<i64>, DatasetError> {
    let (path, bytes) = read_verified(dir, file)?;
    let idx = idx::read_from(&bytes[..], &path)?;
    let labels = idx::labels_as_i64(&idx, &path)?;
    if idx.dims.len() != 1 || labels.len() != count {
        let reason = format!(
            "it holds labels of dimensions {:?} but the manifest counts {count} samples",
            idx.dims
        );
        return Err(DatasetError::BadManifest { path, reason });
    }
    Ok(labels)
}

fn read_files(dir: &Path, file: &FileRef, count: usize) -> Result<Vec<String>, DatasetError> {
    let (path, bytes) = read_verified(dir, file)?;
    let text = String::from_utf8(bytes).map_err(|_| DatasetError::BadManifest {
        path: path.clone(),
        reason: "it is not UTF-8 text".into(),
    })?;
    let files: Vec<String> = text.lines().map(str::to_string).collect();
    if files.len() != count {
        let reason = format!(
            "it lists {} files but the manifest counts {count} samples",
            files.len()
        );
        return Err(DatasetError::BadManifest { path, reason });
    }
    Ok(files)
}

/// Transposes N·(HW)·C bytes into N·C·(HW).
fn nhwc_to_nchw(data: &[u8], c: usize, hw: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for (n, sample) in data.chunks_exact(c * hw).enumerate() {
        let dst = &mut out[n * c * hw..(n + 1) * c * hw];
        for (p, px) in sample.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                dst[ch * hw + p] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::nhwc_to_nchw;

    #[test]
    fn transposes_channels_last_to_first() {
        // Two samples, 2 pixels, RGB.
        let nhwc = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(
            nhwc_to_nchw(&nhwc, 3, 2),
            vec![1, 4, 2, 5, 3, 6, 7, 10, 8, 11, 9, 12]
        );
    }
}
