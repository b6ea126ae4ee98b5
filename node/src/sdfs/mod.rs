//! SDFS: the replicated, versioned file store.
//!
//! [`placement`] chooses replicas by rendezvous hashing; [`keys`] maps names to metadata keys;
//! [`meta`] keeps each file's versions in a JetStream KV bucket; [`blobs`] keeps the bytes on
//! this node; [`service`] answers clients and peers on the bus; [`keeper`] re-replicates,
//! collects garbage and reconciles. Rust code reads and writes SDFS files with
//! [`SdfsClient`] (put, get, ls, delete over any NATS connection).

pub mod blobs;
mod collect;
pub mod keeper;
pub mod keys;
pub mod labels;
pub mod meta;
mod peer;
pub mod placement;
mod request;
pub mod restore;
pub mod service;
pub mod trust;
mod write;

pub use bus_client::sdfs::{SdfsClient, SdfsError};
pub use service::{Sdfs, SdfsConfig};

/// Wall-clock milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
