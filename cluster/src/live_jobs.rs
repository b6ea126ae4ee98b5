//! The jobs that have not ended, as the job index (in the node's `jobs`) publishes them after
//! every change of the job bucket: the coordinator, the dispatcher, the worker and the
//! dashboard read them from memory instead of listing the bucket.

use bus_schemas::jobs::JobRecord;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Ended jobs published with the live ones (for the dashboard).
pub const RECENT: usize = 20;

/// The jobs that have not ended, as the index holds them.
#[derive(Debug, Default)]
pub struct Live {
    /// Every job not ended, by id.
    pub jobs: BTreeMap<String, JobRecord>,
    /// The jobs that ended last, newest first (at most [`RECENT`]).
    pub recent: Vec<JobRecord>,
    /// How many ended jobs the bucket keeps.
    pub ended: usize,
    /// Whether the index holds every record (false while it loads or starts over).
    pub loaded: bool,
}

/// A reader of the live jobs.
pub type LiveJobs = watch::Receiver<Arc<Live>>;

/// The live jobs' channel: empty and not loaded until an index runs on it.
pub fn channel() -> (watch::Sender<Arc<Live>>, LiveJobs) {
    watch::channel(Arc::new(Live::default()))
}
