//! The limits every SDFS value from the bus is checked against before it sizes anything.
//! A node's own limits that users may raise (the largest file) are node settings; these are
//! fixed by the protocol.

use crate::sdfs::VersionInfo;
use std::collections::BTreeMap;
use thiserror::Error;

/// Length of a blob id: 32 lower-case hex digits (128 random bits).
pub const BLOB_ID_LEN: usize = 32;
/// Length of a sha256 in hex.
pub const SHA256_HEX_LEN: usize = 64;
/// Most attributes on one version.
pub const MAX_ATTRS: usize = 32;
/// Longest attribute key, in bytes.
pub const MAX_ATTR_KEY: usize = 128;
/// Longest attribute value, in bytes.
pub const MAX_ATTR_VALUE: usize = 4096;
/// Most replicas a version may ask for or list.
pub const MAX_REPLICAS: usize = 16;
/// Most versions one restore may carry.
pub const MAX_RESTORE_VERSIONS: usize = 1024;
/// Smallest chunk a transfer may ask for.
pub const MIN_CHUNK: u64 = 4096;
/// Largest chunk a transfer may ask for.
pub const MAX_CHUNK: u64 = 1024 * 1024;

/// A value beyond a limit of the protocol; says which.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what}: {why}")]
pub struct LimitError {
    /// The field.
    pub what: &'static str,
    /// The limit it broke, in a few words.
    pub why: String,
}

fn limit(what: &'static str, why: String) -> LimitError {
    LimitError { what, why }
}

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A blob id: exactly [`BLOB_ID_LEN`] lower-case hex digits.
pub fn check_blob_id(blob: &str) -> Result<(), LimitError> {
    if blob.len() != BLOB_ID_LEN || !lower_hex(blob) {
        let shown: String = blob.chars().take(40).collect();
        return Err(limit(
            "blob id",
            format!("must be {BLOB_ID_LEN} lower-case hex digits, not {shown:?}"),
        ));
    }
    Ok(())
}

/// A sha256: exactly [`SHA256_HEX_LEN`] lower-case hex digits.
pub fn check_sha256(sha: &str) -> Result<(), LimitError> {
    if sha.len() != SHA256_HEX_LEN || !lower_hex(sha) {
        return Err(limit(
            "sha256",
            format!("must be {SHA256_HEX_LEN} lower-case hex digits"),
        ));
    }
    Ok(())
}

/// A version's user attributes: at most [`MAX_ATTRS`] keys of at most [`MAX_ATTR_KEY`] bytes
/// with values of at most [`MAX_ATTR_VALUE`] bytes.
pub fn check_attrs(attrs: &BTreeMap<String, String>) -> Result<(), LimitError> {
    if attrs.len() > MAX_ATTRS {
        let why = format!("at most {MAX_ATTRS} attributes, not {}", attrs.len());
        return Err(limit("attrs", why));
    }
    for (k, v) in attrs {
        if k.is_empty() || k.len() > MAX_ATTR_KEY {
            let why = format!("a key has 1 to {MAX_ATTR_KEY} bytes, not {}", k.len());
            return Err(limit("attrs", why));
        }
        if v.len() > MAX_ATTR_VALUE {
            let why = format!(
                "a value has at most {MAX_ATTR_VALUE} bytes, not {}",
                v.len()
            );
            return Err(limit("attrs", why));
        }
    }
    Ok(())
}

/// A replica list or an asked replication.
pub fn check_replicas(count: usize) -> Result<(), LimitError> {
    if count > MAX_REPLICAS {
        let why = format!("at most {MAX_REPLICAS}, not {count}");
        return Err(limit("replicas", why));
    }
    Ok(())
}

/// A chunk size asked for by a transfer.
pub fn check_chunk(chunk: u64) -> Result<(), LimitError> {
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        let why = format!("must be {MIN_CHUNK} to {MAX_CHUNK} bytes, not {chunk}");
        return Err(limit("chunk size", why));
    }
    Ok(())
}

/// Every field of a version that came from the bus (a commit or a restore).
pub fn check_version(v: &VersionInfo) -> Result<(), LimitError> {
    check_blob_id(&v.blob)?;
    check_sha256(&v.sha256)?;
    check_attrs(&v.attrs)?;
    check_replicas(v.replicas.len())?;
    check_replicas(v.replication.unwrap_or(0) as usize)?;
    for node in &v.replicas {
        crate::validate_token(node).map_err(|e| limit("replica", e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_hashes_and_chunks_have_exact_shapes() {
        assert!(check_blob_id(&"a".repeat(32)).is_ok());
        assert!(check_blob_id(&"A".repeat(32)).is_err());
        assert!(check_blob_id("../../etc").is_err());
        assert!(check_blob_id(&"a".repeat(33)).is_err());
        assert!(check_sha256(&"0".repeat(64)).is_ok());
        assert!(check_sha256("abc").is_err());
        assert!(check_chunk(0).is_err());
        assert!(check_chunk(MIN_CHUNK).is_ok());
        assert!(check_chunk(MAX_CHUNK + 1).is_err());
    }

    #[test]
    fn attrs_are_bounded_and_the_error_names_the_limit() {
        let many: BTreeMap<String, String> =
            (0..40).map(|i| (format!("k{i}"), String::new())).collect();
        let e = check_attrs(&many).unwrap_err();
        assert!(e.to_string().contains("at most 32"), "{e}");
        let big = BTreeMap::from([("k".to_string(), "v".repeat(MAX_ATTR_VALUE + 1))]);
        assert!(check_attrs(&big).is_err());
        assert!(check_attrs(&BTreeMap::from([(String::new(), String::new())])).is_err());
    }

    proptest! {
        #[test]
        fn any_string_is_judged_without_panic(s in ".{0,80}", n in any::<u64>()) {
            let _ = check_blob_id(&s);
            let _ = check_sha256(&s);
            let _ = check_chunk(n);
            let _ = check_replicas(n as usize);
        }
    }
}
