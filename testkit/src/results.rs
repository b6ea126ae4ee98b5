//! Every job results message the bus carries, recorded as it arrives (for the benches), and
//! an inference job's answers checked from its streams.

use bus_schemas::jobs::JobRecord;
use bus_schemas::serve::{Accepted, AcceptedBatch, QueryResult, ResultsBatch};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every results message seen: when, job, batch id.
pub type Seen = Arc<Mutex<Vec<(Instant, String, u64)>>>;

/// Subscribes to every job's results and records each batch as it arrives, until the client
/// closes.
pub async fn collect_results(client: &async_nats::Client) -> Seen {
    let seen: Seen = Arc::default();
    let mut sub = client
        .subscribe(subjects::all_job_results())
        .await
        .expect("subscribe to the job results");
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Ok(b) = decode::<ResultsBatch>(&msg.payload) {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                out.push((Instant::now(), b.job_id, b.batch_id));
            }
        }
    });
    seen
}

/// Every message on `subject` in JetStream stream `stream`, with its stream sequence, in order
/// (until a 3 s silence).
async fn read_all(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: String,
) -> Vec<(u64, bytes::Bytes)> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let s = js.get_stream(stream).await.expect("the stream exists");
    let config = OrderedConfig {
        filter_subject: subject,
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let consumer = s.create_consumer(config).await.expect("a reader");
    let mut msgs = consumer.messages().await.expect("read the stream");
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(3), msgs.next()).await {
        let msg = msg.expect("a stream message");
        let info = msg.info().expect("a JetStream message");
        let (seq, pending) = (info.stream_sequence, info.pending);
        out.push((seq, msg.payload.clone()));
        if pending == 0 {
            break;
        }
    }
    out
}

/// Checks from the streams that inference job `job` (its record as last read) answered every
/// query exactly once, and returns the answers by query id. As any client may: the accepted
/// record (stream `IDUNNO_ACCEPTED`, the first acceptance of each batch) names the results
/// message that counts for each batch (stream `IDUNNO_RESULTS`). Panics unless every accepted
/// batch's message holds each of the batch's queries once; no query is in two counted batches;
/// the record counts exactly the accepted batches not pending; and every query cut so far is
/// either answered or pending (none lost).
pub async fn served_once(
    client: &async_nats::Client,
    job: &JobRecord,
) -> BTreeMap<u64, QueryResult> {
    let state = job.serve.as_ref().expect("an inference job's state");
    let js = async_nats::jetstream::new(client.clone());
    let mut first: BTreeMap<u64, AcceptedBatch> = BTreeMap::new();
    let acceptances = subjects::job_accepted(&job.id);
    for (_, payload) in read_all(&js, subjects::ACCEPTED_STREAM, acceptances).await {
        let acc: Accepted = decode(&payload).expect("an acceptance decodes");
        for b in acc.batches {
            first.entry(b.batch_id).or_insert(b);
        }
    }
    let mut results: BTreeMap<u64, ResultsBatch> = BTreeMap::new();
    let answers = subjects::job_results(&job.id);
    for (seq, payload) in read_all(&js, subjects::RESULTS_STREAM, answers).await {
        results.insert(seq, decode(&payload).expect("a results message decodes"));
    }
    let pending: BTreeSet<u64> = state.pending.iter().map(|p| p.batch_id).collect();
    let mut answered = BTreeMap::new();
    let mut counted = 0u64;
    for b in first.values() {
        let msg = (results.get(&b.stream_seq)).unwrap_or_else(|| {
            panic!(
                "batch {} accepted at seq {}: not in the results stream",
                b.batch_id, b.stream_seq
            )
        });
        assert_eq!(
            msg.batch_id, b.batch_id,
            "the accepted message is of its batch"
        );
        let range = b.first_query..b.first_query + u64::from(b.len);
        let mine: Vec<&QueryResult> = (msg.results.iter())
            .filter(|r| range.contains(&r.query_id))
            .collect();
        let ids: Vec<u64> = mine.iter().map(|r| r.query_id).collect();
        assert_eq!(
            ids,
            range.clone().collect::<Vec<_>>(),
            "batch {}",
            b.batch_id
        );
        if pending.contains(&b.batch_id) {
            continue; // accepted, not yet counted: it is sent again
        }
        counted += u64::from(b.len);
        for r in mine {
            let twice = answered.insert(r.query_id, r.clone()).is_some();
            assert!(!twice, "query {} is in two counted batches", r.query_id);
        }
    }
    assert_eq!(
        counted, state.done,
        "the record counts the accepted batches"
    );
    let mut cut: BTreeSet<u64> = answered.keys().copied().collect();
    for p in &state.pending {
        cut.extend(p.first_query..p.first_query + u64::from(p.len));
    }
    let lost = (0..state.next_query).filter(|q| !cut.contains(q)).count();
    assert_eq!(lost, 0, "queries cut but neither answered nor pending");
    answered
}
