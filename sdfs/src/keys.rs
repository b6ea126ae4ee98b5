//! SDFS names as JetStream KV keys: `f.` then each path segment in unpadded base64url, joined
//! by `.`, so a directory's files share a key prefix (`f.<seg>.>` lists them).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The key prefix of file entries.
const PREFIX: &str = "f";

/// The KV key of a (valid) SDFS name.
pub fn key(name: &str) -> String {
    let mut key = String::from(PREFIX);
    for segment in name.split('/') {
        key.push('.');
        key.push_str(&URL_SAFE_NO_PAD.encode(segment));
    }
    key
}

/// The KV key filter matching every file under directory `dir` (with or without a trailing
/// `/`).
pub fn dir_filter(dir: &str) -> String {
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    format!("{}.>", key(dir))
}

/// The SDFS name of a key, or `None` if the key is not a file key.
pub fn name(key: &str) -> Option<String> {
    let mut parts = key.split('.');
    if parts.next() != Some(PREFIX) {
        return None;
    }
    let mut segments = Vec::new();
    for p in parts {
        let bytes = URL_SAFE_NO_PAD.decode(p).ok()?;
        segments.push(String::from_utf8(bytes).ok()?);
    }
    (!segments.is_empty()).then(|| segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_use_only_kv_safe_characters() {
        for n in [
            "a",
            "datasets/fashion mnist/ü.png",
            "a.b/c-d_e",
            "x/.hidden",
        ] {
            let k = key(n);
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{k}"
            );
            assert_eq!(name(&k).as_deref(), Some(n));
        }
    }

    #[test]
    fn a_directory_filter_matches_its_files_only() {
        let filter = dir_filter("data/");
        let prefix = filter.trim_end_matches('>');
        assert!(key("data/a.txt").starts_with(prefix));
        assert!(!key("database/a.txt").starts_with(prefix));
        assert!(!key("data").starts_with(prefix));
    }

    #[test]
    fn foreign_keys_are_not_names() {
        assert_eq!(name("lease.coordinator"), None);
        assert_eq!(name("f.!!"), None);
    }
}
