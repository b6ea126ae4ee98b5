//! How a job ends: one path for every kind. A worker ends the attempt it runs (only while that
//! attempt is current); the coordinator ends the inference jobs it owns (only while they have
//! not ended). Either way the record changes by compare-and-swap and the event follows.

use super::{Ctx, JobError};
use crate::cluster::lease::now_ms;
use bus_schemas::jobs::{JobEventKind, JobOutcome, JobRecord, JobState};

/// Who ends the job.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// This node's worker, running attempt `.0`.
    Attempt(u32),
    /// The coordinator (inference jobs have no attempts).
    Coordinator,
}

impl Owner {
    /// Whether `job` is still this owner's to change.
    fn holds(self, ctx: &Ctx, job: &JobRecord) -> bool {
        match self {
            Owner::Attempt(attempt) => job
                .current()
                .is_some_and(|a| a.attempt == attempt && a.worker == ctx.id),
            Owner::Coordinator => !job.state.is_final(),
        }
    }

    fn worker(self, ctx: &Ctx) -> Option<&str> {
        matches!(self, Owner::Attempt(_)).then_some(ctx.id.as_str())
    }
}

/// Applies `change` to job `id` only while `owner` holds it; otherwise the run must stop
/// ([`JobError::Stopped`]).
pub async fn update<F>(
    ctx: &Ctx,
    id: &str,
    owner: Owner,
    mut change: F,
) -> Result<JobRecord, JobError>
where
    F: FnMut(&mut JobRecord),
{
    let changed = ctx
        .store
        .modify(id, |j| {
            let holds = owner.holds(ctx, j);
            if holds {
                change(j);
            }
            holds
        })
        .await
        .map_err(|e| JobError::storage(format!("the record of job {id}"), e))?;
    changed.ok_or(JobError::Stopped)
}

/// Records that job `id` succeeded with `outcome` and announces it; `measured` names the split
/// its accuracy was measured on.
pub async fn succeed(
    ctx: &Ctx,
    id: &str,
    owner: Owner,
    outcome: JobOutcome,
    measured: &str,
) -> Result<(), JobError> {
    let accuracy = outcome.test_accuracy.map_or(String::new(), |a| {
        format!(", {measured} accuracy {:.2}%", a * 100.0)
    });
    let detail = format!(
        "{} v{}{accuracy}",
        outcome.model_file, outcome.model_version
    );
    update(ctx, id, owner, |j| {
        j.state = JobState::Succeeded;
        j.finished_ms = Some(now_ms());
        j.outcome = Some(outcome.clone());
    })
    .await?;
    ctx.event(id, JobEventKind::Finished, owner.worker(ctx), Some(detail))
        .await;
    Ok(())
}

/// Records that job `id` failed with `reason`, if `owner` still holds it, and announces it.
pub async fn fail(ctx: &Ctx, id: &str, owner: Owner, reason: String) {
    tracing::warn!(job = %id, "failed: {reason}");
    let failed = update(ctx, id, owner, |j| {
        j.state = JobState::Failed;
        j.error = Some(reason.clone());
        j.finished_ms = Some(now_ms());
    })
    .await;
    if failed.is_ok() {
        ctx.event(id, JobEventKind::Failed, owner.worker(ctx), Some(reason))
            .await;
    }
}
