//! Hostile images: arbitrary bytes, damaged PNGs and headers announcing huge images give a
//! typed error, never a panic, and never allocate what the header claims.

mod peak;

use idunno_datasets::{image_to_chw, import_dir, DatasetError, ImageError, Limit};
use proptest::collection::vec;
use proptest::prelude::*;
use std::io::Cursor;

#[global_allocator]
static ALLOC: peak::Counting = peak::Counting;

/// What decoding a small hostile image may hold at once.
const SLACK: usize = 4 << 20;
/// The decoder's own limit: an image whose header claims sides within `MAX_DECODE_SIDE` may
/// take up to this before its data turns out to be missing.
const DECODE_ALLOC: usize = idunno_datasets::limits::MAX_DECODE_ALLOC as usize;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::new_luma8(w, h)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A valid 4x4 PNG whose IHDR (with a correct CRC) claims `w` x `h`.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = png(4, 4);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height at 16..24; CRC at 29..33.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn a_header_announcing_a_huge_image_is_refused_by_the_decoder_limits() {
    for (w, h) in [(100_000, 100_000), (u32::MAX, 1), (8193, 4), (4, 8193)] {
        let bytes = png_claiming(w, h);
        let (out, peak) = peak::peak(|| image_to_chw(&bytes, [1, 28, 28]));
        let err = out.unwrap_err();
        assert!(matches!(err, ImageError::Limits(_)), "{w}x{h}: {err}");
        assert!(err.to_string().contains("MAX_DECODE_SIDE"), "{err}");
        assert!(peak <= SLACK, "{w}x{h}: peak {peak}");
    }
}

#[test]
fn model_inputs_beyond_the_limits_are_refused_before_decoding() {
    let bytes = png(4, 4);
    for shape in [[2, 28, 28], [0, 28, 28], [usize::MAX, 1, 1]] {
        let err = image_to_chw(&bytes, shape).unwrap_err();
        assert!(matches!(err, ImageError::Channels(_)), "{shape:?}: {err}");
    }
    for shape in [[1, 0, 28], [3, 2049, 28], [1, 28, usize::MAX]] {
        let err = image_to_chw(&bytes, shape).unwrap_err();
        assert!(
            matches!(err, ImageError::InputSide { .. }),
            "{shape:?}: {err}"
        );
        assert!(err.to_string().contains("MAX_IMAGE_SIDE"), "{err}");
    }
    assert_eq!(image_to_chw(&bytes, [3, 2048, 1]).unwrap().len(), 3 * 2048);
}

#[test]
fn an_image_folder_with_a_huge_header_is_refused_at_import() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("train/a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ok.png"), png(4, 4)).unwrap();
    std::fs::write(dir.join("huge.png"), png_claiming(3000, 4)).unwrap();
    let err = import_dir(src.path(), &src.path().join("out"), "x").unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::TooLarge {
                limit: Limit::ImageSide,
                max: 2048,
                found: 3000,
                ..
            }
        ),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_a_typed_error(bytes in vec(any::<u8>(), 0..1024)) {
        let (out, peak) = peak::peak(|| image_to_chw(&bytes, [1, 28, 28]));
        prop_assert!(out.is_err());
        prop_assert!(peak <= SLACK, "peak {peak}");
    }

    #[test]
    fn damaged_images_never_panic(
        at in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        w in 1u32..64,
        h in 1u32..64,
    ) {
        let mut bytes = png(w, h);
        for (i, v) in at {
            let i = i.index(bytes.len());
            bytes[i] = v;
        }
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        let (out, peak) = peak::peak(|| image_to_chw(&bytes, [3, 16, 16]));
        if let Ok(chw) = out {
            prop_assert_eq!(chw.len(), 3 * 16 * 16);
        }
        prop_assert!(peak <= DECODE_ALLOC + SLACK, "peak {peak}");
    }

    #[test]
    fn claimed_sizes_never_size_an_allocation(w in any::<u32>(), h in any::<u32>()) {
        prop_assume!((w, h) != (4, 4));
        let bytes = png_claiming(w, h);
        let (out, peak) = peak::peak(|| image_to_chw(&bytes, [1, 8, 8]));
        prop_assert!(out.is_err());
        prop_assert!(peak <= DECODE_ALLOC + SLACK, "{w}x{h}: peak {peak}");
    }
}
