//! The coordinator's record of accepted batches: before it counts answered batches, the
//! coordinator publishes which worker's results message (by its sequence number in the results
//! stream) it accepted for each, on `idunno.v1.jobs.<job_id>.accepted`, kept by the JetStream
//! stream `IDUNNO_ACCEPTED`. A new coordinator, and the job's end, read it back: the results
//! file holds the accepted messages only. It lives in a stream rather than in the job record so
//! that the record (read on every coordinator pass) stays small however long the job runs.

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream};
use bus_schemas::serve::{Accepted, AcceptedBatch, QueryResult, ResultsBatch};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use idunno_scheduler::batches::Answered;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the stream keeps a record (as long as the results stream keeps results).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The longest a reader waits for the next message of a job's record or results.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Why the accepted record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AcceptedError {
    /// JetStream did not store or return it (no stream yet, a server restart): retry later.
    #[error("the accepted-batches stream: {0}")]
    Stream(String),
    /// A message could not be encoded.
    #[error("cannot encode the accepted batches: {0}")]
    Encode(String),
}

fn stream_error(e: impl std::fmt::Display) -> AcceptedError {
    AcceptedError::Stream(e.to_string())
}

/// Creates the stream if needed (a small record: byte limits from 256 MiB down to 16 MiB, as
/// the server can reserve them).
pub async fn stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, AcceptedError> {
    let mut last = String::new();
    for max_bytes in [256i64 << 20, 64 << 20, 16 << 20] {
        let config = stream::Config {
            name: subjects::ACCEPTED_STREAM.into(),
            description: Some(
                "IDunno: the batches of inference jobs the coordinator accepted".into(),
            ),
            subjects: vec![subjects::all_job_accepted()],
            max_age: MAX_AGE,
            max_bytes,
            num_replicas: replicas,
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
    }
    Err(AcceptedError::Stream(last))
}

/// Keeps trying to create the stream (every 5 s) until it exists or `shutdown`.
pub async fn ensure_stream(js: jetstream::Context, replicas: usize, shutdown: CancellationToken) {
    loop {
        match stream(&js, replicas).await {
            Ok(_) => return,
            Err(e) => tracing::warn!("no accepted-batches stream yet, inference jobs wait: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Records that job `job_id` accepted `answered`, and waits until JetStream stored it.
pub async fn record(
    js: &jetstream::Context,
    replicas: usize,
    job_id: &str,
    answered: &[Answered],
) -> Result<(), AcceptedError> {
    let msg = Accepted {
        job_id: job_id.into(),
        batches: answered
            .iter()
            .map(|a| AcceptedBatch {
                batch_id: a.batch.batch_id,
                first_query: a.batch.first_query,
                len: a.batch.len,
                worker: a.worker.clone(),
                stream_seq: a.stream_seq,
            })
            .collect(),
    };
    let payload = encode(&msg).map_err(|e| AcceptedError::Encode(e.to_string()))?;
    let subject = subjects::job_accepted(job_id);
    let ack = js
        .publish(subject, payload.into())
        .await
        .map_err(stream_error)?;
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) => {
            // Deleted, or never created: make it for the next try.
            let _ = stream(js, replicas).await;
            Err(stream_error(e))
        }
    }
}

/// The accepted batches of job `job_id` whose id is below `next_batch` (cut by the
/// coordinator), the first acceptance of each.
pub async fn read(
    js: &jetstream::Context,
    job_id: &str,
    next_batch: u64,
) -> Result<BTreeMap<u64, AcceptedBatch>, AcceptedError> {
    let mut out = BTreeMap::new();
    for_each(
        js,
        subjects::ACCEPTED_STREAM,
        subjects::job_accepted(job_id),
        |_, payload| match decode::<Accepted>(payload) {
            Ok(msg) if msg.job_id == job_id => {
                for b in msg.batches.into_iter().filter(|b| b.batch_id < next_batch) {
                    out.entry(b.batch_id).or_insert(b);
                }
            }
            Ok(_) => tracing::warn!(job = %job_id, "an acceptance of another job skipped"),
            Err(e) => tracing::warn!(job = %job_id, "undecodable acceptance skipped: {e}"),
        },
    )
    .await?;
    Ok(out)
}

/// What [`results`] kept and what it ignored.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Every accepted query's result, by query id.
    pub results: BTreeMap<u64, QueryResult>,
    /// Results messages that no acceptance names (forged, pre-empting or superseded copies).
    pub ignored: u64,
}

/// The results of job `job_id` from the results messages the coordinator accepted: a message
/// counts only if its stream sequence is the one accepted for its batch, and within it only
/// the queries of that batch.
pub async fn results(
    js: &jetstream::Context,
    job_id: &str,
    accepted: &BTreeMap<u64, AcceptedBatch>,
) -> Result<Gathered, AcceptedError> {
    let mut out = Gathered::default();
    for_each(
        js,
        subjects::RESULTS_STREAM,
        subjects::job_results(job_id),
        |seq, payload| {
            let batch = decode::<ResultsBatch>(payload).ok();
            match batch.and_then(|b| take(accepted, seq, b)) {
                Some(results) => out
                    .results
                    .extend(results.into_iter().map(|r| (r.query_id, r))),
                None => out.ignored += 1,
            }
        },
    )
    .await?;
    Ok(out)
}

/// The queries of `batch` if it is the accepted copy of its batch (stored at `seq`).
pub fn take(
    accepted: &BTreeMap<u64, AcceptedBatch>,
    seq: u64,
    batch: ResultsBatch,
) -> Option<Vec<QueryResult>> {
    let a = accepted
        .get(&batch.batch_id)
        .filter(|a| a.stream_seq == seq)?;
    let range = a.first_query..a.first_query.saturating_add(u64::from(a.len));
    Some(
        batch
            .results
            .into_iter()
            .filter(|r| range.contains(&r.query_id))
            .collect(),
    )
}

/// Calls `f(stream_sequence, payload)` for every message on `subject` in stream `name`, in
/// order, until the last one present when the read started (or a [`READ_WAIT`] silence).
async fn for_each(
    js: &jetstream::Context,
    name: &str,
    subject: String,
    mut f: impl FnMut(u64, &[u8]),
) -> Result<(), AcceptedError> {
    let stream = js.get_stream(name).await.map_err(stream_error)?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .map_err(stream_error)?;
    let mut messages = consumer.messages().await.map_err(stream_error)?;
    loop {
        let next = tokio::time::timeout(READ_WAIT, messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg.map_err(stream_error)?;
        let Ok(info) = msg.info() else { continue };
        let (seq, pending) = (info.stream_sequence, info.pending);
        f(seq, &msg.payload);
        if pending == 0 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(query_id: u64, predicted: i64) -> QueryResult {
        QueryResult {
            query_id,
            sample: query_id,
            predicted,
            class_name: predicted.to_string(),
            score: 0.5,
            label: None,
        }
    }

    fn accepted() -> BTreeMap<u64, AcceptedBatch> {
        let a = AcceptedBatch {
            batch_id: 1,
            first_query: 10,
            len: 10,
            worker: "n2".into(),
            stream_seq: 7,
        };
        [(1, a)].into()
    }

    fn batch(batch_id: u64, worker: &str, queries: std::ops::Range<u64>) -> ResultsBatch {
        ResultsBatch {
            job_id: "serve-1".into(),
            batch_id,
            results: queries.map(|q| result(q, 3)).collect(),
            worker: worker.into(),
        }
    }

    #[test]
    fn only_the_accepted_copy_of_a_batch_counts() {
        let acc = accepted();
        let real = take(&acc, 7, batch(1, "n2", 10..20)).expect("the accepted copy");
        assert_eq!(real.len(), 10);
        // A forged copy claiming the same worker, stored first (another sequence number).
        assert!(take(&acc, 6, batch(1, "n2", 10..20)).is_none());
        // Another worker's copy, and a batch never sent.
        assert!(take(&acc, 8, batch(1, "n3", 10..20)).is_none());
        assert!(take(&acc, 7, batch(99, "n2", 0..10)).is_none());
    }

    #[test]
    fn queries_outside_the_accepted_batch_are_dropped() {
        let kept = take(&accepted(), 7, batch(1, "n2", 0..30)).expect("accepted");
        let ids: Vec<u64> = kept.iter().map(|r| r.query_id).collect();
        assert_eq!(ids, (10..20).collect::<Vec<_>>());
    }
}
