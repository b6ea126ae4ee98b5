//! The worker: follows the job index and runs each job assigned to this node (one attempt at a
//! time per job); stops a run when its job is cancelled, ends or is given to another worker.

use super::ending::{self, Owner};
use super::{Ctx, JobError};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A run in progress: the attempt and its stop token.
struct Running {
    attempt: u32,
    stop: CancellationToken,
}

/// Follows the job index until `shutdown`, running the attempts assigned to this node, then
/// stops the attempts it runs and awaits them.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut attempts = JoinSet::new();
    follow_assignments(&ctx, &mut attempts, &shutdown).await;
    while let Some(ended) = attempts.join_next().await {
        if let Err(e) = ended {
            tracing::error!("an attempt ended badly while stopping: {e}");
        }
    }
}

/// Runs what the job index assigns to this node: an attempt starts when its job's current
/// attempt names this node and stops when the job is reassigned, cancelled or ended (it
/// leaves the index). While the index loads or starts over, nothing is stopped.
async fn follow_assignments(
    ctx: &Arc<Ctx>,
    attempts: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(String, u32)>();
    let mut live = ctx.live.clone();
    loop {
        let jobs = live.borrow_and_update().clone();
        if jobs.loaded {
            let ended: Vec<String> = (running.keys())
                .filter(|id| !jobs.jobs.contains_key(*id))
                .cloned()
                .collect();
            for id in ended {
                tracing::info!(job = %id, "stopping: the job ended");
                if let Some(r) = running.remove(&id) {
                    r.stop.cancel();
                }
            }
            for job in jobs.jobs.values() {
                consider(ctx, &mut running, (&done_tx, attempts), job, shutdown);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = live.changed() => {
                if changed.is_err() {
                    break; // the index is gone: the node is stopping
                }
            }
            Some((id, attempt)) = done_rx.recv() => {
                if running.get(&id).is_some_and(|r| r.attempt == attempt) {
                    running.remove(&id);
                }
            }
            Some(Err(e)) = attempts.join_next(), if !attempts.is_empty() => {
                tracing::error!("an attempt ended badly: {e}");
            }
        }
    }
    for r in running.values() {
        r.stop.cancel();
    }
}

/// Where an attempt says it ended, and the set that owns the attempts.
type Owners<'a> = (
    &'a tokio::sync::mpsc::UnboundedSender<(String, u32)>,
    &'a mut JoinSet<()>,
);

fn consider(
    ctx: &Arc<Ctx>,
    running: &mut HashMap<String, Running>,
    (done, attempts): Owners<'_>,
    job: &JobRecord,
    shutdown: &CancellationToken,
) {
    if matches!(job.spec, JobSpec::Serve(_)) {
        return; // served through the dispatcher's batches, not run here
    }
    let mine = job
        .current()
        .filter(|a| a.runs_on(&ctx.id))
        .map(|a| a.attempt);
    if let Some(r) = running.get(&job.id) {
        if mine == Some(r.attempt) {
            return;
        }
        match job.state {
            JobState::Succeeded | JobState::Failed => tracing::debug!(job = %job.id, "ended"),
            JobState::Cancelled => tracing::info!(job = %job.id, "stopping: cancelled"),
            _ => tracing::info!(job = %job.id, "stopping: the job was reassigned"),
        }
        r.stop.cancel();
        running.remove(&job.id);
    }
    let Some(attempt) = mine else {
        return;
    };
    let stop = shutdown.child_token();
    running.insert(
        job.id.clone(),
        Running {
            attempt,
            stop: stop.clone(),
        },
    );
    let (ctx, done, job) = (ctx.clone(), done.clone(), job.clone());
    attempts.spawn(async move {
        let id = job.id.clone();
        tracing::info!(job = %id, attempt, "running");
        let result = run_attempt(&ctx, job, attempt, &stop).await;
        match result {
            Ok(()) => {}
            Err(_) if stop.is_cancelled() => {}
            Err(JobError::Stopped) => {}
            // A member of a data-parallel group leaves it; its rank 0 fails the job.
            Err(e) if super::dp::leave(&ctx, &id, attempt, &e).await => {
                tracing::warn!(job = %id, attempt, "left the training group: {e}");
            }
            Err(e) => ending::fail(&ctx, &id, Owner::Attempt(attempt), e.to_string()).await,
        }
        let _ = done.send((id, attempt));
    });
}

/// How long a worker keeps trying an attempt again after transient failures
/// ([`JobError::is_transient`]) before it fails the job, and the longest wait between tries.
const RETRY_FOR: Duration = Duration::from_secs(120);
const RETRY_WAIT_MAX: Duration = Duration::from_secs(15);

/// When to try a failed attempt again: waits that double from one second up to
/// [`RETRY_WAIT_MAX`], while the time spent stays within [`RETRY_FOR`].
#[derive(Debug)]
struct Retry {
    wait: Duration,
    spent: Duration,
}

impl Retry {
    fn new() -> Self {
        Self {
            wait: Duration::from_secs(1),
            spent: Duration::ZERO,
        }
    }

    /// The wait before the next try, after a try that took `took`; `None` once the budget is
    /// spent.
    fn next(&mut self, took: Duration) -> Option<Duration> {
        self.spent += took;
        if self.spent + self.wait > RETRY_FOR {
            return None;
        }
        let wait = self.wait;
        self.spent += wait;
        self.wait = (self.wait * 2).min(RETRY_WAIT_MAX);
        Some(wait)
    }
}

/// Whether `job`'s current attempt is a data-parallel group's.
fn data_parallel(job: &JobRecord) -> bool {
    job.current().is_some_and(|a| a.group.is_some())
}

/// Runs attempt `attempt` of `job`, trying it again from the latest record (so from its
/// latest checkpoint) while it fails transiently and still belongs to this node.
async fn run_attempt(
    ctx: &Arc<Ctx>,
    mut job: JobRecord,
    attempt: u32,
    stop: &CancellationToken,
) -> Result<(), JobError> {
    let mut retry = Retry::new();
    loop {
        let began = tokio::time::Instant::now();
        let result = match &job.spec {
            JobSpec::Train(_) if data_parallel(&job) => {
                super::dp::run(ctx, &job, attempt, stop.clone()).await
            }
            JobSpec::Train(_) => super::train_run::run(ctx, &job, attempt, stop.clone()).await,
            JobSpec::Import(_) => super::import_run::run(ctx, &job, attempt, stop.clone()).await,
            JobSpec::Serve(_) => Ok(()),
        };
        let e = match result {
            Err(e) if e.is_transient() && !stop.is_cancelled() => e,
            other => return other,
        };
        let Some(wait) = retry.next(began.elapsed()) else {
            return Err(e);
        };
        tracing::warn!(job = %job.id, attempt, "trying again in {wait:?}: {e}");
        tokio::select! {
            _ = stop.cancelled() => return Err(JobError::Stopped),
            _ = tokio::time::sleep(wait) => {}
        }
        // The record as it is now: a later checkpoint, or the job no longer this node's.
        match ctx.store.get(&job.id).await {
            Ok(Some((fresh, _))) => {
                let mine = fresh
                    .current()
                    .is_some_and(|a| a.runs_on(&ctx.id) && a.attempt == attempt);
                if !mine || fresh.state.is_final() {
                    return Err(JobError::Stopped);
                }
                job = fresh;
            }
            Ok(None) => return Err(JobError::Stopped),
            Err(e) => tracing::debug!(job = %job.id, "cannot read the record again: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_client::sdfs::SdfsError;

    #[test]
    fn retries_double_up_to_the_cap_and_stop_when_the_budget_is_spent() {
        let mut retry = Retry::new();
        let mut waits = Vec::new();
        while let Some(wait) = retry.next(Duration::from_secs(2)) {
            waits.push(wait.as_secs());
        }
        assert_eq!(waits[..6], [1, 2, 4, 8, 15, 15]);
        let spent: u64 = waits.iter().sum::<u64>() + 2 * (waits.len() as u64 + 1);
        assert!(spent <= RETRY_FOR.as_secs() + 2, "{waits:?}");
        assert!(
            spent + 15 + 2 > RETRY_FOR.as_secs(),
            "{waits:?}: stopped early"
        );
    }

    #[test]
    fn a_long_try_spends_the_budget_at_once() {
        let mut retry = Retry::new();
        assert_eq!(retry.next(RETRY_FOR), None);
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        assert!(JobError::storage("a file", "503").is_transient());
        assert!(JobError::Timeout("slow".into()).is_transient());
        assert!(
            !JobError::from_sdfs("a file", SdfsError::Corrupt("every replica corrupt".into()))
                .is_transient()
        );
        assert!(!JobError::BadInput("shape".into()).is_transient());
        assert!(!JobError::NotFound("gone".into()).is_transient());
        assert!(!JobError::Internal("bug".into()).is_transient());
    }
}
