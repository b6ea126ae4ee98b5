//! What the coordinator writes when a training or import job's workers are gone: the job waits
//! in the queue for a free worker, or fails after too many deaths. Each change is made only
//! while the job's attempt is the one the coordinator looked at.

use super::Ctx;
use crate::cluster::error::KvError;
use crate::cluster::lease::now_ms;
use bus_schemas::jobs::{JobEventKind, JobRecord, JobState};
use idunno_scheduler::attempts::mark_died;

/// A running job whose worker is gone and no other worker is free waits in the queue.
pub(super) async fn requeue(
    ctx: &Ctx,
    job: &JobRecord,
    died: Option<String>,
) -> Result<(), KvError> {
    let attempts = job.attempts.len();
    ctx.store
        .modify(&job.id, |j| {
            let same = j.state == JobState::Running && j.attempts.len() == attempts;
            if same {
                mark_died(j, &died);
                j.state = JobState::Queued;
            }
            same
        })
        .await?;
    Ok(())
}

/// Fails a running job whose workers died too often (only while its attempt is unchanged).
pub(super) async fn fail(
    ctx: &Ctx,
    job: &JobRecord,
    what: &str,
    reason: String,
) -> Result<(), KvError> {
    let attempts = job.attempts.len();
    let died = Some(what.to_string());
    let failed = ctx
        .store
        .modify(&job.id, |j| {
            let same = j.state == JobState::Running && j.attempts.len() == attempts;
            if same {
                mark_died(j, &died);
                j.state = JobState::Failed;
                j.error = Some(reason.clone());
                j.finished_ms = Some(now_ms());
            }
            same
        })
        .await?;
    if let Some(job) = failed {
        tracing::warn!(job = %job.id, "failed: {reason}");
        let worker = job.attempts.last().map(|a| a.worker.as_str());
        ctx.event(&job.id, JobEventKind::Failed, worker, Some(reason))
            .await;
    }
    Ok(())
}
