//! Putting versions back into a file's metadata (`idunno fsck --rebuild`), as a pure merge.

use bus_schemas::sdfs::{FileInfo, VersionInfo};

/// Merges `restored` into `file` (see [`super::meta::Meta::restore`]); returns how many versions it added.
pub fn merge_versions(file: &mut FileInfo, restored: &[VersionInfo]) -> u64 {
    let mut added = 0;
    let mut late = Vec::new();
    let mut sorted: Vec<&VersionInfo> = restored.iter().collect();
    sorted.sort_by_key(|v| (v.version == 0, v.version, v.created_ms));
    for v in sorted {
        if file.versions.iter().any(|x| x.blob == v.blob) {
            continue;
        }
        if v.version == 0 || file.versions.iter().any(|x| x.version == v.version) {
            late.push(v.clone());
        } else {
            file.versions.push(v.clone());
        }
        added += 1;
    }
    file.versions.sort_by_key(|v| v.version);
    for mut v in late {
        v.version = file.latest().map_or(1, |x| x.version + 1);
        file.versions.push(v);
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, blob: &str) -> VersionInfo {
        VersionInfo {
            version,
            blob: blob.into(),
            size: 1,
            sha256: String::new(),
            replicas: vec![],
            created_ms: version,
            replication: None,
            attrs: Default::default(),
        }
    }

    #[test]
    fn restored_versions_keep_their_numbers_unless_taken() {
        let mut file = FileInfo {
            name: "a".into(),
            versions: vec![v(1, "x")],
            pinned: vec![],
        };
        let added = merge_versions(&mut file, &[v(3, "c"), v(2, "b"), v(1, "y"), v(1, "x")]);
        assert_eq!(added, 3);
        let got: Vec<(u64, &str)> = file
            .versions
            .iter()
            .map(|v| (v.version, v.blob.as_str()))
            .collect();
        assert_eq!(got, [(1, "x"), (2, "b"), (3, "c"), (4, "y")]);
        assert_eq!(merge_versions(&mut file, &[v(2, "b")]), 0);
    }
}
