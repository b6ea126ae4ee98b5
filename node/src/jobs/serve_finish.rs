//! Ending an inference job: its results, read back from the results stream (one message per
//! batch, each batch stored once), become `results/<job_id>.jsonl`, and the job succeeds with
//! the accuracy counted from the answered batches.

use super::ending::{succeed, Owner};
use super::outputs::{self, model_file};
use super::{Ctx, JobError};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use bus_schemas::jobs::{JobOutcome, JobSpec};
use bus_schemas::serve::ResultsBatch;
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Finishes job `id` in the background; `workers` are told to leave it.
pub fn finish(ctx: Arc<Ctx>, id: String, workers: BTreeSet<String>) {
    tokio::spawn(async move {
        if let Err(e) = write(&ctx, &id).await {
            tracing::warn!(job = %id, "cannot finish: {e}");
        }
        super::serve_ops::leave(&ctx, &id, &workers);
    });
}

/// Every query's result of job `id`, by query id, from the results stream.
pub async fn read_results(
    client: &async_nats::Client,
    id: &str,
) -> anyhow::Result<BTreeMap<u64, bus_schemas::serve::QueryResult>> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(subjects::RESULTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::job_results(id),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = BTreeMap::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg?;
        let pending = msg.info().map(|i| i.pending).unwrap_or(0);
        match decode::<ResultsBatch>(&msg.payload) {
            Ok(batch) => {
                for r in batch.results {
                    out.insert(r.query_id, r);
                }
            }
            Err(e) => tracing::warn!(job = %id, "undecodable results message skipped: {e}"),
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
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
    let results = read_results(&ctx.client, id)
        .await
        .map_err(|e| JobError::Storage(format!("results stream: {e:#}")))?;
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
