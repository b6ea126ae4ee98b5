//! Helpers shared by the integration tests: synthetic IDX files and images.

#![allow(dead_code)]

use flate2::write::GzEncoder;
use flate2::Compression;
use idunno_datasets::idx::{self, IdxType};
use std::io::Write;
use std::path::Path;

/// Writes an IDX file, gzipped when `path` ends in `.gz`.
pub fn write_idx(path: &Path, kind: IdxType, dims: &[usize], data: &[u8]) {
    let bytes = idx::encode(kind, dims, data).unwrap();
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        gzip(&bytes)
    } else {
        bytes
    };
    std::fs::write(path, bytes).unwrap();
}

/// Gzips bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` grayscale h×w images whose pixel i of sample s is `(s * 7 + i) % 256`.
pub fn gray_pixels(n: usize, h: usize, w: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|s| (0..h * w).map(move |i| ((s * 7 + i) % 256) as u8))
        .collect()
}

/// Saves a uniform grayscale image (format from the extension).
pub fn save_gray(path: &Path, w: u32, h: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([value]))
        .save(path)
        .unwrap();
}

/// Saves an RGB image whose pixel (0, 0) is `first` and every other pixel is `rest`.
pub fn save_rgb(path: &Path, w: u32, h: u32, first: [u8; 3], rest: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb(rest));
    img.put_pixel(0, 0, image::Rgb(first));
    img.save(path).unwrap();
}
