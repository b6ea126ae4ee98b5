//! The coordinator's loop, run by whichever node holds the lease: give queued jobs to free
//! workers, and give a running job whose worker failed or left to another worker (which
//! resumes from the job's last checkpoint). A training job holds its worker exclusively.

use super::{lease::now_ms, Ctx};
use bus_schemas::jobs::{Attempt, JobEventKind, JobRecord, JobSpec, JobState};
use bus_schemas::membership::{MemberRecord, MemberState};
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

/// Workers held by a training or import job (they serve no inference meanwhile).
pub fn training_workers(jobs: &[JobRecord], view: &[MemberRecord]) -> BTreeSet<String> {
    jobs.iter()
        .filter_map(JobRecord::current)
        .filter(|a| usable(view, &a.worker))
        .map(|a| a.worker.clone())
        .collect()
}

/// Whether `worker` can be relied on: alive (or only suspected) in the view.
fn usable(view: &[MemberRecord], worker: &str) -> bool {
    view.iter()
        .any(|m| m.id == worker && matches!(m.state, MemberState::Alive | MemberState::Suspect))
}

/// Whether `worker` is certainly gone: failed or left in the view.
fn gone(view: &[MemberRecord], worker: &str) -> bool {
    view.iter()
        .filter(|m| m.id == worker)
        .all(|m| matches!(m.state, MemberState::Failed | MemberState::Left))
        && view.iter().any(|m| m.id == worker)
}

async fn pass(ctx: &Ctx) -> anyhow::Result<()> {
    let (view, mut jobs) = ctx.snapshot().await?;
    jobs.sort_by_key(|j| j.submitted_ms);
    let mut busy = training_workers(&jobs, &view);
    let exclusive = jobs
        .iter()
        .filter(|j| !j.state.is_final() && !matches!(j.spec, JobSpec::Serve(_)));
    for job in exclusive {
        let stranded = job.current().is_some_and(|a| gone(&view, &a.worker));
        if job.state == JobState::Queued || stranded {
            let Some(worker) = pick(ctx, &view, &busy, &job.id) else {
                if stranded {
                    requeue(ctx, job).await?;
                }
                continue;
            };
            if assign(ctx, job, &worker).await? {
                busy.insert(worker);
            }
        }
    }
    Ok(())
}

/// A free alive worker for `job_id`: not the coordinator if another is free, then spread by a
/// hash of the job id.
fn pick(ctx: &Ctx, view: &[MemberRecord], busy: &BTreeSet<String>, job_id: &str) -> Option<String> {
    let free: Vec<&MemberRecord> = view
        .iter()
        .filter(|m| m.state == MemberState::Alive && !busy.contains(&m.id))
        .collect();
    let others: Vec<&MemberRecord> = free.iter().copied().filter(|m| m.id != ctx.id).collect();
    let pool = if others.is_empty() { free } else { others };
    pool.into_iter()
        .max_by_key(|m| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (job_id, &m.id).hash(&mut h);
            h.finish()
        })
        .map(|m| m.id.clone())
}

async fn assign(ctx: &Ctx, job: &JobRecord, worker: &str) -> anyhow::Result<bool> {
    let previous = job.current().map(|a| a.worker.clone());
    let expected = (job.state, job.attempts.len());
    let changed = ctx
        .store
        .modify(&job.id, |j| {
            if (j.state, j.attempts.len()) != expected {
                return false;
            }
            j.state = JobState::Running;
            j.attempts.push(Attempt {
                attempt: j.attempts.len() as u32 + 1,
                worker: worker.into(),
                assigned_ms: now_ms(),
                resumed_at_epoch: None,
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

/// A running job whose worker is gone and no other worker is free waits in the queue.
async fn requeue(ctx: &Ctx, job: &JobRecord) -> anyhow::Result<()> {
    let attempts = job.attempts.len();
    ctx.store
        .modify(&job.id, |j| {
            let same = j.state == JobState::Running && j.attempts.len() == attempts;
            if same {
                j.state = JobState::Queued;
            }
            same
        })
        .await?;
    Ok(())
}
