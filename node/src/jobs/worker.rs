//! The worker: watches the job records and runs each job assigned to this node (one attempt at
//! a time per job); stops a run when its job is cancelled or given to another worker.

use super::ending::{self, Owner};
use super::{Ctx, JobError};
use bus_schemas::decode;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState};
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
            Err(e) => ending::fail(&ctx, &id, Owner::Attempt(attempt), e.to_string()).await,
        }
        let _ = done.send((id, attempt));
    });
}
