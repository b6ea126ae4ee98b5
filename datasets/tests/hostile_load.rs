//! Hostile canonical datasets on a worker's disk: gzip bombs behind a valid manifest, headers
//! that lie about their dimensions, and manifests with hostile values. Each is refused with a
//! typed error naming what it broke, holding at most the declared size in memory.

mod common;
mod peak;

use common::{gray_pixels, gzip, write_idx};
use idunno_datasets::idx::{self, IdxType};
use idunno_datasets::{
    import_dir, load_split, load_split_with, sha256_file, DatasetError, Limit, Limits, Manifest,
};
use proptest::prelude::*;
use std::path::Path;

#[global_allocator]
static ALLOC: peak::Counting = peak::Counting;

/// What a load may hold beyond the stored file and the declared data.
const SLACK: usize = 1 << 20;

/// Imports `n` 28x28 grey samples with labels 0..10 as a canonical dataset in `out`.
fn canonical(src: &Path, out: &Path, n: usize) -> Manifest {
    write_idx(
        &src.join("train-images-idx3-ubyte"),
        IdxType::U8,
        &[n, 28, 28],
        &gray_pixels(n, 28, 28),
    );
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_idx(
        &src.join("train-labels-idx1-ubyte"),
        IdxType::U8,
        &[n],
        &labels,
    );
    import_dir(src, out, "hostile").unwrap()
}

/// Replaces the train images file by `bytes` and records its size and sha256 in the manifest,
/// as a user who writes the manifest themselves would.
fn replace_images(out: &Path, manifest: &mut Manifest, bytes: &[u8]) {
    let split = manifest.splits.get_mut("train").unwrap();
    let path = out.join(&split.images.file);
    std::fs::write(&path, bytes).unwrap();
    let (size, sha256) = sha256_file(&path).unwrap();
    split.images.size = size;
    split.images.sha256 = sha256;
    manifest.write(out).unwrap();
}

/// A gzipped images file of `dims`, whose stream holds `data_len` bytes of data.
fn bomb(dims: &[usize], data_len: usize) -> Vec<u8> {
    let mut raw = idx::encode(IdxType::U8, &[1], &[0]).unwrap();
    raw.truncate(3);
    raw.push(dims.len() as u8);
    for &d in dims {
        raw.extend_from_slice(&(d as u32).to_be_bytes());
    }
    raw.resize(raw.len() + data_len, 0);
    gzip(&raw)
}

#[test]
fn a_bomb_behind_a_valid_manifest_is_refused_at_its_declared_size() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = 1000;
    let mut manifest = canonical(src.path(), out.path(), n);
    let declared = n * 784;
    // The header agrees with the manifest; the stream goes on to 100x the declared size.
    let file = bomb(&[n, 28, 28], 100 * declared);
    replace_images(out.path(), &mut manifest, &file);
    let (loaded, peak) = peak::peak(|| load_split(out.path(), &manifest, "train"));
    let err = loaded.unwrap_err();
    match &err {
        DatasetError::ExceedsDeclared { declared: d, .. } => assert_eq!(*d, declared as u64),
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("decompresses to more than"),
        "{err}"
    );
    assert!(peak <= file.len() + declared + SLACK, "peak {peak}");
}

#[test]
fn a_header_claiming_100x_the_manifest_is_refused_before_its_data() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n = 1000;
    let mut manifest = canonical(src.path(), out.path(), n);
    let file = bomb(&[100 * n, 28, 28], 100 * n * 784);
    replace_images(out.path(), &mut manifest, &file);
    let (loaded, peak) = peak::peak(|| load_split(out.path(), &manifest, "train"));
    let err = loaded.unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::ExceedsDeclared {
                declared: 784_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("[100000, 28, 28]"), "{err}");
    assert!(peak <= file.len() + SLACK, "peak {peak}");
}

#[test]
fn a_split_beyond_the_file_limit_is_refused_before_any_read() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let manifest = canonical(src.path(), out.path(), 100);
    let limits = Limits {
        max_file_bytes: 50 * 784,
    };
    let err = load_split_with(out.path(), &manifest, "train", &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::TooLarge {
                limit: Limit::FileBytes,
                max: 39_200,
                found: 78_400,
                ..
            }
        ),
        "{err}"
    );
    // The same dataset loads within the default limits.
    let split = load_split(out.path(), &manifest, "train").unwrap();
    assert_eq!(split.count, 100);
}

#[test]
fn labels_outside_the_classes_and_mismatched_sizes_are_refused() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut manifest = canonical(src.path(), out.path(), 20);
    manifest.splits.get_mut("train").unwrap().images.size += 1;
    let err = load_split(out.path(), &manifest, "train").unwrap_err();
    assert!(err.to_string().contains("the manifest records"), "{err}");
    let mut manifest = Manifest::read(out.path()).unwrap();
    manifest.classes.truncate(5);
    let err = load_split(out.path(), &manifest, "train").unwrap_err();
    assert!(
        err.to_string().contains("is not one of the 5 classes"),
        "{err}"
    );
}

#[test]
fn a_manifest_beyond_its_limit_is_refused_unparsed() {
    let big = vec![b' '; (16 << 20) + 1];
    let err = Manifest::from_json(&big, Path::new("m.json")).unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::TooLarge {
                limit: Limit::ManifestBytes,
                ..
            }
        ),
        "{err}"
    );
}

fn manifest_json(
    shape: [u32; 3],
    count: u64,
    classes: usize,
    name_len: usize,
    file: &str,
) -> String {
    let classes: Vec<String> = (0..classes).map(|i| format!("{i:0>name_len$}")).collect();
    serde_json::json!({
        "version": 1, "name": "h", "source": "idx", "shape": shape, "classes": classes,
        "splits": {"train": {"count": count,
            "images": {"file": file, "size": 1u64 << 40, "sha256": "ab".repeat(32)}}},
    })
    .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_manifest_bytes_give_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match Manifest::from_json(&bytes, Path::new("m.json")) {
            Ok(m) => prop_assert!(m.validate(Path::new("m.json")).is_ok()),
            Err(e) => prop_assert!(matches!(e, DatasetError::BadManifest { .. } | DatasetError::TooLarge { .. }), "{e}"),
        }
    }

    /// Boundary and arbitrary values in a well-formed manifest: refused by a limit, or
    /// accepted and then refused at load without allocating what they claim.
    #[test]
    fn hostile_manifest_values_are_bounded(
        shape in prop::array::uniform3(prop_oneof![Just(0u32), Just(1), Just(3), Just(2048), Just(2049), Just(u32::MAX), any::<u32>()]),
        count in prop_oneof![Just(0u64), Just(1), Just(1 << 28), Just((1 << 28) + 1), Just(u64::MAX), any::<u64>()],
        classes in 0usize..4,
        name_len in prop_oneof![Just(1usize), Just(256), Just(257)],
        file in prop_oneof![Just("train-images.idx"), Just("../../escape"), Just("/abs"), Just("")],
    ) {
        let json = manifest_json(shape, count, classes, name_len, file);
        let dir = tempfile::tempdir().unwrap();
        match Manifest::from_json(json.as_bytes(), Path::new("m.json")) {
            Ok(m) => {
                prop_assert!(m.shape[0] == 1 || m.shape[0] == 3);
                prop_assert!(m.shape[1] <= 2048 && m.shape[2] <= 2048);
                // Class names only exist when there are classes.
                prop_assert!(count <= 1 << 28 && (classes == 0 || name_len <= 256) && file == "train-images.idx");
                let limits = Limits { max_file_bytes: 1 << 20 };
                let (loaded, peak) = peak::peak(|| load_split_with(dir.path(), &m, "train", &limits));
                let err = loaded.unwrap_err();
                prop_assert!(matches!(err, DatasetError::TooLarge { .. } | DatasetError::Io { .. }), "{err}");
                prop_assert!(peak <= SLACK, "peak {peak}");
            }
            Err(e) => prop_assert!(matches!(e, DatasetError::BadManifest { .. } | DatasetError::TooLarge { .. }), "{e}"),
        }
    }
}
