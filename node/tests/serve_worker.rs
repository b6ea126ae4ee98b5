//! Workers serving an inference job, driven directly (as the coordinator does): join, batches on
//! each worker's work subject, results stored once per batch in the results stream even when a batch
//! is sent twice, leave.

use bus_client::request;
use bus_schemas::serve::{
    AssignReply, AssignRequest, ResultsBatch, ServeTarget, WorkBatch, WorkReply,
};
use bus_schemas::{decode, subjects};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use testkit::{import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
mod common;

use common::{expected, import_fixture};

async fn assign(c: &Cluster, node: &str, req: &AssignRequest) -> AssignReply {
    request(
        &c.client,
        subjects::node_assign(node),
        req,
        Duration::from_secs(60),
    )
    .await
    .unwrap()
}

async fn send(c: &Cluster, worker: &str, batch: &WorkBatch) -> WorkReply {
    request(
        &c.client,
        subjects::job_work(&batch.job_id, worker),
        batch,
        Duration::from_secs(30),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn batches_are_served_by_the_joined_workers_and_stored_once_each() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;

    let job = "serve-test1";
    let target = ServeTarget {
        job_id: job.into(),
        model_file: "models/fixture".into(),
        model_version: 1,
        dataset: "fm".into(),
        split: "test".into(),
    };
    let missing = ServeTarget {
        model_file: "models/none".into(),
        ..target.clone()
    };
    match assign(&c, "n1", &AssignRequest::Join { target: missing }).await {
        AssignReply::Error { message, .. } => assert!(message.contains("models/none"), "{message}"),
        other => panic!("{other:?}"),
    }
    for node in ["n2", "n3"] {
        let reply = assign(
            &c,
            node,
            &AssignRequest::Join {
                target: target.clone(),
            },
        )
        .await;
        assert!(
            matches!(&reply, AssignReply::Done { serving, .. } if serving == &[job.to_string()]),
            "{reply:?}"
        );
    }
    let batch = |b: u64| WorkBatch {
        job_id: job.into(),
        batch_id: b,
        first_query: b * 500,
        len: 500,
    };
    let mut workers = BTreeMap::<String, u32>::new();
    let mut seqs = Vec::new();
    let mut correct = 0;
    let to = |b: u64| if b.is_multiple_of(2) { "n2" } else { "n3" };
    for b in 0..20 {
        match send(&c, to(b), &batch(b)).await {
            WorkReply::Done {
                worker,
                queries,
                correct: Some(k),
                duplicate: false,
                stream_seq: Some(seq),
                ..
            } => {
                assert_eq!(queries, 500);
                *workers.entry(worker).or_default() += 1;
                correct += k;
                seqs.push(seq);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        workers.keys().all(|w| w == "n2" || w == "n3"),
        "{workers:?}"
    );
    // A batch sent again to the same worker is run again but stored once: the worker names the
    // message it stored the first time.
    for b in 0..3 {
        let reply = send(&c, to(b), &batch(b)).await;
        assert!(
            matches!(
                reply,
                WorkReply::Done {
                    duplicate: true,
                    stream_seq: Some(seq),
                    ..
                } if seq == seqs[b as usize]
            ),
            "{reply:?}"
        );
    }
    let expected = expected();
    let js = async_nats::jetstream::new(c.client.clone());
    let mut stream = js.get_stream(subjects::RESULTS_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    assert_eq!(last, 20, "one message per batch");
    let mut seen = vec![0u32; 10_000];
    for seq in 1..=last {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.subject.as_str(), subjects::job_results(job));
        let results: ResultsBatch = decode(&msg.payload).unwrap();
        assert_eq!(results.worker, to(results.batch_id));
        assert_eq!(seqs[results.batch_id as usize], seq);
        for r in results.results {
            seen[r.query_id as usize] += 1;
            assert_eq!(r.predicted, expected.predicted[r.sample as usize]);
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every query exactly once");
    let accuracy = f64::from(correct) / 10_000.0;
    assert!((accuracy - 0.7814).abs() < 1e-9, "{accuracy}");

    for node in ["n2", "n3"] {
        let left = assign(&c, node, &AssignRequest::Leave { job_id: job.into() }).await;
        assert!(
            matches!(&left, AssignReply::Done { serving, .. } if serving.is_empty()),
            "{left:?}"
        );
    }
    let gone = request::<_, WorkReply>(
        &c.client,
        subjects::job_work(job, "n2"),
        &batch(0),
        Duration::from_secs(2),
    )
    .await;
    assert!(
        gone.is_err(),
        "nobody serves the job after leaving: {gone:?}"
    );
}
