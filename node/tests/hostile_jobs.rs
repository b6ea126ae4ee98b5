//! Hostile input against the coordinator, with a real nats-server and real nodes: forged and
//! pre-empting results of a running inference job, and a job whose worker dies every time it
//! runs it.

mod common;

use async_nats::jetstream;
use bus_schemas::jobs::{JobEvent, JobEventKind, JobSpec, JobState, ServeSpec, TrainSpec};
use bus_schemas::serve::{QueryResult, ResultsBatch, WorkBatch};
use bus_schemas::{decode, encode, subjects};
use common::{expected, import_fixture, wait_job};
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use testkit::{holds_for, import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
/// Queries per batch of the inference job (10000 test samples: batches 0 to 99).
const BATCH: u64 = 100;

/// A forged copy of batch `batch_id` of `job` claiming to come from `worker`: queries `first`
/// to `first + len - 1`, each with a class other than the model's (`truth`).
fn forged(
    truth: &[i64],
    job: &str,
    (batch_id, first, len): (u64, u64, u64),
    worker: &str,
) -> ResultsBatch {
    let wrong = |q: u64| {
        let predicted = (truth[(q % 10_000) as usize] + 1) % 10;
        QueryResult {
            query_id: q,
            sample: q % 10_000,
            predicted,
            class_name: "forged".into(),
            score: 1.0,
            label: Some(predicted),
        }
    };
    ResultsBatch {
        job_id: job.into(),
        batch_id,
        results: (first..first + len).map(wrong).collect(),
        worker: worker.into(),
    }
}

/// Publishes `batch` into the results stream under message id `msg_id` (none: no id).
async fn publish(js: &jetstream::Context, job: &str, batch: &ResultsBatch, msg_id: Option<String>) {
    let mut msg =
        jetstream::message::PublishMessage::build().payload(encode(batch).unwrap().into());
    if let Some(id) = msg_id {
        msg = msg.message_id(id);
    }
    let ack = js
        .send_publish(subjects::job_results(job), msg)
        .await
        .unwrap();
    ack.await.unwrap();
}

/// For each batch id of `job` below 100, whether the first results stored for it in the
/// stream (of `stored` messages) were forged.
async fn first_stored(
    stream: &mut jetstream::stream::Stream,
    job: &str,
    stored: u64,
) -> std::collections::BTreeMap<u64, bool> {
    let mut first = std::collections::BTreeMap::new();
    for seq in 1..=stored {
        let Ok(raw) = stream.get_raw_message(seq).await else {
            continue;
        };
        let Ok(batch) = decode::<ResultsBatch>(&raw.payload) else {
            continue;
        };
        if batch.job_id != job || batch.batch_id >= 10_000 / BATCH {
            continue;
        }
        let forged = batch.results.iter().any(|r| r.class_name == "forged");
        first.entry(batch.batch_id).or_insert(forged);
    }
    first
}

#[derive(serde::Deserialize)]
struct Line {
    query_id: u64,
    sample: u64,
    predicted: i64,
    class_name: String,
}

#[tokio::test]
async fn forged_and_pre_empting_results_never_reach_the_results_file_or_the_counts() {
    let mut c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    let js = jetstream::new(c.client.clone());
    wait_until("the results stream", Duration::from_secs(30), || async {
        js.get_stream(subjects::RESULTS_STREAM).await.ok()
    })
    .await;
    let id = jobs
        .submit(JobSpec::Serve(ServeSpec {
            model: "fixture".into(),
            model_version: None,
            dataset: String::new(),
            split: "test".into(),
            batch: BATCH as u32,
            passes: Some(1),
            weight: 1,
        }))
        .await
        .unwrap();
    // Before the workers answer: a wrong copy of every batch the job will cut, under every
    // message id a worker could use (the old `<job>.<batch>` and `<job>.<batch>.<worker>`).
    let ids = c.ids();
    let truth = expected().predicted;
    for b in 0..10_000 / BATCH {
        let mut msg_ids = vec![format!("{id}.{b}")];
        msg_ids.extend(ids.iter().map(|w| format!("{id}.{b}.{w}")));
        for (i, msg_id) in msg_ids.into_iter().enumerate() {
            let w = &ids[i % ids.len()];
            let batch = forged(&truth, &id, (b, b * BATCH, BATCH), w);
            publish(&js, &id, &batch, Some(msg_id)).await;
        }
    }
    // Extra forgeries: batch ids never cut, a batch spilling past its queries, no message id.
    for b in 10_000 / BATCH..10_000 / BATCH + 20 {
        let batch = forged(&truth, &id, (b, (b % 100) * BATCH, BATCH), "n1");
        publish(&js, &id, &batch, None).await;
    }
    let spilling = forged(&truth, &id, (3, 0, 10_000), "n2");
    publish(&js, &id, &spilling, None).await;
    let forgeries = 4 * (10_000 / BATCH) + 21;

    let done = wait_job(&jobs, &id, Duration::from_secs(240)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let state = done.serve.as_ref().unwrap();
    assert_eq!((state.done, state.pending.len()), (10_000, 0), "{state:?}");
    assert_eq!(state.by_worker.values().sum::<u64>(), 10_000);
    let expected = expected();
    let accuracy = done.outcome.as_ref().unwrap().test_accuracy.unwrap();
    assert!(
        (accuracy - expected.correct as f64 / 10_000.0).abs() < 1e-12,
        "{accuracy}"
    );
    // The results file: every query exactly once, with the model's own predictions.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let file = done.outcome.as_ref().unwrap().results_file.clone().unwrap();
    fs.get(&file, None, &path, None).await.unwrap();
    let mut seen = vec![0u32; 10_000];
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        let l: Line = serde_json::from_str(line).unwrap();
        seen[l.query_id as usize] += 1;
        assert_eq!(l.sample, l.query_id);
        assert_eq!(
            l.predicted, expected.predicted[l.sample as usize],
            "query {}",
            l.query_id
        );
        assert_ne!(l.class_name, "forged");
    }
    assert!(seen.iter().all(|&n| n == 1), "every query exactly once");
    // The forgeries were there, stored in the stream ahead of the real results.
    let mut stream = js.get_stream(subjects::RESULTS_STREAM).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert!(
        stored >= forgeries + 10_000 / BATCH,
        "{stored} messages in the stream"
    );
    // For most batches a forgery was stored before the real result (on a slow machine a few
    // real results may be stored first; which ones varies from run to run).
    let first = first_stored(&mut stream, &id, stored).await;
    let pre_empted = first.values().filter(|forged| **forged).count();
    assert!(
        pre_empted >= first.len() / 2 && first.len() == (10_000 / BATCH) as usize,
        "forgeries came first for {pre_empted} of {} batches",
        first.len()
    );
    for node in &mut c.nodes {
        assert!(node.is_running(), "{} exited", node.id);
    }
    assert!(c.everyone_alive().await);
}

#[tokio::test]
async fn a_job_whose_worker_dies_every_time_fails_after_three_deaths() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    let mut events = c.client.subscribe(subjects::job_events()).await.unwrap();
    let spec = JobSpec::Train(TrainSpec {
        arch: "cnn".into(),
        name: "doomed".into(),
        dataset: "fm".into(),
        epochs: 1000,
        batch: 64,
        lr: None,
        limit: Some(2000),
        seed: 1,
        workers: 1,
    });
    let id = jobs.submit(spec).await.unwrap();
    // Each time a worker has started an attempt, kill it (as a job that crashes its worker would).
    let mut killed = Vec::new();
    for attempt in 1..=3usize {
        let job = wait_until(
            &format!("attempt {attempt} runs"),
            Duration::from_secs(120),
            || async {
                let job = jobs.get(&id).await.ok()?;
                assert!(
                    !job.state.is_final(),
                    "ended before {attempt} deaths: {job:?}"
                );
                let current = job.current()?;
                (job.attempts.len() == attempt && current.resumed_at_epoch.is_some()).then_some(job)
            },
        )
        .await;
        let worker = job.attempts[attempt - 1].worker.clone();
        assert!(!killed.contains(&worker), "{worker} ran it again: {job:?}");
        c.node(&worker).kill9();
        killed.push(worker);
    }
    let done = wait_job(&jobs, &id, Duration::from_secs(120)).await;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let error = done.error.clone().unwrap();
    let listed = format!("the job's worker died 3 times: {}", killed.join(", "));
    assert!(error.starts_with(&listed), "{error}");
    assert!(
        error.contains(&format!("(last error: {} was declared failed", killed[2])),
        "{error}"
    );
    assert!(done.attempts.iter().all(|a| a.died.is_some()), "{done:?}");
    // It does not run on a fourth worker: the survivor stays free and the job stays failed.
    let survivor = c.others(&killed.iter().map(String::as_str).collect::<Vec<_>>());
    holds_for(
        "the job stays failed on 3 attempts",
        Duration::from_secs(3),
        || async {
            jobs.get(&id)
                .await
                .is_ok_and(|j| j.state == JobState::Failed && j.attempts.len() == 3)
        },
    )
    .await;
    assert!(c.node(&survivor[0]).is_running());
    // The failed event carries the reason.
    let failed = async {
        while let Some(msg) = events.next().await {
            let ev: JobEvent = decode(&msg.payload).unwrap();
            if ev.job_id == id && ev.event == JobEventKind::Failed {
                return ev;
            }
        }
        panic!("the events subscription ended");
    };
    let event = tokio::time::timeout(Duration::from_secs(10), failed)
        .await
        .expect("a failed event within 10 s");
    assert_eq!(event.detail.as_deref(), Some(error.as_str()));
}

#[tokio::test]
async fn a_batch_whose_workers_keep_dying_fails_its_job_after_three_deaths() {
    let mut c = Cluster::start(Path::new(NODE), 6).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    let coordinator = c.coordinator().await;
    let spec = JobSpec::Serve(ServeSpec {
        model: "fixture".into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        // The largest batch: its worker takes hundreds of milliseconds over it, so the kill
        // below lands before it can answer even on a loaded machine (with 1000 queries a
        // worker once answered the chosen batch before the kill, and it was never a death).
        batch: bus_schemas::serve::MAX_BATCH_QUERIES,
        passes: None,
        weight: 1,
    });
    // Watch the batches go out (from the first); kill every worker that receives one chosen
    // batch (the first sent to a worker other than the coordinator), as a batch that crashes
    // its worker would. Batches in flight beside it die with it, so any of them may be the one
    // that reaches three deaths first: each batch's workers are kept.
    // Every worker's plain and `.again` subjects (batches sent again go to the latter).
    let mut work = c
        .client
        .subscribe(subjects::job_work("*", ">"))
        .await
        .unwrap();
    c.client.flush().await.unwrap();
    let id = jobs.submit(spec).await.unwrap();
    let mut poison = None;
    let mut killed: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut holders: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let mut checked = std::time::Instant::now();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not fail; killed {killed:?}"
        );
        if checked.elapsed() > Duration::from_millis(300) {
            checked = std::time::Instant::now();
            if jobs.get(&id).await.is_ok_and(|j| j.state.is_final()) {
                break;
            }
        }
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), work.next()).await
        else {
            continue;
        };
        let after = msg.subject.as_str().split(".work.").nth(1).unwrap();
        let worker = after.split('.').next().unwrap().to_string();
        let batch: WorkBatch = decode(&msg.payload).unwrap();
        if batch.job_id != id {
            continue;
        }
        holders
            .entry(batch.batch_id)
            .or_default()
            .push(worker.clone());
        if worker == coordinator {
            assert_ne!(
                poison,
                Some(batch.batch_id),
                "a suspect batch went to the coordinator"
            );
            continue;
        }
        seen.insert(worker.clone());
        if poison.is_none() && (seen.len() < 5 || batch.len < bus_schemas::serve::MAX_BATCH_QUERIES)
        {
            // Until every worker has joined (before, the coordinator may be the only other),
            // and a full batch (a pass's last one is shorter, so quicker to answer).
            continue;
        }
        let chosen = *poison.get_or_insert(batch.batch_id);
        if batch.batch_id == chosen && !killed.contains(&worker) {
            c.node(&worker).kill9();
            killed.push(worker);
        }
    }
    // It did not walk through the cluster: of the five workers, one at least never got it.
    assert!((3..=4).contains(&killed.len()), "killed {killed:?}");
    let done = wait_job(&jobs, &id, Duration::from_secs(120)).await;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let error = done.error.clone().unwrap();
    let holding = "the job's worker died 3 times holding batch ";
    assert!(error.starts_with(holding), "{error}");
    let batch: u64 = error[holding.len()..]
        .split(' ')
        .next()
        .and_then(|b| b.parse().ok())
        .expect("a batch id");
    assert!(error.contains(" (queries "), "{error}");
    let named: Vec<&String> = killed
        .iter()
        .filter(|w| error.contains(w.as_str()))
        .collect();
    assert_eq!(named.len(), 3, "{error} (killed {killed:?})");
    for w in named {
        assert!(
            holders[&batch].contains(w),
            "{w} never held batch {batch}: {holders:?}"
        );
    }
    assert!(error.contains("(last error: "), "{error}");
    // The coordinator and the worker left are still up, and the job stays failed.
    holds_for("the job stays failed", Duration::from_secs(2), || async {
        jobs.get(&id)
            .await
            .is_ok_and(|j| j.state == JobState::Failed)
    })
    .await;
    for node in c.nodes.iter_mut().filter(|n| !killed.contains(&n.id)) {
        assert!(node.is_running(), "{} exited", node.id);
    }
}
