//! The job index: one task follows the `idunno-jobs` bucket (a KV watch feeding an index it
//! owns, as the SDFS keeper follows the metadata) and publishes the jobs that have not ended.
//! The coordinator and the dispatcher read it from memory at every pass instead of reading
//! every record ever written: their cost follows the running jobs, not the cluster's history.
//!
//! The watch is opened before the records are loaded, so no change between the two is missed;
//! a change older than what the index holds (by its revision) is ignored. If the bucket cannot
//! be read or the watch ends, the index says it is not loaded (readers skip their pass) and
//! starts over after a pause.

use super::store::JobStore;
use async_nats::jetstream::kv::{Entry, Operation};
use bus_schemas::jobs::JobRecord;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Pause before the index starts over after the bucket failed it.
const RETRY: Duration = Duration::from_secs(1);

/// The jobs that have not ended, as the index holds them.
#[derive(Debug, Default)]
pub struct Live {
    /// Every job not ended, by id.
    pub jobs: BTreeMap<String, JobRecord>,
    /// Whether the index holds every record (false while it loads or starts over).
    pub loaded: bool,
}

/// A reader of the index.
pub type LiveJobs = watch::Receiver<Arc<Live>>;

/// A new index, empty and not loaded, and its readers' end.
pub fn channel() -> (watch::Sender<Arc<Live>>, LiveJobs) {
    watch::channel(Arc::new(Live::default()))
}

/// Follows the bucket until `shutdown`, publishing the live jobs after every change; a corrupt
/// record is counted as garbage.
pub async fn run(
    store: JobStore,
    tx: watch::Sender<Arc<Live>>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = follow(&store, &tx, &metrics, &shutdown).await {
            tracing::warn!("job index: {e:#}; starting over");
        }
        tx.send_replace(Arc::new(Live::default()));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// What a change from the watch did.
enum Applied {
    /// The live jobs changed.
    Changed,
    /// Nothing changed (an older revision, an ended job's news).
    Same,
    /// The record could not be read (counted as garbage).
    Corrupt,
}

/// What the task keeps: the live records, and the revision of every key it has seen.
#[derive(Default)]
struct Index {
    live: BTreeMap<String, JobRecord>,
    revisions: HashMap<String, u64>,
}

impl Index {
    /// Takes a record at `revision`; whether the live jobs changed.
    fn put(&mut self, job: JobRecord, revision: u64) -> bool {
        if !self.newer(&job.id, revision) {
            return false;
        }
        if job.state.is_final() {
            return self.live.remove(&job.id).is_some();
        }
        self.live.insert(job.id.clone(), job);
        true
    }

    /// Whether `revision` is newer than what the index holds of `key` (and takes it if so).
    fn newer(&mut self, key: &str, revision: u64) -> bool {
        let seen = self.revisions.entry(key.to_string()).or_default();
        let newer = revision > *seen;
        *seen = (*seen).max(revision);
        newer
    }

    /// Takes a change from the watch.
    fn apply(&mut self, entry: Entry) -> Applied {
        let changed = |yes: bool| if yes { Applied::Changed } else { Applied::Same };
        if entry.operation != Operation::Put {
            let newer = self.newer(&entry.key, entry.revision);
            return changed(newer && self.live.remove(&entry.key).is_some());
        }
        match bus_schemas::decode::<JobRecord>(&entry.value) {
            Ok(job) if job.id == entry.key => changed(self.put(job, entry.revision)),
            Ok(job) => {
                tracing::warn!(key = %entry.key, id = %job.id, "a job record under another job's key, ignored");
                Applied::Corrupt
            }
            Err(e) => {
                tracing::warn!(key = %entry.key, "corrupt job record, ignored: {e}");
                Applied::Corrupt
            }
        }
    }

    fn publish(&self, tx: &watch::Sender<Arc<Live>>) {
        let live = Live {
            jobs: self.live.clone(),
            loaded: true,
        };
        tx.send_replace(Arc::new(live));
    }
}

/// Loads the records, then follows the watch until it ends.
async fn follow(
    store: &JobStore,
    tx: &watch::Sender<Arc<Live>>,
    metrics: &crate::metrics::Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut watch = store.kv().watch_all().await?;
    let mut index = Index::default();
    for (job, revision) in store.list_with_revisions().await? {
        index.put(job, revision);
    }
    index.publish(tx);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            entry = watch.next() => match entry {
                Some(Ok(entry)) => match index.apply(entry) {
                    Applied::Changed => index.publish(tx),
                    Applied::Same => {}
                    Applied::Corrupt => metrics.garbage(),
                },
                Some(Err(e)) => anyhow::bail!("the watch failed: {e}"),
                None => anyhow::bail!("the watch ended"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_schemas::jobs::{JobSpec, JobState, ServeSpec};

    fn job(id: &str, state: JobState) -> JobRecord {
        let spec = JobSpec::Serve(ServeSpec {
            model: "m".into(),
            model_version: None,
            dataset: "d".into(),
            split: "test".into(),
            batch: 16,
            passes: None,
            weight: 1,
        });
        JobRecord {
            state,
            ..JobRecord::queued(id.into(), spec, 0, None)
        }
    }

    #[test]
    fn the_index_keeps_the_newest_record_of_each_live_job_and_drops_ended_ones() {
        let mut index = Index::default();
        assert!(index.put(job("a", JobState::Running), 5));
        assert!(
            !index.put(job("a", JobState::Queued), 4),
            "an older revision is ignored"
        );
        assert_eq!(index.live["a"].state, JobState::Running);
        assert!(index.put(job("b", JobState::Queued), 6));
        assert!(
            index.put(job("a", JobState::Succeeded), 7),
            "an ended job leaves"
        );
        assert!(!index.live.contains_key("a"));
        assert!(
            !index.put(job("a", JobState::Running), 6),
            "and older news does not bring it back"
        );
        assert_eq!(index.live.keys().collect::<Vec<_>>(), ["b"]);
    }
}
