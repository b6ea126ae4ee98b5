//! SDFS: the replicated, versioned file store.
//!
//! [`placement`] chooses replicas by rendezvous hashing; [`keys`] maps names to metadata keys;
//! [`meta`] keeps each file's versions in a JetStream KV bucket; [`blobs`] keeps the bytes on
//! this node; [`service`] answers clients and peers on the bus.

pub mod blobs;
pub mod keeper;
pub mod keys;
pub mod meta;
pub mod placement;
pub mod service;

pub use service::{Sdfs, SdfsConfig};
