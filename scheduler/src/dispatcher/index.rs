//! What the dispatcher keeps of each job's record: the few fields it decides on, not the
//! record (whose statistics and per-worker counts grow with the cluster).

use crate::batches::Batch;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, ServeSpec};

/// A job as the dispatcher knows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JobView {
    pub(super) id: String,
    pub(super) state: JobState,
    /// An inference job's spec.
    pub(super) spec: Option<ServeSpec>,
    /// An inference job's progress.
    pub(super) serve: Option<ServeView>,
    /// The worker a training or import job's current attempt holds.
    pub(super) holds: Option<String>,
}

/// What the dispatcher reads of an inference job's progress.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ServeView {
    pub(super) model_version: u64,
    pub(super) batch: u32,
    pub(super) next_query: u64,
    pub(super) total: Option<u64>,
    pub(super) done: u64,
    pub(super) pending: Vec<Batch>,
    /// Pending batches with a worker death recorded.
    pub(super) deaths: Vec<u64>,
    /// A digest of the workers the record names ([`digest`]): compared, never read.
    pub(super) workers: u64,
}

/// A digest of a list of workers.
pub(super) fn digest<'a>(workers: impl IntoIterator<Item = &'a String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for w in workers {
        w.hash(&mut h);
    }
    h.finish()
}

impl JobView {
    pub(super) fn of(r: &JobRecord) -> JobView {
        let spec = match &r.spec {
            JobSpec::Serve(spec) => Some(spec.clone()),
            _ => None,
        };
        let serve = r
            .serve
            .as_ref()
            .filter(|_| spec.is_some())
            .map(|s| ServeView {
                model_version: s.model_version,
                batch: s.batch,
                next_query: s.next_query,
                total: s.total,
                done: s.done,
                pending: s.pending.clone(),
                deaths: s.deaths.iter().map(|d| d.batch_id).collect(),
                workers: digest(&s.workers),
            });
        JobView {
            id: r.id.clone(),
            state: r.state,
            serve,
            holds: r.current().map(|a| a.worker.clone()),
            spec,
        }
    }
}

impl ServeView {
    /// Every query answered and counted.
    pub(super) fn complete(&self) -> bool {
        self.total.is_some_and(|t| self.done >= t) && self.pending.is_empty()
    }

    /// Every query cut into a batch.
    pub(super) fn exhausted(&self) -> bool {
        self.total.is_some_and(|t| self.next_query >= t)
    }
}
