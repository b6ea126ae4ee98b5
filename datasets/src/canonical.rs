//! Writing the canonical form: IDX files, file lists, statistics and `manifest.json`.

use crate::idx::{self, IdxType};
use crate::{sha256_file, DatasetError, FileRef, Manifest, Source, SplitInfo, MANIFEST_VERSION};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most classes a dataset may have (guards against absurd labels in a corrupt file).
const MAX_CLASSES: i64 = crate::limits::MAX_CLASSES as i64;

/// One split in memory, in the file layout (NHWC), ready to be written.
pub(crate) struct SplitData {
    /// `train`, `test` or `all`.
    pub name: String,
    /// Channels, height, width.
    pub shape: [usize; 3],
    /// N·H·W·C bytes.
    pub pixels: Vec<u8>,
    /// One label per sample, when labelled.
    pub labels: Option<Vec<i64>>,
    /// Source path of each sample, for image-folder sources.
    pub files: Option<Vec<String>>,
}

impl SplitData {
    /// Number of samples.
    pub fn count(&self) -> usize {
        let per = self.shape.iter().product::<usize>();
        self.pixels.len().checked_div(per).unwrap_or(0)
    }
}

/// What an importer found, before it is written.
pub(crate) struct Dataset {
    pub source: Source,
    pub classes: Vec<String>,
    pub splits: Vec<SplitData>,
}

/// Writes `dataset` to `out` (created if needed) and returns its manifest, written last.
pub(crate) fn write_dataset(
    out: &Path,
    name: &str,
    dataset: Dataset,
) -> Result<Manifest, DatasetError> {
    std::fs::create_dir_all(out).map_err(|e| DatasetError::io(out, e))?;
    let label_kind = if dataset.classes.len() <= 256 {
        IdxType::U8
    } else {
        IdxType::I32
    };
    let mut splits = BTreeMap::new();
    for split in &dataset.splits {
        splits.insert(split.name.clone(), write_split(out, split, label_kind)?);
    }
    let first = stats_split(&dataset.splits);
    let (mean, std) = first.map(channel_stats).unwrap_or_default();
    let [c, h, w] = first.map(|s| s.shape).unwrap_or_default();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        name: name.to_string(),
        source: dataset.source,
        shape: [c as u32, h as u32, w as u32],
        classes: dataset.classes,
        splits,
        mean,
        std,
        created_ms: now_ms(),
    };
    manifest.validate(&out.join(crate::MANIFEST_FILE))?;
    manifest.write(out)?;
    Ok(manifest)
}

fn stats_split(splits: &[SplitData]) -> Option<&SplitData> {
    splits
        .iter()
        .find(|s| s.name == "train")
        .or_else(|| splits.first())
}

fn write_split(
    out: &Path,
    split: &SplitData,
    label_kind: IdxType,
) -> Result<SplitInfo, DatasetError> {
    let [c, h, w] = split.shape;
    let n = split.count();
    let dims = if c == 1 {
        vec![n, h, w]
    } else {
        vec![n, h, w, c]
    };
    let images = format!("{}-images.idx", split.name);
    idx::write(&out.join(&images), IdxType::U8, &dims, &split.pixels)?;
    let labels = match &split.labels {
        Some(labels) => {
            let file = format!("{}-labels.idx", split.name);
            let data = encode_labels(labels, label_kind);
            idx::write(&out.join(&file), label_kind, &[labels.len()], &data)?;
            Some(file_ref(out, file)?)
        }
        None => None,
    };
    let files = match &split.files {
        Some(list) => {
            let file = format!("{}-files.txt", split.name);
            let text: String = list.iter().map(|f| format!("{f}\n")).collect();
            let path = out.join(&file);
            std::fs::write(&path, text).map_err(|e| DatasetError::io(&path, e))?;
            Some(file_ref(out, file)?)
        }
        None => None,
    };
    Ok(SplitInfo {
        count: n as u64,
        images: file_ref(out, images)?,
        labels,
        files,
    })
}

fn encode_labels(labels: &[i64], kind: IdxType) -> Vec<u8> {
    match kind {
        IdxType::U8 => labels.iter().map(|&l| l as u8).collect(),
        _ => labels
            .iter()
            .flat_map(|&l| (l as i32).to_be_bytes())
            .collect(),
    }
}

fn file_ref(out: &Path, file: String) -> Result<FileRef, DatasetError> {
    let path = out.join(&file);
    let (size, sha256) = sha256_file(&path).map_err(|e| DatasetError::io(&path, e))?;
    Ok(FileRef { file, size, sha256 })
}

/// Per-channel mean and population standard deviation of NHWC pixels scaled to [0, 1].
pub(crate) fn channel_stats(split: &SplitData) -> (Vec<f32>, Vec<f32>) {
    let c = split.shape[0];
    let mut sum = vec![0u64; c];
    let mut sq = vec![0u64; c];
    for px in split.pixels.chunks_exact(c) {
        for (ch, &v) in px.iter().enumerate() {
            sum[ch] += v as u64;
            sq[ch] += (v as u64) * (v as u64);
        }
    }
    let n = (split.pixels.len() / c).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / n / 255.0).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(&q, &m)| ((q as f64 / n / 65025.0 - m * m).max(0.0)).sqrt() as f32)
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

/// Class names `"0"`..`"k-1"` for integer labels, k = max label + 1; checks the range.
pub(crate) fn numeric_classes(splits: &[(&Path, &[i64])]) -> Result<Vec<String>, DatasetError> {
    let mut max = -1i64;
    for (path, labels) in splits {
        for &l in labels.iter() {
            if !(0..MAX_CLASSES).contains(&l) {
                return Err(DatasetError::layout(
                    *path,
                    format!("label {l} is outside the supported range 0..{MAX_CLASSES}"),
                ));
            }
            max = max.max(l);
        }
    }
    Ok((0..=max).map(|k| k.to_string()).collect())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_per_channel() {
        let split = SplitData {
            name: "train".into(),
            shape: [3, 1, 2],
            pixels: vec![0, 255, 51, 0, 255, 51],
            labels: None,
            files: None,
        };
        let (mean, std) = channel_stats(&split);
        assert_eq!(mean, vec![0.0, 1.0, 0.2]);
        assert!(std.iter().all(|&s| s.abs() < 1e-6));
        assert_eq!(split.count(), 1);
    }

    #[test]
    fn numeric_classes_span_max_label() {
        let p = Path::new("l");
        let classes = numeric_classes(&[(p, &[0, 3]), (p, &[1])]).unwrap();
        assert_eq!(classes, vec!["0", "1", "2", "3"]);
        assert!(numeric_classes(&[(p, &[-1])]).is_err());
    }
}
