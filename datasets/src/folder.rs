//! Importing image folders: `train/<class>/*`, `test/<class>/*`, or a flat unlabelled folder.

use crate::canonical::{Dataset, SplitData};
use crate::limits::{product, Limit, Limits, MAX_IMAGE_SIDE};
use crate::{DatasetError, Source};
use image::{ColorType, ImageDecoder, ImageReader};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Labelled split folder names, in split order.
const SPLITS: [&str; 2] = ["train", "test"];

/// One image file of a split.
struct Entry {
    /// Absolute (or caller-relative) path to read.
    path: PathBuf,
    /// Path relative to the source root, `/`-separated.
    rel: String,
    /// Class name for labelled folders.
    class: Option<String>,
}

/// True for `.png`, `.jpg` and `.jpeg` names, case-insensitively.
pub(crate) fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Imports `src` as an image folder or a flat folder of images; `Ok(None)` if it is neither.
pub(crate) fn try_import(src: &Path, names: &[String]) -> Result<Option<Dataset>, DatasetError> {
    let split_dirs: Vec<&str> = SPLITS
        .into_iter()
        .filter(|s| names.iter().any(|n| n == s) && src.join(s).is_dir())
        .collect();
    let mut splits: Vec<(&str, Vec<Entry>)> = Vec::new();
    for split in &split_dirs {
        splits.push((split, labelled_entries(src, split)?));
    }
    if splits.is_empty() {
        let flat = flat_entries(src, names);
        if flat.is_empty() {
            return Ok(None);
        }
        splits.push(("all", flat));
    }
    let classes: Vec<String> = splits
        .iter()
        .flat_map(|(_, entries)| entries.iter().filter_map(|e| e.class.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (shape, gray) = probe_all(splits.iter().flat_map(|(_, e)| e))?;
    let mut data = Vec::new();
    for (split, entries) in &splits {
        data.push(decode_split(split, entries, shape, gray, &classes)?);
    }
    let source = if split_dirs.is_empty() {
        Source::Unlabelled
    } else {
        Source::ImageFolder
    };
    Ok(Some(Dataset {
        source,
        classes,
        splits: data,
    }))
}

/// Image files directly inside `src`, sorted by name.
fn flat_entries(src: &Path, names: &[String]) -> Vec<Entry> {
    names
        .iter()
        .filter(|n| is_image_name(n) && src.join(n).is_file())
        .map(|n| Entry {
            path: src.join(n),
            rel: n.clone(),
            class: None,
        })
        .collect()
}

/// Image files of `src/<split>/<class>/`, sorted by class then name.
fn labelled_entries(src: &Path, split: &str) -> Result<Vec<Entry>, DatasetError> {
    let dir = src.join(split);
    let mut entries = Vec::new();
    for class in list_names(&dir)? {
        let class_dir = dir.join(&class);
        if !class_dir.is_dir() {
            if is_image_name(&class) {
                let reason = format!("this image is not inside a class folder ({split}/<class>/)");
                return Err(DatasetError::layout(class_dir, reason));
            }
            continue;
        }
        for file in list_names(&class_dir)? {
            let path = class_dir.join(&file);
            if is_image_name(&file) && path.is_file() {
                let rel = format!("{split}/{class}/{file}");
                entries.push(Entry {
                    path,
                    rel,
                    class: Some(class.clone()),
                });
            }
        }
    }
    if entries.is_empty() {
        let reason =
            "this split folder holds no .png/.jpg/.jpeg images in class folders (<class>/*.png)";
        return Err(DatasetError::layout(dir, reason));
    }
    Ok(entries)
}

/// An image file's reader, within [`crate::decode_limits`].
fn open(path: &Path) -> Result<ImageReader<BufReader<File>>, DatasetError> {
    let reader = ImageReader::open(path).map_err(|e| DatasetError::io(path, e))?;
    let mut reader = reader
        .with_guessed_format()
        .map_err(|e| DatasetError::io(path, e))?;
    reader.limits(crate::decode_limits());
    Ok(reader)
}

fn image_error(path: &Path, source: image::ImageError) -> DatasetError {
    DatasetError::Image {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every header: checks that all sizes agree and tells whether all are grayscale.
/// Returns the shape (C, H, W) and the grayscale flag.
fn probe_all<'a>(
    entries: impl Iterator<Item = &'a Entry>,
) -> Result<([usize; 3], bool), DatasetError> {
    let mut first: Option<(&Path, (u32, u32))> = None;
    let mut gray = true;
    for entry in entries {
        let decoder = open(&entry.path)?
            .into_decoder()
            .map_err(|e| image_error(&entry.path, e))?;
        let size = decoder.dimensions();
        for side in [size.0, size.1] {
            DatasetError::check(
                &entry.path,
                Limit::ImageSide,
                MAX_IMAGE_SIDE.into(),
                side.into(),
            )?;
        }
        gray &= matches!(
            decoder.color_type(),
            ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
        );
        match first {
            None => first = Some((&entry.path, size)),
            Some((path, first_size)) if first_size != size => {
                return Err(DatasetError::MixedSizes {
                    first: path.to_path_buf(),
                    first_size,
                    second: entry.path.clone(),
                    second_size: size,
                })
            }
            Some(_) => {}
        }
    }
    let (w, h) = first.map(|(_, s)| s).unwrap_or_default();
    Ok(([if gray { 1 } else { 3 }, h as usize, w as usize], gray))
}

/// Decodes every image of one split into NHWC bytes, with labels when classes exist.
fn decode_split(
    split: &str,
    entries: &[Entry],
    shape: [usize; 3],
    gray: bool,
    classes: &[String],
) -> Result<SplitData, DatasetError> {
    let bytes =
        product(std::iter::once(entries.len() as u64).chain(shape.iter().map(|&d| d as u64)));
    let limit = Limits::default().max_file_bytes;
    DatasetError::check(Path::new(split), Limit::FileBytes, limit, bytes)?;
    let mut pixels = Vec::with_capacity(bytes as usize);
    for entry in entries {
        let img = open(&entry.path)?
            .decode()
            .map_err(|e| image_error(&entry.path, e))?;
        if (img.height() as usize, img.width() as usize) != (shape[1], shape[2]) {
            let reason = format!(
                "it decodes to {}x{}, not the {}x{} its header announces",
                img.width(),
                img.height(),
                shape[2],
                shape[1]
            );
            return Err(DatasetError::layout(&entry.path, reason));
        }
        let raw = if gray {
            img.to_luma8().into_raw()
        } else {
            img.to_rgb8().into_raw()
        };
        pixels.extend_from_slice(&raw);
    }
    let labels = entries
        .iter()
        .map(|e| {
            e.class
                .as_ref()
                .map(|c| classes.binary_search(c).unwrap_or_default() as i64)
        })
        .collect::<Option<Vec<i64>>>();
    Ok(SplitData {
        name: split.to_string(),
        shape,
        pixels,
        labels,
        files: Some(entries.iter().map(|e| e.rel.clone()).collect()),
    })
}

/// Sorted names of the entries directly inside `dir`.
pub(crate) fn list_names(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        let name = entry.file_name().into_string().map_err(|raw| {
            DatasetError::layout(dir.join(raw), "this file name is not valid UTF-8")
        })?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}
