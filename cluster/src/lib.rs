//! Cluster-wide state and plumbing that is no single subsystem's: who coordinates (the
//! [`lease`]), the cluster's [`settings`], how many copies JetStream keeps of every bucket and
//! stream ([`replication`], [`buckets`]), reading and writing KV entries that must be current
//! ([`cas`]) with their typed [`error`], a KV bucket's index owned by one task ([`kv_index`]), the jobs that have not
//! ended as the job index publishes them ([`live_jobs`]), subscriptions for the life of a
//! service ([`subscribe`]) and supervised tasks ([`tasks`]).
//!
//! No libtorch here: SDFS, the dashboard and the node's jobs all build on this crate.

pub mod buckets;
pub mod cas;
pub mod error;
pub mod kv_index;
pub mod lease;
pub mod live_jobs;
pub mod replication;
pub mod routes;
pub mod settings;
pub mod subscribe;
pub mod tasks;

/// How long one request for a job record, a setting or the lease may take.
pub const RECORD_CALL: std::time::Duration = std::time::Duration::from_millis(1500);
