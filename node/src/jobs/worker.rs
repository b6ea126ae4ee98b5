//! The worker: watches the job records and runs each job assigned to this node (one attempt at
//! a time per job); stops a run when its job is cancelled or given to another worker.

use super::{lease::now_ms, Ctx, JobError};
use bus_schemas::decode;
use bus_schemas::jobs::{JobEventKind, JobOutcome, JobRecord, JobSpec, JobState};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A run in progress: the attempt and its stop token.
struct Running {
    attempt: u32,
    stop: CancellationToken,
}

/// Watches assignments until `shutdown`. A full scan every few seconds backs up the watch.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(String, u32)>();
    loop {
        let mut watch = match ctx.store.kv().watch_all().await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!("cannot watch the job records: {e}");
                None
            }
        };
        if let Ok(jobs) = ctx.store.list().await {
            for job in jobs {
                consider(&ctx, &mut running, &done_tx, job, &shutdown);
            }
        }
        let rescan = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(rescan);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    for r in running.values() {
                        r.stop.cancel();
                    }
                    return;
                }
                _ = &mut rescan => break,
                Some((id, attempt)) = done_rx.recv() => {
                    if running.get(&id).is_some_and(|r| r.attempt == attempt) {
                        running.remove(&id);
                    }
                }
                entry = async { watch.as_mut()?.next().await }, if watch.is_some() => {
                    match entry {
                        Some(Ok(entry)) => match decode::<JobRecord>(&entry.value) {
                            Ok(job) => consider(&ctx, &mut running, &done_tx, job, &shutdown),
                            Err(e) if !entry.value.is_empty() => {
                                ctx.metrics.garbage();
                                tracing::warn!(key = %entry.key, "corrupt job record: {e}");
                            }
                            Err(_) => {}
                        },
                        _ => break,
                    }
                }
            }
        }
    }
}

fn consider(
    ctx: &Arc<Ctx>,
    running: &mut HashMap<String, Running>,
    done: &tokio::sync::mpsc::UnboundedSender<(String, u32)>,
    job: JobRecord,
    shutdown: &CancellationToken,
) {
    if matches!(job.spec, JobSpec::Serve(_)) {
        return; // served through the dispatcher's batches, not run here
    }
    let mine = job
        .current()
        .filter(|a| a.worker == ctx.id)
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
    let (ctx, done) = (ctx.clone(), done.clone());
    tokio::spawn(async move {
        let id = job.id.clone();
        tracing::info!(job = %id, attempt, "running");
        let result = match &job.spec {
            JobSpec::Train(_) => super::train_run::run(&ctx, &job, attempt, stop.clone()).await,
            JobSpec::Import(_) => super::import_run::run(&ctx, &job, attempt, stop.clone()).await,
            JobSpec::Serve(_) => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(_) if stop.is_cancelled() => {}
            Err(JobError::Stopped) => {}
            Err(e) => fail(&ctx, &id, attempt, e).await,
        }
        let _ = done.send((id, attempt));
    });
}

/// Records that attempt `attempt` of job `id` failed with `e`, if it is still current.
async fn fail(ctx: &Ctx, id: &str, attempt: u32, e: JobError) {
    let message = e.to_string();
    tracing::warn!(job = %id, "failed: {message}");
    let failed = update(ctx, id, attempt, |j| {
        j.state = JobState::Failed;
        j.error = Some(message.clone());
        j.finished_ms = Some(now_ms());
    })
    .await;
    if failed.is_ok() {
        ctx.event(id, JobEventKind::Failed, Some(&ctx.id), Some(message))
            .await;
    }
}

/// Records that attempt `attempt` of `job` succeeded with `outcome`, and announces it;
/// `measured` names the split its accuracy was measured on.
pub async fn succeed(
    ctx: &Ctx,
    job: &str,
    attempt: u32,
    outcome: JobOutcome,
    measured: &str,
) -> Result<(), JobError> {
    let detail = format!(
        "{} v{}{}",
        outcome.model_file,
        outcome.model_version,
        outcome.test_accuracy.map_or(String::new(), |a| format!(
            ", {measured} accuracy {:.2}%",
            a * 100.0
        ))
    );
    update(ctx, job, attempt, |j| {
        j.state = JobState::Succeeded;
        j.finished_ms = Some(now_ms());
        j.outcome = Some(outcome.clone());
    })
    .await?;
    ctx.event(job, JobEventKind::Finished, Some(&ctx.id), Some(detail))
        .await;
    Ok(())
}

/// Records that inference job `job` succeeded with `outcome` (the coordinator owns such jobs,
/// so no attempt is checked), and announces it.
pub async fn succeed_record(
    ctx: &Ctx,
    job: &str,
    outcome: JobOutcome,
    measured: &str,
) -> Result<(), JobError> {
    let detail = format!(
        "{} v{}{}",
        outcome.model_file,
        outcome.model_version,
        outcome.test_accuracy.map_or(String::new(), |a| format!(
            ", {measured} accuracy {:.2}%",
            a * 100.0
        ))
    );
    let changed = ctx
        .store
        .modify(job, |j| {
            let running = j.state == JobState::Running;
            if running {
                j.state = JobState::Succeeded;
                j.finished_ms = Some(now_ms());
                j.outcome = Some(outcome.clone());
            }
            running
        })
        .await
        .map_err(|e| JobError::Storage(format!("{e:#}")))?;
    if changed.is_some() {
        ctx.event(job, JobEventKind::Finished, None, Some(detail))
            .await;
    }
    Ok(())
}

/// Applies `change` to job `id` only while attempt `attempt` is current on this worker;
/// otherwise the run must stop ([`JobError::Stopped`]).
pub async fn update<F>(
    ctx: &Ctx,
    id: &str,
    attempt: u32,
    mut change: F,
) -> Result<JobRecord, JobError>
where
    F: FnMut(&mut JobRecord),
{
    let changed = ctx
        .store
        .modify(id, |j| {
            let current = j
                .current()
                .is_some_and(|a| a.attempt == attempt && a.worker == ctx.id);
            if current {
                change(j);
            }
            current
        })
        .await
        .map_err(|e| JobError::Storage(format!("{e:#}")))?;
    changed.ok_or(JobError::Stopped)
}
