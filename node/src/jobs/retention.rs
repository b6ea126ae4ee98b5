//! Retention: the coordinator keeps the newest `--keep-jobs` ended jobs and removes the older
//! ones, a few hundred per pass: first what a job left (its results file and checkpoints in
//! SDFS, its results in the results stream), then its record (a purge that applies only if the
//! record is unchanged). A coordinator that dies between the two leaves the record, and the
//! next pass removes both again. The purge markers, once every watch has seen them, are
//! removed from the bucket too, so that nothing the bucket holds grows with the jobs ever run.

use super::index::{self, Trim};
use super::{outputs, Ctx};
use crate::error::JobError;
use bus_schemas::sdfs::SdfsErrorKind;
use bus_schemas::subjects;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between passes.
const PERIOD: Duration = Duration::from_secs(5);
/// Jobs (and markers) removed per pass, at most.
const PER_PASS: usize = 500;

/// Removes the ended jobs beyond the newest `keep` while this node coordinates, until
/// `shutdown`.
pub async fn run(ctx: Arc<Ctx>, keep: usize, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !ctx.coordinator.borrow().me {
            continue;
        }
        let trim = match ctx.index.trim(keep, PER_PASS).await {
            Ok(trim) => trim,
            Err(e) => {
                tracing::debug!("retention: {e}");
                continue;
            }
        };
        pass(&ctx, trim, &shutdown).await;
    }
}

/// Removes what `trim` names.
async fn pass(ctx: &Ctx, trim: Trim, shutdown: &CancellationToken) {
    let mut removed = 0;
    // The results stream, looked up once a pass (absent: nothing of it to remove).
    let js = async_nats::jetstream::new(ctx.client.clone());
    let results = if trim.jobs.is_empty() {
        None
    } else {
        js.get_stream(subjects::RESULTS_STREAM).await.ok()
    };
    for (id, revision) in &trim.jobs {
        if shutdown.is_cancelled() || !ctx.coordinator.borrow().me {
            return;
        }
        match remove(ctx, results.as_ref(), id, *revision).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(job = %id, "retention: not removed yet: {e:#}"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "retention: removed the oldest ended jobs");
    }
    if !trim.markers.is_empty() {
        remove_markers(ctx, trim.markers).await;
    }
}

/// Removes job `id`'s results, then its record if it is still at `revision`.
async fn remove(
    ctx: &Ctx,
    results: Option<&async_nats::jetstream::stream::Stream>,
    id: &str,
    revision: u64,
) -> Result<(), JobError> {
    let sdfs = ctx.cache.sdfs();
    let names = [
        outputs::results_file(id),
        outputs::steps_file(id),
        outputs::checkpoint_file(id),
    ];
    for name in names {
        match sdfs.delete(&name).await {
            Err(e) if e.kind() != Some(SdfsErrorKind::NotFound) => {
                return Err(JobError::storage(name, e));
            }
            _ => {}
        }
    }
    let what = format!("the results and record of job {id}");
    if let Some(stream) = results {
        let purged = stream.purge().filter(subjects::job_results(id)).await;
        purged.map_err(|e| JobError::storage(what.clone(), e))?;
    }
    let kv = ctx.store.kv();
    let purged = kv.purge_expect_revision(id, Some(revision)).await;
    purged.map_err(|e| JobError::storage(what, e))?;
    Ok(())
}

/// Removes the purge markers of `keys` from the bucket, then writes [`index::TICK_KEY`] so
/// that the bucket's last revision is one every watch delivers.
async fn remove_markers(ctx: &Ctx, keys: Vec<String>) {
    let kv = ctx.store.kv();
    let mut done = Vec::with_capacity(keys.len());
    for key in keys {
        let subject = format!("{}{key}", kv.prefix);
        match kv.stream.purge().filter(subject).await {
            Ok(_) => done.push(key),
            Err(e) => {
                tracing::debug!(%key, "retention: marker not removed yet: {e}");
                break;
            }
        }
    }
    let now = crate::cluster::lease::now_ms().to_string();
    if let Err(e) = kv.put(index::TICK_KEY, now.into()).await {
        tracing::warn!("retention: cannot write the tick: {e}");
    }
    ctx.index.removed(done).await;
}
