//! The coordinator's loop, run by whichever node holds the lease: give queued jobs to free
//! workers, and give a running job whose worker failed or left to another worker (which
//! resumes from the job's last checkpoint). A training job holds its worker exclusively.
//!
//! A worker that died running a job (declared failed, or seen again with a newer generation:
//! it restarted) is recorded in the attempt; after `--max-worker-deaths` such deaths the job
//! fails with the workers and the last error, instead of walking through the whole cluster
//! (a job that kills its worker would otherwise kill them all). A worker that left on purpose
//! is not counted, nor is one declared failed whose process lived on and rejoined (see
//! [`super::attempts`]). A new attempt prefers workers that have not died running the job.

use super::{takeover, Ctx};
use crate::cluster::lease::now_ms;
use bus_schemas::jobs::{Attempt, JobEventKind, JobRecord, JobSpec, JobState};
use bus_schemas::membership::MemberState;
use idunno_scheduler::assign::pick;
use idunno_scheduler::attempts::{
    dead_workers, died_reason, loss, mark_died, training_workers, Loss,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the coordinator looks at the jobs.
pub const PASS: Duration = Duration::from_millis(300);

/// Runs coordinator passes while this node holds the lease, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PASS) => {}
        }
        if !ctx.coordinator.borrow().me {
            continue;
        }
        if let Err(e) = pass(&ctx).await {
            tracing::debug!("coordinator pass: {e:#}");
        }
    }
}

/// Why a coordinator pass stopped (the next pass tries again).
#[derive(Debug, thiserror::Error)]
enum PassError {
    /// The view or the job index cannot be read now.
    #[error(transparent)]
    NotReady(#[from] super::NotReady),
    /// A job record could not be written.
    #[error(transparent)]
    Record(#[from] crate::cluster::error::KvError),
}

async fn pass(ctx: &Ctx) -> Result<(), PassError> {
    let (view, mut jobs) = ctx.snapshot().await?;
    jobs.sort_by_key(|j| j.submitted_ms);
    let mut busy = training_workers(&jobs, &view);
    let exclusive = jobs
        .iter()
        .filter(|j| !j.state.is_final() && !matches!(j.spec, JobSpec::Serve(_)));
    for job in exclusive {
        if let JobSpec::Train(t) = &job.spec {
            if t.workers > 1 {
                super::groups::pass(ctx, job, t.workers as usize, &view, &mut busy).await?;
                continue;
            }
        }
        let lost = loss(&view, job);
        if job.state != JobState::Queued && lost.is_none() {
            continue;
        }
        let died = match lost {
            Some(Loss::Died(what)) => Some(what),
            Some(Loss::Rejoined(what)) => {
                tracing::info!(job = %job.id, "{what}: moving on, not counted as a death");
                None
            }
            _ => None,
        };
        if let Some(what) = &died {
            let current = job.current().map(|a| a.worker.as_str());
            let dead = dead_workers(job, &view, current);
            if dead.len() >= ctx.max_worker_deaths as usize {
                takeover::fail(ctx, job, what, died_reason(&dead, "", what)).await?;
                continue;
            }
        }
        let avoid: BTreeSet<String> = dead_workers(job, &view, None).into_iter().collect();
        let Some(worker) = pick(&ctx.id, &view, &busy, &avoid, &job.id) else {
            if job.state == JobState::Running {
                takeover::requeue(ctx, job, died).await?;
            }
            continue;
        };
        let process = view
            .iter()
            .filter(|m| m.id == worker && m.state == MemberState::Alive)
            .max_by_key(|m| m.generation)
            .map(|m| (m.generation, m.started_ms));
        if assign(ctx, job, &worker, process, died).await? {
            busy.insert(worker);
        }
    }
    Ok(())
}

async fn assign(
    ctx: &Ctx,
    job: &JobRecord,
    worker: &str,
    process: Option<(u64, Option<u64>)>,
    died: Option<String>,
) -> Result<bool, PassError> {
    let previous = job.current().map(|a| a.worker.clone());
    let expected = (job.state, job.attempts.len());
    let changed = ctx
        .store
        .modify(&job.id, |j| {
            if (j.state, j.attempts.len()) != expected {
                return false;
            }
            mark_died(j, &died);
            j.state = JobState::Running;
            j.attempts.push(Attempt {
                attempt: j.attempts.len() as u32 + 1,
                worker: worker.into(),
                assigned_ms: now_ms(),
                resumed_at_epoch: None,
                generation: process.map(|p| p.0),
                started_ms: process.and_then(|p| p.1),
                died: None,
                group: None,
            });
            true
        })
        .await?;
    let Some(job) = changed else {
        return Ok(false);
    };
    let (event, detail) = if job.attempts.len() > 1 {
        let from = previous.or_else(|| job.attempts.iter().rev().nth(1).map(|a| a.worker.clone()));
        let detail = format!(
            "from {} to {worker}, resuming after epoch {}",
            from.unwrap_or_default(),
            job.checkpoint_epochs
        );
        (JobEventKind::Reassigned, Some(detail))
    } else {
        (JobEventKind::Started, None)
    };
    tracing::info!(job = %job.id, %worker, ?event, "assigned");
    ctx.event(&job.id, event, Some(worker), detail).await;
    Ok(true)
}
