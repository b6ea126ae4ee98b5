//! Importing an MNIST-style directory of IDX files.

use crate::canonical::{numeric_classes, Dataset, SplitData};
use crate::idx::{self, IdxType};
use crate::{DatasetError, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The images and labels files of one split.
#[derive(Default)]
struct Pair {
    images: Option<PathBuf>,
    labels: Option<PathBuf>,
}

/// Split name and kind (`images` or `labels`) of an MNIST-style file name, e.g.
/// `t10k-labels-idx1-ubyte.gz` → (`test`, `labels`).
fn classify(file_name: &str) -> Option<(&'static str, &'static str)> {
    let (prefix, rest) = file_name.split_once('-')?;
    let split = match prefix {
        "train" => "train",
        "t10k" | "test" => "test",
        _ => return None,
    };
    ["images", "labels"]
        .into_iter()
        .find(|kind| rest.starts_with(kind))
        .map(|kind| (split, kind))
}

/// The MNIST-style files directly inside `dir`, or `None` when there are none.
fn find_pairs(
    dir: &Path,
    names: &[String],
) -> Result<Option<BTreeMap<&'static str, Pair>>, DatasetError> {
    let mut pairs: BTreeMap<&'static str, Pair> = BTreeMap::new();
    for name in names {
        let Some((split, kind)) = classify(name) else {
            continue;
        };
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let pair = pairs.entry(split).or_default();
        let slot = if kind == "images" {
            &mut pair.images
        } else {
            &mut pair.labels
        };
        if let Some(prev) = slot.replace(path.clone()) {
            let reason = format!(
                "both {} and {} are {split} {kind} files",
                prev.display(),
                path.display()
            );
            return Err(DatasetError::layout(dir, reason));
        }
    }
    Ok((!pairs.is_empty()).then_some(pairs))
}

/// Imports `dir` if it holds MNIST-style IDX files; `Ok(None)` when it holds none.
pub(crate) fn try_import(dir: &Path, names: &[String]) -> Result<Option<Dataset>, DatasetError> {
    let Some(pairs) = find_pairs(dir, names)? else {
        return Ok(None);
    };
    let mut splits = Vec::new();
    let mut sources = Vec::new();
    for (split, pair) in pairs {
        let (images, labels) = match (pair.images, pair.labels) {
            (Some(i), Some(l)) => (i, l),
            (Some(i), None) => {
                return Err(DatasetError::layout(&i, format!("this {split} images file has no matching labels file ({split}-labels…) beside it")))
            }
            (None, Some(l)) => {
                return Err(DatasetError::layout(&l, format!("this {split} labels file has no matching images file ({split}-images…) beside it")))
            }
            (None, None) => unreachable!("a pair is created with one file"),
        };
        splits.push(read_pair(split, &images, &labels)?);
        sources.push(images);
    }
    check_same_shape(&splits, &sources)?;
    let labelled: Vec<(&Path, &[i64])> = splits
        .iter()
        .zip(&sources)
        .map(|(s, p)| (p.as_path(), s.labels.as_deref().unwrap_or_default()))
        .collect();
    let classes = numeric_classes(&labelled)?;
    Ok(Some(Dataset {
        source: Source::Idx,
        classes,
        splits,
    }))
}

/// Reads one images file and its labels file into a split.
pub(crate) fn read_pair(
    split: &str,
    images: &Path,
    labels: &Path,
) -> Result<SplitData, DatasetError> {
    let img = idx::read(images)?;
    let shape = image_shape(&img, images)?;
    let lab = idx::read(labels)?;
    if lab.dims.len() != 1 {
        let reason = format!("a labels file must have one dimension, not {:?}", lab.dims);
        return Err(DatasetError::bad_idx(labels, reason));
    }
    let label_values = idx::labels_as_i64(&lab, labels)?;
    if label_values.len() != img.dims[0] {
        return Err(DatasetError::CountMismatch {
            images: images.to_path_buf(),
            images_count: img.dims[0] as u64,
            labels: labels.to_path_buf(),
            labels_count: label_values.len() as u64,
        });
    }
    Ok(SplitData {
        name: split.to_string(),
        shape,
        pixels: img.data,
        labels: Some(label_values),
        files: None,
    })
}

/// C, H, W of an images IDX file: ubyte, N×H×W or N×H×W×C with C 1 or 3.
fn image_shape(img: &idx::Idx, path: &Path) -> Result<[usize; 3], DatasetError> {
    if img.kind != IdxType::U8 {
        return Err(DatasetError::bad_idx(
            path,
            format!("images must be unsigned bytes (0x08), not {:?}", img.kind),
        ));
    }
    match img.dims[..] {
        [_, h, w] => Ok([1, h, w]),
        [_, h, w, c] if c == 1 || c == 3 => Ok([c, h, w]),
        _ => Err(DatasetError::bad_idx(
            path,
            format!(
                "images must have dimensions N×H×W or N×H×W×C with C 1 or 3, not {:?}",
                img.dims
            ),
        )),
    }
}

/// All splits must share one sample shape.
fn check_same_shape(splits: &[SplitData], sources: &[PathBuf]) -> Result<(), DatasetError> {
    let (Some(first), Some(first_path)) = (splits.first(), sources.first()) else {
        return Ok(());
    };
    for (split, path) in splits.iter().zip(sources).skip(1) {
        let [c0, h0, w0] = first.shape;
        let [c, h, w] = split.shape;
        if (h, w) != (h0, w0) {
            return Err(DatasetError::MixedSizes {
                first: first_path.clone(),
                first_size: (w0 as u32, h0 as u32),
                second: path.clone(),
                second_size: (w as u32, h as u32),
            });
        }
        if c != c0 {
            let reason = format!("it has {c} channels but {} has {c0}", first_path.display());
            return Err(DatasetError::layout(path, reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classifies_mnist_names() {
        assert_eq!(
            classify("train-images-idx3-ubyte.gz"),
            Some(("train", "images"))
        );
        assert_eq!(classify("t10k-labels-idx1-ubyte"), Some(("test", "labels")));
        assert_eq!(classify("test-images.idx"), Some(("test", "images")));
        assert_eq!(classify("train-files.txt"), None);
        assert_eq!(classify("README"), None);
    }
}
