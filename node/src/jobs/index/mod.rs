//! The job index: one task follows the `idunno-jobs` bucket (a KV watch feeding a book it
//! owns, as the SDFS keeper follows the metadata). It publishes the jobs that have not ended
//! (the coordinator, the dispatcher and the worker read them from memory at every pass) and
//! answers pages of every job kept (the jobs API): no request reads every record ever written,
//! so costs follow the running jobs and the page asked, not the cluster's history.
//!
//! The book is kept by [`crate::kv_index`]: a page is answered once the book holds every
//! revision the bucket had when the page was asked, so a job is listed as soon as its
//! submission is answered. While the index loads or starts over, the live jobs say they are not
//! loaded (readers skip their pass).

mod book;

use crate::jobs::store::JobStore;
use crate::kv_index::{self, Applied};
use async_nats::jetstream::kv::{Entry, Operation};
use book::Book;
use bus_schemas::jobs::{JobRecord, JobsFilter};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use book::BadCursor;
pub use idunno_cluster::live_jobs::{channel, Live, LiveJobs, RECENT};

/// A purged job's marker is removed from the bucket after this long (every watch has seen
/// it by then; one that starts over later does not need it).
pub const MARKER_AGE: Duration = Duration::from_secs(60);
/// A key the retention writes after removing markers, so that the bucket's last revision is
/// always a value the watch delivers (a fresh page waits for the last revision).
pub const TICK_KEY: &str = "_retention";

/// A page of jobs.
#[derive(Debug)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// What the retention may remove: the oldest ended jobs beyond those kept (with the revision
/// each was read at) and the markers of jobs purged a while ago.
#[derive(Debug, Default)]
pub struct Trim {
    /// Jobs to remove, oldest first.
    pub jobs: Vec<(String, u64)>,
    /// Keys whose purge markers can go.
    pub markers: Vec<String>,
}

/// Why the index could not answer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The cursor is not one of a page.
    #[error(transparent)]
    BadCursor(#[from] BadCursor),
    /// The index is loading, behind the bucket, busy or stopped: a later try may succeed.
    #[error(transparent)]
    NotReady(#[from] kv_index::IndexError),
}

/// The book and where its live jobs are published.
pub struct JobBook {
    book: Book,
    live: watch::Sender<Arc<Live>>,
}

impl kv_index::Book for JobBook {
    fn take(&mut self, entry: Entry) -> Applied {
        if entry.operation != Operation::Put {
            let at_ms = (entry.created.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
            return self.book.gone(&entry.key, at_ms);
        }
        let record = bus_schemas::decode::<JobRecord>(&entry.value).map_err(|e| e.to_string());
        self.book.put(&entry.key, record, entry.revision)
    }

    fn settled(&mut self) {
        self.live.send_replace(Arc::new(Live {
            jobs: self.book.live(),
            recent: self.book.recent(RECENT),
            ended: self.book.ended(),
            loaded: true,
        }));
    }

    fn tidy(&mut self) {
        self.book.forget_markers(cutoff(MARKER_AGE * 2));
    }

    fn reset(&mut self) {
        self.live.send_replace(Arc::new(Live::default()));
    }
}

/// The index's handle: pages of jobs and retention candidates, from the task that owns it.
#[derive(Clone)]
pub struct Index(kv_index::Handle<JobBook>);

/// What [`run`] takes.
pub struct Runner {
    runner: kv_index::Runner<JobBook>,
    live: watch::Sender<Arc<Live>>,
}

/// A new index over `store` publishing to `live`: its handle and what runs it.
pub fn new(store: &JobStore, live: watch::Sender<Arc<Live>>) -> (Index, Runner) {
    let (handle, runner) = kv_index::new(store.kv().clone(), "the job bucket");
    (Index(handle), Runner { runner, live })
}

impl Index {
    /// At most `limit` jobs of `which` after the cursor `after`, as of now or later.
    pub async fn page(
        &self,
        which: JobsFilter,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page, IndexError> {
        let read = move |b: &mut JobBook| b.book.page(which, limit, after.as_deref());
        let (jobs, next) = self.0.fresh(read).await??;
        Ok(Page { jobs, next })
    }

    /// What the retention may remove to keep `keep` ended jobs, at most `most` jobs.
    pub async fn trim(&self, keep: usize, most: usize) -> Result<Trim, IndexError> {
        let read = move |b: &mut JobBook| Trim {
            jobs: b.book.beyond(keep, most),
            markers: b.book.old_markers(cutoff(MARKER_AGE), most),
        };
        Ok(self.0.now(read).await?)
    }

    /// Says that these keys' markers were removed from the bucket.
    pub async fn removed(&self, keys: Vec<String>) {
        let _ = self.0.now(move |b| b.book.forget_keys(&keys)).await;
    }
}

/// Milliseconds since the epoch, `age` ago.
fn cutoff(age: Duration) -> u64 {
    crate::cluster::lease::now_ms().saturating_sub(age.as_millis() as u64)
}

/// Follows the bucket until `shutdown`, publishing the live jobs after every change and
/// answering pages; a corrupt record is counted as garbage.
pub async fn run(
    runner: Runner,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let Runner { runner, live } = runner;
    let make = move || JobBook {
        book: Book::default(),
        live: live.clone(),
    };
    kv_index::run(runner, make, move || metrics.garbage(), shutdown).await
}
