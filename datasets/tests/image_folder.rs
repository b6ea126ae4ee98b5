//! Importing image folders (labelled and flat) made with the `image` crate.

mod common;

use common::{save_gray, save_rgb};
use idunno_datasets::{import_dir, load_split, Source};

#[test]
fn imports_grayscale_png_and_jpeg_class_folders() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let s = src.path();
    save_gray(&s.join("train/cat/b.png"), 4, 3, 10);
    save_gray(&s.join("train/cat/a.PNG"), 4, 3, 20);
    save_gray(&s.join("train/dog/c.jpg"), 4, 3, 200);
    save_gray(&s.join("test/dog/d.jpeg"), 4, 3, 100);
    save_gray(&s.join("test/bird/e.png"), 4, 3, 50);
    std::fs::write(s.join("train/cat/notes.txt"), "ignored").unwrap();

    let m = import_dir(s, out.path(), "pets").unwrap();
    assert_eq!(m.source, Source::ImageFolder);
    assert_eq!(m.shape, [1, 3, 4]);
    assert_eq!(m.classes, ["bird", "cat", "dog"]);
    assert_eq!((m.splits["train"].count, m.splits["test"].count), (3, 2));

    let train = load_split(out.path(), &m, "train").unwrap();
    assert_eq!(train.labels.unwrap(), [1, 1, 2]);
    assert_eq!(
        train.files.unwrap(),
        ["train/cat/a.PNG", "train/cat/b.png", "train/dog/c.jpg"]
    );
    assert_eq!(train.pixels[..12], [20; 12]);
    assert_eq!(train.pixels[12..24], [10; 12]);
    assert!(
        train.pixels[24..].iter().all(|&v| v.abs_diff(200) <= 3),
        "jpeg is near 200"
    );
    let test = load_split(out.path(), &m, "test").unwrap();
    assert_eq!(test.labels.unwrap(), [0, 2]);
    let listed = std::fs::read_to_string(out.path().join("test-files.txt")).unwrap();
    assert_eq!(listed, "test/bird/e.png\ntest/dog/d.jpeg\n");
}

#[test]
fn one_rgb_image_makes_everything_rgb_and_loads_as_nchw() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let s = src.path();
    save_gray(&s.join("train/a/x.png"), 2, 2, 40);
    save_rgb(&s.join("train/b/y.png"), 2, 2, [10, 20, 30], [1, 2, 3]);

    let m = import_dir(s, out.path(), "rgb").unwrap();
    assert_eq!(m.shape, [3, 2, 2]);
    let raw = std::fs::read(out.path().join("train-images.idx")).unwrap();
    assert_eq!(raw[3], 4, "RGB images are stored as N×H×W×C");
    let split = load_split(out.path(), &m, "train").unwrap();
    assert_eq!(split.shape, [3, 2, 2]);
    assert_eq!(
        split.pixels[..12],
        [40; 12],
        "grayscale becomes equal RGB channels"
    );
    let y = &split.pixels[12..];
    assert_eq!(y, [10, 1, 1, 1, 20, 2, 2, 2, 30, 3, 3, 3]);
    assert_eq!(split.labels.unwrap(), [0, 1]);
    assert!((m.mean[0] - (40.0 * 4.0 + 10.0 + 3.0) / 8.0 / 255.0).abs() < 1e-6);
}

#[test]
fn imports_flat_folder_as_unlabelled_split_all() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    save_gray(&src.path().join("2.png"), 5, 5, 2);
    save_gray(&src.path().join("1.jpg"), 5, 5, 128);
    std::fs::write(src.path().join("info.txt"), "ignored").unwrap();

    let m = import_dir(src.path(), out.path(), "loose").unwrap();
    assert_eq!(m.source, Source::Unlabelled);
    assert!(!m.labelled());
    assert_eq!(m.splits.keys().collect::<Vec<_>>(), ["all"]);
    assert!(m.splits["all"].labels.is_none());
    assert!(!out.path().join("all-labels.idx").exists());
    let all = load_split(out.path(), &m, "all").unwrap();
    assert_eq!(all.count, 2);
    assert_eq!(all.labels, None);
    assert_eq!(all.files.unwrap(), ["1.jpg", "2.png"]);
    assert_eq!(all.pixels[25..], [2; 25]);
}
