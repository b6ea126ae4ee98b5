//! Hostile IDX files: arbitrary bytes, boundary dimensions and gzip bombs give a typed error
//! or a bounded result, never a panic, and never allocate past the limit (counted by a global
//! allocator).

mod common;
mod peak;

use common::gzip;
use idunno_datasets::idx::{self, IdxType};
use idunno_datasets::{DatasetError, Limit};
use proptest::collection::vec;
use proptest::prelude::*;
use std::path::Path;

#[global_allocator]
static ALLOC: peak::Counting = peak::Counting;

/// The payload limit the property tests read with.
const LIMIT: u64 = 1 << 20;
/// What a read may hold beyond its data: the gzip decoder's window and buffers.
const SLACK: usize = 512 << 10;

fn p() -> &'static Path {
    Path::new("hostile.idx")
}

fn header(code: u8, dims: &[u32]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

/// Every error a hostile IDX stream may give.
fn typed(e: &DatasetError) -> bool {
    matches!(
        e,
        DatasetError::BadIdx { .. }
            | DatasetError::Truncated { .. }
            | DatasetError::TooLarge { .. }
            | DatasetError::ExceedsDeclared { .. }
    )
}

fn boundary_dim() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(255),
        Just(65_536),
        Just(1 << 20),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        0u32..16,
        any::<u32>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_give_a_bounded_idx_or_a_typed_error(
        bytes in vec(any::<u8>(), 0..2048),
        gz in any::<bool>(),
    ) {
        let input = if gz { gzip(&bytes) } else { bytes.clone() };
        let (read, peak) = peak::peak(|| idx::read_from_limited(&input[..], p(), LIMIT));
        match read {
            Ok(idx) => prop_assert!(idx.data.len() as u64 <= LIMIT),
            Err(e) => prop_assert!(typed(&e), "{e}"),
        }
        prop_assert!(peak <= bytes.len() + SLACK, "peak {peak}");
    }

    #[test]
    fn boundary_dimensions_are_refused_before_any_payload_is_read(
        code in prop_oneof![Just(0x08u8), Just(0x09), Just(0x0B), Just(0x0C), Just(0x0D), Just(0x0E), any::<u8>()],
        dims in vec(boundary_dim(), 1..6),
        payload in vec(any::<u8>(), 0..64),
        gz in any::<bool>(),
    ) {
        let raw = [header(code, &dims), payload.clone()].concat();
        let input = if gz { gzip(&raw) } else { raw };
        let (read, peak) = peak::peak(|| idx::read_from_limited(&input[..], p(), LIMIT));
        let elem = IdxType::from_code(code).map(|k| k.elem_size() as u128);
        let len = elem.map(|e| dims.iter().fold(e, |acc, &d| acc.saturating_mul(u128::from(d))));
        match (&read, len) {
            (Ok(idx), Some(len)) => {
                prop_assert_eq!(idx.data.len() as u128, len);
                prop_assert_eq!(idx.data.as_slice(), payload.as_slice());
            }
            (Ok(_), None) => prop_assert!(false, "an unknown type was accepted"),
            (Err(DatasetError::TooLarge { limit, .. }), Some(len)) => {
                prop_assert_eq!(*limit, Limit::FileBytes);
                prop_assert!(len > u128::from(LIMIT));
            }
            (Err(e), Some(len)) => {
                prop_assert!(typed(e), "{e}");
                prop_assert!(len <= u128::from(LIMIT), "{len} bytes were not refused as too large: {e}");
            }
            (Err(e), None) => prop_assert!(matches!(e, DatasetError::BadIdx { .. }), "{e}"),
        }
        // The declared size (once within the limit) is reserved up front, never more.
        let reserved = len.unwrap_or(0).min(u128::from(LIMIT)) as usize;
        prop_assert!(peak <= reserved + 1 + SLACK, "peak {peak}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A stream that decompresses to 2–100 times what its header declares is refused one byte
    /// past the declared size.
    #[test]
    fn gz_bombs_are_refused_one_byte_past_the_declared_size(
        declared in 1u32..20_000,
        factor in 2usize..=100,
    ) {
        let mut raw = header(0x08, &[declared]);
        raw.resize(raw.len() + declared as usize * factor, 0);
        let bomb = gzip(&raw);
        let (read, peak) = peak::peak(|| idx::read_from_limited(&bomb[..], p(), LIMIT));
        match read {
            Err(DatasetError::ExceedsDeclared { declared: d, .. }) => {
                prop_assert_eq!(d, u64::from(declared));
            }
            other => prop_assert!(false, "{other:?}"),
        }
        prop_assert!(peak <= declared as usize + 1 + SLACK, "peak {peak}");
    }
}

#[test]
fn a_header_announcing_more_than_the_limit_costs_nothing() {
    // 1000 samples of 28x28 declared, the header claims 100x: refused before its data.
    let mut raw = header(0x08, &[100_000, 28, 28]);
    raw.resize(raw.len() + 100_000 * 784, 0);
    let bomb = gzip(&raw);
    let (read, peak) = peak::peak(|| idx::read_from_limited(&bomb[..], p(), 1000 * 784));
    let err = read.unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::TooLarge {
                limit: Limit::FileBytes,
                max: 784_000,
                found: 78_400_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("at most 784000 bytes (--max-dataset-file-bytes), not 78400000"),
        "{err}"
    );
    assert!(peak <= SLACK, "peak {peak}");
}

#[test]
fn a_100x_gz_bomb_holds_at_most_its_declared_size() {
    let declared = 1_000_000u32;
    let mut raw = header(0x08, &[declared]);
    raw.resize(raw.len() + 100 * declared as usize, 0);
    let bomb = gzip(&raw);
    drop(raw);
    let (read, peak) = peak::peak(|| idx::read_from_limited(&bomb[..], p(), 4 << 20));
    let err = read.unwrap_err();
    assert!(
        matches!(
            err,
            DatasetError::ExceedsDeclared {
                declared: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("decompresses to more than"),
        "{err}"
    );
    assert!(peak <= declared as usize + 1 + SLACK, "peak {peak}");
}
