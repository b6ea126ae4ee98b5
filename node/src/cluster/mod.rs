//! Cluster-wide state that is no single subsystem's: who coordinates (the lease), the
//! cluster's settings, and how many copies JetStream keeps of every bucket and stream.

pub mod buckets;
pub mod lease;
pub mod replication;
pub mod settings;

/// How long one request for a job record, a setting or the lease may take.
pub const RECORD_CALL: std::time::Duration = std::time::Duration::from_millis(1500);
