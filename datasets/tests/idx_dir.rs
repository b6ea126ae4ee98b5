//! Importing MNIST-style IDX directories made of small synthetic files.

mod common;

use common::{gray_pixels, write_idx};
use idunno_datasets::idx::IdxType;
use idunno_datasets::{import_dir, load_split, DatasetError, Source};
use std::path::Path;

fn write_split(dir: &Path, images: &str, labels: &str, n: usize, label_values: &[u8]) {
    write_idx(
        &dir.join(images),
        IdxType::U8,
        &[n, 4, 3],
        &gray_pixels(n, 4, 3),
    );
    write_idx(
        &dir.join(labels),
        IdxType::U8,
        &[label_values.len()],
        label_values,
    );
}

#[test]
fn imports_gzipped_and_plain_files_with_t10k_as_test() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_split(
        src.path(),
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        5,
        &[0, 1, 4, 1, 0],
    );
    write_split(
        src.path(),
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        2,
        &[2, 3],
    );
    std::fs::write(src.path().join("README.txt"), "ignored").unwrap();

    let m = import_dir(src.path(), out.path(), "digits").unwrap();
    assert_eq!(m.source, Source::Idx);
    assert_eq!(m.shape, [1, 4, 3]);
    assert_eq!(m.classes, ["0", "1", "2", "3", "4"]);
    assert_eq!(m.splits.keys().collect::<Vec<_>>(), ["test", "train"]);
    assert_eq!((m.splits["train"].count, m.splits["test"].count), (5, 2));
    assert!(m.splits["train"].files.is_none());

    let train = load_split(out.path(), &m, "train").unwrap();
    assert_eq!(train.pixels, gray_pixels(5, 4, 3));
    assert_eq!(train.labels.unwrap(), [0, 1, 4, 1, 0]);
    let test = load_split(out.path(), &m, "test").unwrap();
    assert_eq!(test.labels.unwrap(), [2, 3]);
    let want_mean = gray_pixels(5, 4, 3).iter().map(|&v| v as f32).sum::<f32>() / 60.0 / 255.0;
    assert!((m.mean[0] - want_mean).abs() < 1e-5);
}

#[test]
fn imports_rgb_idx4_with_int32_labels_and_many_classes() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // One 1×2 RGB sample per label; channels-last in the file.
    let nhwc = [10, 20, 30, 11, 21, 31, 12, 22, 32, 13, 23, 33];
    write_idx(
        &src.path().join("test-images.idx"),
        IdxType::U8,
        &[2, 1, 2, 3],
        &nhwc,
    );
    let labels: Vec<u8> = [299i32, 7].iter().flat_map(|v| v.to_be_bytes()).collect();
    write_idx(
        &src.path().join("test-labels.idx"),
        IdxType::I32,
        &[2],
        &labels,
    );

    let m = import_dir(src.path(), out.path(), "rgb").unwrap();
    assert_eq!(m.shape, [3, 1, 2]);
    assert_eq!(m.classes.len(), 300);
    let raw = std::fs::read(out.path().join("test-labels.idx")).unwrap();
    assert_eq!(raw[2], 0x0C, "more than 256 classes are stored as int32");
    let split = load_split(out.path(), &m, "test").unwrap();
    assert_eq!(
        split.pixels,
        [10, 11, 20, 21, 30, 31, 12, 13, 22, 23, 32, 33]
    );
    assert_eq!(split.labels.unwrap(), [299, 7]);
    assert_eq!(m.mean.len(), 3);
}

#[test]
fn images_without_labels_are_refused() {
    let src = tempfile::tempdir().unwrap();
    write_idx(
        &src.path().join("train-images-idx3-ubyte"),
        IdxType::U8,
        &[1, 2, 2],
        &[0; 4],
    );
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn mismatched_counts_are_refused() {
    let src = tempfile::tempdir().unwrap();
    write_split(
        src.path(),
        "train-images.idx",
        "train-labels.idx",
        3,
        &[0, 1],
    );
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    match err {
        DatasetError::CountMismatch {
            images_count,
            labels_count,
            ..
        } => {
            assert_eq!((images_count, labels_count), (3, 2));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn truncated_idx_is_refused_naming_the_file() {
    let src = tempfile::tempdir().unwrap();
    write_split(
        src.path(),
        "train-images.idx",
        "train-labels.idx",
        3,
        &[0, 1, 2],
    );
    let images = src.path().join("train-images.idx");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 5]).unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    match &err {
        DatasetError::Truncated {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &images);
            assert_eq!((*expected, *actual), (36, 31));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("train-images.idx"));
}

#[test]
fn splits_of_different_sizes_are_refused() {
    let src = tempfile::tempdir().unwrap();
    write_split(src.path(), "train-images.idx", "train-labels.idx", 1, &[0]);
    write_idx(
        &src.path().join("test-images.idx"),
        IdxType::U8,
        &[1, 5, 5],
        &[0; 25],
    );
    write_idx(&src.path().join("test-labels.idx"), IdxType::U8, &[1], &[0]);
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::MixedSizes { .. }), "{err}");
}
