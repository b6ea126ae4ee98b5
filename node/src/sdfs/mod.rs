//! SDFS: the replicated, versioned file store (in progress).
//!
//! [`placement`] chooses replicas by rendezvous hashing; [`keys`] maps names to metadata keys.

pub mod blobs;
pub mod keys;
pub mod placement;
