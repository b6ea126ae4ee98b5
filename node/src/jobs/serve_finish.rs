//! Ending an inference job: its results, read back from the results stream (only the message
//! the coordinator accepted for each batch, see [`super::accepted`]), become
//! `results/<job_id>.jsonl`, and the job succeeds with the accuracy counted from the accepted
//! batches.

use super::ending::{succeed, Owner};
use super::outputs::{self, model_file};
use super::{accepted, Ctx, JobError};
use async_nats::jetstream;
use bus_schemas::jobs::{JobOutcome, JobRecord, JobSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Finishes job `id`: writes its results and ends it.
pub async fn finish(ctx: &Arc<Ctx>, id: &str) {
    if let Err(e) = write(ctx, id).await {
        tracing::warn!(job = %id, "cannot finish: {e}");
    }
}

/// How long finishing waits for a read of the job's record to show every query counted.
const CURRENT: Duration = Duration::from_secs(10);

/// The job's record once a read shows every query counted. JetStream serves KV reads from any
/// copy, and a copy behind the leader (just after a server restart) returns an older record:
/// finishing from it would write the accuracy and results of fewer queries. Such a read is
/// taken again; after [`CURRENT`] finishing fails and the coordinator tries again later.
async fn complete_record(ctx: &Ctx, id: &str) -> Result<Option<JobRecord>, JobError> {
    let storage = |e| JobError::storage(format!("the record of job {id}"), e);
    let deadline = tokio::time::Instant::now() + CURRENT;
    loop {
        let Some((job, _)) = ctx.store.get(id).await.map_err(storage)? else {
            return Ok(None);
        };
        let complete = (job.serve.as_ref())
            .is_some_and(|s| s.total.is_some_and(|t| s.done >= t) && s.pending.is_empty());
        if complete {
            return Ok(Some(job));
        }
        if tokio::time::Instant::now() > deadline {
            let why = "every read of the job's record still shows queries not counted";
            return Err(JobError::storage(format!("the record of job {id}"), why));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn write(ctx: &Arc<Ctx>, id: &str) -> Result<(), JobError> {
    let Some(job) = complete_record(ctx, id).await? else {
        return Ok(());
    };
    let (JobSpec::Serve(spec), Some(state)) = (&job.spec, &job.serve) else {
        return Ok(());
    };
    let js = jetstream::new(ctx.client.clone());
    let storage = |e| JobError::storage(format!("the accepted batches of job {id}"), e);
    let accepted = accepted::read(&js, id, state.next_batch)
        .await
        .map_err(storage)?;
    let gathered = accepted::results(&js, id, &accepted)
        .await
        .map_err(storage)?;
    let results = gathered.results;
    if gathered.ignored > 0 {
        tracing::warn!(job = %id, ignored = gathered.ignored, "results messages not accepted by the coordinator were left out");
    }
    let expected = state.total.unwrap_or(state.done);
    if results.len() as u64 != expected {
        tracing::warn!(job = %id, "the results file holds {} of {expected} queries (the results stream dropped some?)", results.len());
    }
    let mut lines = Vec::with_capacity(results.len() * 96);
    for r in results.values() {
        serde_json::to_writer(&mut lines, r).map_err(|e| JobError::Internal(e.to_string()))?;
        lines.push(b'\n');
    }
    let file = outputs::results_file(id);
    outputs::put_bytes(ctx, &file, &lines, BTreeMap::new()).await?;
    let accuracy = state.correct.map(|c| c as f64 / state.done.max(1) as f64);
    let outcome = JobOutcome {
        model_file: model_file(&spec.model),
        model_version: state.model_version,
        test_accuracy: accuracy,
        results_file: Some(file),
        seconds: crate::cluster::lease::now_ms().saturating_sub(job.submitted_ms) as f64 / 1000.0,
        steps_file: None,
    };
    succeed(ctx, id, Owner::Coordinator, outcome, &spec.split).await
}
