//! SDFS: the replicated, versioned file store.
//!
//! [`placement`] chooses replicas by rendezvous hashing; [`keys`] maps names to metadata keys;
//! [`meta`] keeps each file's versions in a JetStream KV bucket; [`blobs`] keeps the bytes on
//! this node; [`service`] answers clients and peers on the bus; [`keeper`] re-replicates,
//! collects garbage and reconciles. Rust code reads and writes SDFS files with
//! [`SdfsClient`] (put, get, ls, delete over any NATS connection).

pub mod blobs;
pub mod keeper;
pub mod keys;
pub mod meta;
pub mod placement;
pub mod service;

pub use bus_client::sdfs::{SdfsClient, SdfsError};
pub use service::{Sdfs, SdfsConfig};
