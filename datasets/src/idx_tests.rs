use super::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;

fn p() -> &'static Path {
    Path::new("t.idx")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn round_trips_plain_and_gzipped() {
    let data: Vec<u8> = (0..24).collect();
    let bytes = encode(IdxType::U8, &[2, 3, 4], &data).unwrap();
    assert_eq!(&bytes[..8], &[0, 0, 8, 3, 0, 0, 0, 2]);
    for input in [bytes.clone(), gz(&bytes)] {
        let idx = read_from(&input[..], p()).unwrap();
        assert_eq!(idx.kind, IdxType::U8);
        assert_eq!(idx.dims, vec![2, 3, 4]);
        assert_eq!(idx.data, data);
    }
}

#[test]
fn int32_labels_decode_big_endian() {
    let data: Vec<u8> = [300i32, -1].iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = encode(IdxType::I32, &[2], &data).unwrap();
    let idx = read_from(&bytes[..], p()).unwrap();
    assert_eq!(labels_as_i64(&idx, p()).unwrap(), vec![300, -1]);
}

#[test]
fn truncated_payload_is_reported_with_sizes() {
    let bytes = encode(IdxType::U8, &[10], &[1; 10]).unwrap();
    for input in [bytes[..12].to_vec(), gz(&bytes[..12])] {
        match read_from(&input[..], p()).unwrap_err() {
            DatasetError::Truncated {
                expected, actual, ..
            } => {
                assert_eq!((expected, actual), (10, 4));
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn bad_headers_and_trailing_data_are_refused() {
    let good = encode(IdxType::U8, &[2], &[1, 2]).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        vec![1, 0, 8, 1, 0, 0, 0, 1, 5],
        vec![0, 0, 7, 1, 0, 0, 0, 1, 5],
        vec![0, 0, 8, 0],
        vec![0, 0, 8, 2, 0, 0],
    ];
    for case in cases {
        let err = read_from(&case[..], p()).unwrap_err();
        assert!(matches!(err, DatasetError::BadIdx { .. }), "{err}");
    }
    let trailing = [good.as_slice(), &[9]].concat();
    for input in [trailing.clone(), gz(&trailing)] {
        let err = read_from(&input[..], p()).unwrap_err();
        assert!(
            matches!(err, DatasetError::ExceedsDeclared { declared: 2, .. }),
            "{err}"
        );
    }
}

#[test]
fn damaged_gzip_is_refused() {
    let mut z = gz(&encode(IdxType::U8, &[100], &[7; 100]).unwrap());
    let mid = z.len() / 2;
    z[mid] ^= 0xff;
    z.truncate(z.len() - 4);
    assert!(read_from(&z[..], p()).is_err());
}

#[test]
fn encode_checks_data_length() {
    assert!(encode(IdxType::I32, &[2], &[0; 4]).is_err());
    assert!(encode(IdxType::U8, &[], &[]).is_err());
}
