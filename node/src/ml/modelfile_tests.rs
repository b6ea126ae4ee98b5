//! Model files: a round trip, then hostile ones (arbitrary bytes, boundary header lengths and
//! header values) give a typed error or a checked header, never a panic or an allocation sized
//! by the header.

use super::model::{write_tensors, Model, ModelError};
use super::modelfile::{decode, decode_kind, encode, FileError, Header, Payload, MAX_HEADER_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use tch::Device;

fn header(shape: [u32; 3], classes: usize, name_len: usize, mean: usize) -> Header {
    Header {
        payload: Payload::Weights,
        arch: "mlp".into(),
        dataset: "d".into(),
        classes: (0..classes).map(|i| format!("{i:0>name_len$}")).collect(),
        shape,
        mean: vec![0.5; mean],
        std: vec![],
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: None,
        payload_sha256: String::new(),
    }
}

fn typed(e: &FileError) -> bool {
    matches!(
        e,
        FileError::BadMagic { .. } | FileError::Damaged { .. } | FileError::TooLarge { .. }
    )
}

#[test]
fn a_file_round_trips_and_any_damage_is_refused() {
    let mut h = header([1, 28, 28], 2, 1, 1);
    h.arch = "cnn".into();
    let bytes = encode(h, b"weights");
    let (h, p) = decode("m", &bytes).unwrap();
    assert_eq!((h.arch.as_str(), p), ("cnn", &b"weights"[..]));
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(decode("m", &flipped)
        .unwrap_err()
        .to_string()
        .contains("checksum"));
    assert!(matches!(
        decode("m", b"PK\x03\x04zip"),
        Err(FileError::BadMagic { .. })
    ));
    assert!(decode("m", &bytes[..20])
        .unwrap_err()
        .to_string()
        .contains("damaged"));
    let err = decode_kind("m", &bytes, &[Payload::Checkpoint]).unwrap_err();
    assert!(err.to_string().contains("expected Checkpoint"), "{err}");
}

#[test]
fn a_header_length_beyond_the_limit_is_refused_unread() {
    for len in [MAX_HEADER_BYTES as u32 + 1, u32::MAX] {
        let mut bytes = b"IDUNNOM1".to_vec();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(b"{}");
        match decode("m", &bytes) {
            Err(FileError::TooLarge { limit, found, .. }) => {
                assert_eq!((limit, found), ("MAX_HEADER_BYTES", u64::from(len)));
            }
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn a_builtin_header_claiming_more_weights_than_its_file_holds_is_refused_unbuilt() {
    // 3x2048x2048 inputs: an mlp would need 12 GB of weights; the file holds none.
    let file = encode(
        header([3, 2048, 2048], 10, 1, 0),
        &write_tensors(&BTreeMap::new()),
    );
    let err = Model::load("m", &file, Device::Cpu).err().unwrap();
    assert!(matches!(err, ModelError::Mismatch(_)), "{err}");
    assert!(
        err.to_string().contains("MAX_BUILTIN_WEIGHT_BYTES"),
        "{err}"
    );
    // Within the built-in limit but beyond what the file holds.
    let mut h = header([1, 512, 512], 10, 1, 0);
    h.arch = "cnn".into();
    let err = Model::load("m", &encode(h, b"tiny"), Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("but it holds 4"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_are_a_typed_error(
        magic in any::<bool>(),
        len in prop_oneof![Just(0u32), Just(1), Just(2), Just(64), Just(u32::MAX), any::<u32>()],
        rest in vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = Vec::new();
        if magic {
            bytes.extend_from_slice(b"IDUNNOM1");
            bytes.extend_from_slice(&len.to_le_bytes());
        }
        bytes.extend_from_slice(&rest);
        match decode("m", &bytes) {
            Ok((h, _)) => prop_assert!(h.validate("m").is_ok()),
            Err(e) => prop_assert!(typed(&e), "{e}"),
        }
    }

    /// Boundary header values: refused by a named limit, or accepted within every limit.
    #[test]
    fn hostile_header_values_are_checked(
        shape in prop::array::uniform3(prop_oneof![Just(0u32), Just(1), Just(3), Just(2048), Just(2049), Just(u32::MAX), any::<u32>()]),
        classes in 0usize..4,
        name_len in prop_oneof![Just(1usize), Just(256), Just(257)],
        mean in 0usize..5,
    ) {
        let file = encode(header(shape, classes, name_len, mean), b"w");
        match decode("m", &file) {
            Ok((h, payload)) => {
                prop_assert!(h.shape[0] == 1 || h.shape[0] == 3);
                prop_assert!((1..=2048).contains(&h.shape[1]) && (1..=2048).contains(&h.shape[2]));
                prop_assert!(name_len <= 256 || classes == 0);
                prop_assert!(mean <= 1 || mean == h.shape[0] as usize);
                prop_assert_eq!(payload, b"w");
            }
            Err(e) => prop_assert!(matches!(e, FileError::TooLarge { .. } | FileError::Damaged { .. }), "{e}"),
        }
    }
}
