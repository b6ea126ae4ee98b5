//! Whether this node trusts the metadata bucket enough to delete blobs it does not name.
//!
//! The bucket carries an epoch, new each time it is created. The node keeps the epoch it
//! trusts in `<data-dir>/sdfs/epoch`. It trusts the bucket while the two match; a node that
//! trusts no epoch yet (new, or upgraded from a version without epochs), or sees another one
//! (the bucket was lost and created again), adopts the bucket's epoch only once every blob it
//! holds is named by the metadata. Until then it deletes nothing the metadata does not name:
//! those blobs stay in quarantine, reported by `idunno fsck`, until `fsck --rebuild` names them.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The longest epoch file read.
const MAX_EPOCH_BYTES: u64 = 256;

/// What the keeper may do this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The node trusts the bucket: unnamed blobs may be collected.
    Trusted,
    /// Every held blob is named: record the bucket's epoch and trust it from now on.
    Adopt,
    /// Keep every blob; the metadata cannot be trusted to name them all.
    Quarantine,
}

/// The sans-IO rule: `local` is the epoch the node trusts, `bucket` the bucket's (None if its
/// marker is unreadable), `unnamed` the count of held blobs no metadata names.
pub fn decide(local: Option<&str>, bucket: Option<&str>, unnamed: usize) -> Decision {
    match (local, bucket) {
        (_, None) => Decision::Quarantine,
        (Some(l), Some(b)) if l == b => Decision::Trusted,
        _ if unnamed == 0 => Decision::Adopt,
        _ => Decision::Quarantine,
    }
}

/// What the node reports of its trust (to `fsck` through its inventory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustState {
    /// Whether the node trusts the metadata.
    pub trusted: bool,
    /// Blobs kept only because the metadata cannot be trusted.
    pub quarantined: u64,
}

/// The epoch this node trusts, kept in its data directory.
#[derive(Debug)]
pub struct LocalEpoch {
    file: PathBuf,
    epoch: Option<String>,
}

impl LocalEpoch {
    /// Reads `<dir>/epoch`; a missing, oversized or unreadable file trusts nothing.
    pub fn load(dir: &Path) -> LocalEpoch {
        let file = dir.join("epoch");
        let epoch = std::fs::metadata(&file)
            .ok()
            .filter(|m| m.len() <= MAX_EPOCH_BYTES)
            .and_then(|_| std::fs::read_to_string(&file).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        LocalEpoch { file, epoch }
    }

    /// The trusted epoch.
    pub fn get(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// Records `epoch` durably (written to a temporary file, fsynced, renamed).
    pub fn adopt(&mut self, epoch: &str) -> std::io::Result<()> {
        let tmp = self.file.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(epoch.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.file)?;
        if let Some(dir) = self.file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.epoch = Some(epoch.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_trusts_only_the_epoch_it_recorded() {
        assert_eq!(decide(Some("e1"), Some("e1"), 9), Decision::Trusted);
        assert_eq!(decide(Some("e1"), Some("e2"), 1), Decision::Quarantine);
        assert_eq!(decide(Some("e1"), Some("e2"), 0), Decision::Adopt);
        assert_eq!(decide(None, Some("e2"), 0), Decision::Adopt);
        assert_eq!(decide(None, Some("e2"), 3), Decision::Quarantine);
        assert_eq!(decide(Some("e1"), None, 0), Decision::Quarantine);
    }

    #[test]
    fn the_epoch_survives_a_restart_and_junk_trusts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut local = LocalEpoch::load(dir.path());
        assert_eq!(local.get(), None);
        local.adopt("abc").unwrap();
        assert_eq!(LocalEpoch::load(dir.path()).get(), Some("abc"));
        std::fs::write(dir.path().join("epoch"), vec![b'x'; 300]).unwrap();
        assert_eq!(LocalEpoch::load(dir.path()).get(), None);
    }
}
