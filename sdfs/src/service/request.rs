//! The checks of an SDFS metadata request before it touches anything: every value that sizes
//! or names something against its limit, and the version a `commit` or `write` asks to record.

use super::Sdfs;

use bus_schemas::sdfs::{SdfsRequest, VersionInfo};
use bus_schemas::sdfs_limits::{self as limits, LimitError};

impl Sdfs {
    /// Checks the values of a request that size or name anything against their limits.
    pub(super) fn check_limits(&self, req: &SdfsRequest) -> Result<(), LimitError> {
        let too_large = |size: u64| LimitError {
            what: "size",
            why: format!(
                "{size} bytes is more than the cluster stores (--sdfs-max-file-bytes {})",
                self.cfg.max_file_bytes
            ),
        };
        match req {
            SdfsRequest::Prepare {
                size,
                sha256,
                replication,
                ..
            } => {
                limits::check_sha256(sha256)?;
                limits::check_replicas(replication.unwrap_or(0) as usize)?;
                if *size > self.cfg.max_file_bytes {
                    return Err(too_large(*size));
                }
            }
            SdfsRequest::Commit { .. } => {
                if let Some(version) = committed_version(req, 0) {
                    limits::check_version(&version)?;
                }
            }
            SdfsRequest::Write {
                size, chunk_size, ..
            } => {
                if let Some(version) = committed_version(req, 0) {
                    limits::check_version(&version)?;
                }
                limits::check_chunk(*chunk_size)?;
                if *size > self.cfg.max_file_bytes {
                    return Err(too_large(*size));
                }
            }
            SdfsRequest::Restore { versions, .. } => {
                if versions.len() > limits::MAX_RESTORE_VERSIONS {
                    return Err(LimitError {
                        what: "versions",
                        why: format!("at most {} per restore", limits::MAX_RESTORE_VERSIONS),
                    });
                }
                versions.iter().try_for_each(limits::check_version)?;
            }
            SdfsRequest::Pin { pin, unpin, .. } => check_pinned(pin.len().max(unpin.len()))?,
            SdfsRequest::ReportCorrupt { blob, node, .. } => {
                limits::check_blob_id(blob)?;
                bus_schemas::validate_token(node).map_err(|e| LimitError {
                    what: "node",
                    why: e.to_string(),
                })?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Most versions one file may have pinned (a model's aliases, previous aliases and rollout).
pub const MAX_PINNED: usize = 64;

fn check_pinned(versions: usize) -> Result<(), LimitError> {
    if versions > MAX_PINNED {
        return Err(LimitError {
            what: "versions",
            why: format!("at most {MAX_PINNED} versions pinned or unpinned at once"),
        });
    }
    Ok(())
}

/// The version a commit request asks to record (numbered by the metadata at commit).
pub(super) fn committed_version(req: &SdfsRequest, created_ms: u64) -> Option<VersionInfo> {
    let (SdfsRequest::Commit {
        blob,
        size,
        sha256,
        replicas,
        replication,
        attrs,
        ..
    }
    | SdfsRequest::Write {
        blob,
        size,
        sha256,
        replicas,
        replication,
        attrs,
        ..
    }) = req
    else {
        return None;
    };
    Some(VersionInfo {
        version: 0,
        blob: blob.clone(),
        size: *size,
        sha256: sha256.clone(),
        replicas: replicas.clone(),
        created_ms,
        replication: *replication,
        attrs: attrs.clone(),
    })
}
