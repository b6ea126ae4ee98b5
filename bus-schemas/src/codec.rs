//! The codec: one named MessagePack map per payload with a top-level `schema_version`.
//!
//! Encoding writes the message's fields beside `schema_version` (no envelope). Decoding first
//! reads only `schema_version` and refuses versions this build does not know with
//! [`DecodeError::UnsupportedVersion`], then reads the message, ignoring fields it does not know
//! (fields added later carry `#[serde(default)]`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u16 = 1;

/// A type that travels on the bus as one payload.
pub trait Message: Serialize + DeserializeOwned {
    /// A short name for error messages and logs.
    const NAME: &'static str;
}

/// Why bytes could not be decoded as a message. Decoding never changes any state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The bytes are not a MessagePack map at all.
    #[error("payload is not a MessagePack map")]
    NotAMap,
    /// The map has no readable `schema_version`.
    #[error("payload has no schema_version")]
    MissingVersion,
    /// The map carries a version this build does not read.
    #[error("unsupported schema_version {found} (this build reads {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The version found in the payload.
        found: u16,
    },
    /// The map does not have the fields of the expected message.
    #[error("payload is not a valid {message}: {reason}")]
    Shape {
        /// The expected message type ([`Message::NAME`]).
        message: &'static str,
        /// What the decoder reported.
        reason: String,
    },
}

/// Why a message could not be encoded (a value serde cannot write as MessagePack).
#[derive(Debug, Error)]
#[error("cannot encode {message}: {reason}")]
pub struct EncodeError {
    /// The message type ([`Message::NAME`]).
    pub message: &'static str,
    /// What the encoder reported.
    pub reason: String,
}

#[derive(Serialize)]
struct Versioned<'a, T> {
    schema_version: u16,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Deserialize)]
struct VersionProbe {
    schema_version: Option<u16>,
}

/// Encodes `msg` as one named MessagePack map with `schema_version` = [`SCHEMA_VERSION`].
pub fn encode<T: Message>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let versioned = Versioned {
        schema_version: SCHEMA_VERSION,
        body: msg,
    };
    rmp_serde::to_vec_named(&versioned).map_err(|e| EncodeError {
        message: T::NAME,
        reason: e.to_string(),
    })
}

/// Decodes one message, checking that it is a map with a supported `schema_version`.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, DecodeError> {
    let is_map = matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf));
    if !is_map {
        return Err(DecodeError::NotAMap);
    }
    let probe: VersionProbe =
        rmp_serde::from_slice(bytes).map_err(|_| DecodeError::MissingVersion)?;
    match probe.schema_version {
        None => return Err(DecodeError::MissingVersion),
        Some(SCHEMA_VERSION) => {}
        Some(found) => return Err(DecodeError::UnsupportedVersion { found }),
    }
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Shape {
        message: T::NAME,
        reason: e.to_string(),
    })
}

/// Asserts that `msg` survives encoding and decoding unchanged (for every message's tests).
#[cfg(test)]
pub(crate) fn round_trip<T: Message + PartialEq + std::fmt::Debug>(msg: T) {
    let bytes = encode(&msg).expect("encodes");
    assert_eq!(decode::<T>(&bytes).expect("decodes"), msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        count: u64,
        ratio: f64,
        tags: Vec<String>,
        #[serde(default)]
        note: Option<String>,
    }
    impl Message for Sample {
        const NAME: &'static str = "sample";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OlderSample {
        name: String,
    }
    impl Message for OlderSample {
        const NAME: &'static str = "older sample";
    }

    fn sample() -> Sample {
        Sample {
            name: "a".into(),
            count: 3,
            ratio: 0.5,
            tags: vec!["x".into()],
            note: None,
        }
    }

    #[test]
    fn payload_is_a_named_map_with_the_version() {
        let bytes = encode(&sample()).unwrap();
        let value: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(&bytes).unwrap();
        assert!(value.contains_key("schema_version"));
        assert!(value.contains_key("name"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_defaults_filled() {
        let bytes = encode(&sample()).unwrap();
        let older: OlderSample = decode(&bytes).unwrap();
        assert_eq!(older.name, "a");
    }

    #[test]
    fn unknown_version_is_a_typed_error() {
        #[derive(Serialize)]
        struct Future {
            schema_version: u16,
            name: String,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            schema_version: 9,
            name: "a".into(),
        })
        .unwrap();
        assert_eq!(
            decode::<OlderSample>(&bytes),
            Err(DecodeError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn non_maps_and_missing_versions_are_refused() {
        assert_eq!(decode::<OlderSample>(b""), Err(DecodeError::NotAMap));
        assert_eq!(
            decode::<OlderSample>(&[0x93, 1, 2, 3]),
            Err(DecodeError::NotAMap)
        );
        let no_version = rmp_serde::to_vec_named(&OlderSample { name: "a".into() }).unwrap();
        assert_eq!(
            decode::<OlderSample>(&no_version),
            Err(DecodeError::MissingVersion)
        );
    }

    #[test]
    fn wrong_shape_names_the_message() {
        let bytes = encode(&OlderSample { name: "a".into() }).unwrap();
        let err = decode::<Sample>(&bytes).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Shape {
                message: "sample",
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn any_value_round_trips(
            name in ".{0,40}", count in any::<u64>(), ratio in -1e9f64..1e9,
            tags in proptest::collection::vec(".{0,10}", 0..5), note in proptest::option::of(".{0,10}"),
        ) {
            let msg = Sample { name, count, ratio, tags, note };
            let bytes = encode(&msg).unwrap();
            prop_assert_eq!(decode::<Sample>(&bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn truncated_payloads_are_errors(cut in 0usize..30) {
            let bytes = encode(&sample()).unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode::<Sample>(&bytes[..cut]).is_err());
        }
    }
}
