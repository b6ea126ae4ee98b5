//! SDFS: the replicated, versioned file store.
//!
//! [`placement`] chooses replicas by rendezvous hashing; [`keys`] maps names to metadata keys;
//! [`meta`] keeps each file's versions in a JetStream KV bucket; [`blobs`] keeps the bytes on
//! this node; [`service`] answers clients and peers on the bus; [`keeper`] re-replicates,
//! collects garbage and reconciles. Rust code reads and writes SDFS files with
//! [`SdfsClient`] (put, get, ls, delete over any NATS connection).

pub mod blobs;
pub mod error;
pub mod keeper;
pub mod keys;
pub mod labels;
pub mod listing;
pub mod meta;
pub mod placement;
pub mod restore;
pub mod service;
pub mod trust;

pub use bus_client::sdfs::{SdfsClient, SdfsError};
pub use error::SdfsNodeError;
pub use service::Sdfs;
use std::time::Duration;

/// SDFS settings.
#[derive(Debug, Clone)]
pub struct SdfsConfig {
    /// Target replicas per version.
    pub replication: usize,
    /// Replicas that must store a version before a put succeeds.
    pub write_quorum: usize,
    /// Versions kept per file.
    pub keep_versions: usize,
    /// Bound on each chunk request.
    pub chunk_timeout: Duration,
    /// The largest version this node stores, in bytes.
    pub max_file_bytes: u64,
    /// Replica stores run at once; more are refused as `overloaded`.
    pub store_slots: usize,
}

/// The default of `--sdfs-max-file-bytes`: 64 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 30;

impl Default for SdfsConfig {
    fn default() -> Self {
        Self {
            replication: 4,
            write_quorum: 3,
            keep_versions: 5,
            chunk_timeout: Duration::from_secs(10),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            store_slots: 4,
        }
    }
}

/// Wall-clock milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
