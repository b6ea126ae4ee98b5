//! Ending an inference job: its results, read back from the results stream (only the message
//! the coordinator accepted for each batch, see [`super::accepted`]), become
//! `results/<job_id>.jsonl`, and the job succeeds with the accuracy counted from the accepted
//! batches.

use super::ending::{succeed, Owner};
use super::outputs::{self, model_file};
use super::{accepted, Ctx, JobError};
use async_nats::jetstream;
use bus_schemas::jobs::{JobOutcome, JobSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Finishes job `id` in the background; `workers` are told to leave it.
pub fn finish(ctx: Arc<Ctx>, id: String, workers: BTreeSet<String>) {
    tokio::spawn(async move {
        if let Err(e) = write(&ctx, &id).await {
            tracing::warn!(job = %id, "cannot finish: {e}");
        }
        super::serve_ops::leave(&ctx, &id, &workers);
    });
}

async fn write(ctx: &Arc<Ctx>, id: &str) -> Result<(), JobError> {
    let Some((job, _)) = ctx
        .store
        .get(id)
        .await
        .map_err(|e| JobError::Storage(format!("{e:#}")))?
    else {
        return Ok(());
    };
    let (JobSpec::Serve(spec), Some(state)) = (&job.spec, &job.serve) else {
        return Ok(());
    };
    let js = jetstream::new(ctx.client.clone());
    let storage = |e: accepted::AcceptedError| JobError::Storage(e.to_string());
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
        seconds: super::lease::now_ms().saturating_sub(job.submitted_ms) as f64 / 1000.0,
    };
    succeed(ctx, id, Owner::Coordinator, outcome, &spec.split).await
}
