//! Datasets that cannot be imported or loaded, and the errors they give.

mod common;

use common::save_gray;
use idunno_datasets::{import_dir, load_split, DatasetError};

#[test]
fn mixed_image_sizes_name_both_files() {
    let src = tempfile::tempdir().unwrap();
    save_gray(&src.path().join("a.png"), 4, 4, 0);
    save_gray(&src.path().join("b.png"), 6, 5, 0);
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    match &err {
        DatasetError::MixedSizes {
            first_size,
            second_size,
            ..
        } => {
            assert_eq!((*first_size, *second_size), ((4, 4), (6, 5)));
        }
        other => panic!("unexpected {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("a.png") && msg.contains("b.png") && msg.contains("6x5"),
        "{msg}"
    );
}

#[test]
fn directory_of_unknown_files_is_neither_format() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("data.csv"), "1,2\n").unwrap();
    std::fs::create_dir(src.path().join("images")).unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::UnknownFormat { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&src.path().display().to_string()), "{msg}");
    assert!(msg.contains("neither an MNIST-IDX directory"), "{msg}");
}

#[test]
fn empty_and_missing_directories_are_refused() {
    let src = tempfile::tempdir().unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::UnknownFormat { .. }), "{err}");
    let err = import_dir(&src.path().join("nope"), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }), "{err}");
}

#[test]
fn undecodable_image_is_named() {
    let src = tempfile::tempdir().unwrap();
    save_gray(&src.path().join("train/a/ok.png"), 2, 2, 0);
    let bad = src.path().join("train/a/bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    match &err {
        DatasetError::Image { path, .. } => assert_eq!(path, &bad),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn split_folder_without_class_images_is_refused() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("train/empty")).unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(matches!(err, DatasetError::Layout { .. }), "{err}");
}

#[test]
fn load_split_detects_corruption_and_unknown_splits() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    save_gray(&src.path().join("train/a/x.png"), 3, 3, 9);
    save_gray(&src.path().join("train/b/y.png"), 3, 3, 8);
    let m = import_dir(src.path(), out.path(), "x").unwrap();

    let err = load_split(out.path(), &m, "test").unwrap_err();
    assert!(matches!(err, DatasetError::UnknownSplit { .. }), "{err}");

    let labels = out.path().join("train-labels.idx");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&labels, bytes).unwrap();
    match load_split(out.path(), &m, "train").unwrap_err() {
        DatasetError::Corrupt {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, labels);
            assert_eq!(expected, m.splits["train"].labels.as_ref().unwrap().sha256);
            assert_ne!(expected, actual);
        }
        other => panic!("unexpected {other}"),
    }
}
