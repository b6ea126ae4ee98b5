//! Reading one split of a canonical dataset directory back, verified against its manifest.

use crate::hash::sha256_bytes;
use crate::idx::{self, IdxHeader, IdxType};
use crate::limits::{Limit, Limits};
use crate::{DatasetError, FileRef, Manifest, SplitInfo, MANIFEST_FILE};
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

/// Reads split `split` of the canonical dataset in `dir` within the default [`Limits`]; see
/// [`load_split_with`].
pub fn load_split(dir: &Path, manifest: &Manifest, split: &str) -> Result<Split, DatasetError> {
    load_split_with(dir, manifest, split, &Limits::default())
}

/// Reads split `split` of the canonical dataset in `dir`, checking every file's size and
/// sha256 against `manifest` (a sha256 mismatch is [`DatasetError::Corrupt`]).
///
/// Nothing a file declares sizes anything before it is checked: the manifest is validated,
/// the split's N·C·H·W bytes must be within `limits.max_file_bytes`, each file's size within
/// it too, and each IDX header must match the manifest before its data is read (a header
/// announcing more data, or a gzip stream expanding past the declared size, is
/// [`DatasetError::ExceedsDeclared`]). Memory use is the stored file plus the declared data
/// plus one byte.
pub fn load_split_with(
    dir: &Path,
    manifest: &Manifest,
    split: &str,
    limits: &Limits,
) -> Result<Split, DatasetError> {
    manifest.validate(&dir.join(MANIFEST_FILE))?;
    let info = split_info(manifest, split)?;
    let count = info.count as usize;
    let [c, h, w] = manifest.shape.map(|d| d as usize);
    let pixels = read_pixels(dir, manifest, info, limits)?;
    let labels = match &info.labels {
        Some(file) => Some(read_labels(
            dir,
            file,
            count,
            manifest.classes.len(),
            limits,
        )?),
        None => None,
    };
    let files = match &info.files {
        Some(file) => Some(read_files(dir, file, count, limits)?),
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

/// The files of split `split` of `manifest` ([`DatasetError::UnknownSplit`] if it has none).
fn split_info<'a>(manifest: &'a Manifest, split: &str) -> Result<&'a SplitInfo, DatasetError> {
    manifest
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
        })
}

/// The images file of split `info`, verified and checked against the manifest's shape, as
/// N·C·H·W bytes (transposed from the file's NHWC when C > 1).
fn read_pixels(
    dir: &Path,
    manifest: &Manifest,
    info: &SplitInfo,
    limits: &Limits,
) -> Result<Vec<u8>, DatasetError> {
    let count = info.count as usize;
    let [c, h, w] = manifest.shape.map(|d| d as usize);
    let declared = manifest.images_bytes(info.count);
    let images_path = dir.join(&info.images.file);
    DatasetError::check(
        &images_path,
        Limit::FileBytes,
        limits.max_file_bytes,
        declared,
    )?;
    let (path, bytes) = read_verified(dir, &info.images, limits)?;
    let dims = if c == 1 {
        vec![count, h, w]
    } else {
        vec![count, h, w, c]
    };
    let images = idx::read_checked(&bytes[..], &path, declared, |header| {
        expect_header(header, &path, &[IdxType::U8], &dims, declared)
    })?;
    drop(bytes);
    Ok(if c == 1 {
        images.data
    } else {
        nhwc_to_nchw(&images.data, c, h * w)
    })
}

/// Refuses a header that announces more data than the manifest declares
/// ([`DatasetError::ExceedsDeclared`]) or other dimensions or types.
fn expect_header(
    header: &IdxHeader,
    path: &Path,
    kinds: &[IdxType],
    dims: &[usize],
    declared: u64,
) -> Result<(), DatasetError> {
    if header.payload_len() > declared {
        let detail = format!(
            "its header declares {:?} {:?}, {} bytes of data",
            header.kind,
            header.dims,
            header.payload_len()
        );
        return Err(DatasetError::ExceedsDeclared {
            path: path.to_path_buf(),
            declared,
            detail,
        });
    }
    if !kinds.contains(&header.kind) || header.dims != dims {
        let reason = format!(
            "it holds {:?} {:?} but the manifest says {:?} {dims:?}",
            header.kind, header.dims, kinds[0]
        );
        return Err(DatasetError::bad_manifest(path, reason));
    }
    Ok(())
}

/// Reads `dir/<file>` whole, after checking its size against the manifest and `limits`, and
/// checks its sha256.
fn read_verified(
    dir: &Path,
    file: &FileRef,
    limits: &Limits,
) -> Result<(PathBuf, Vec<u8>), DatasetError> {
    let path = dir.join(&file.file);
    let size = std::fs::metadata(&path)
        .map_err(|e| DatasetError::io(&path, e))?
        .len();
    DatasetError::check(&path, Limit::FileBytes, limits.max_file_bytes, size)?;
    if size != file.size {
        let reason = format!("it is {size} bytes but the manifest records {}", file.size);
        return Err(DatasetError::bad_manifest(&path, reason));
    }
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

/// The labels file: integer IDX of dimensions `[count]`, every label below `classes`.
fn read_labels(
    dir: &Path,
    file: &FileRef,
    count: usize,
    classes: usize,
    limits: &Limits,
) -> Result<Vec<i64>, DatasetError> {
    let (path, bytes) = read_verified(dir, file, limits)?;
    let kinds = [IdxType::U8, IdxType::I32, IdxType::I16, IdxType::I8];
    let declared = (count as u64).saturating_mul(4);
    let idx = idx::read_checked(&bytes[..], &path, declared, |header| {
        let declared = header.kind.elem_size() as u64 * count as u64;
        expect_header(header, &path, &kinds, &[count], declared)
    })?;
    let labels = idx::labels_as_i64(&idx, &path)?;
    if let Some((i, l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| !(0..classes as i64).contains(&l))
    {
        let reason = format!("label {l} of sample {i} is not one of the {classes} classes");
        return Err(DatasetError::bad_manifest(path, reason));
    }
    Ok(labels)
}

fn read_files(
    dir: &Path,
    file: &FileRef,
    count: usize,
    limits: &Limits,
) -> Result<Vec<String>, DatasetError> {
    let (path, bytes) = read_verified(dir, file, limits)?;
    let text = String::from_utf8(bytes).map_err(|_| DatasetError::BadManifest {
        path: path.clone(),
        reason: "it is not UTF-8 text".into(),
    })?;
    let lines = text.lines().count();
    if lines != count {
        let reason = format!("it lists {lines} files but the manifest counts {count} samples");
        return Err(DatasetError::BadManifest { path, reason });
    }
    Ok(text.lines().map(str::to_string).collect())
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
