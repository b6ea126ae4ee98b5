//! Training and model import with a real nats-server, real nodes and real Fashion-MNIST.

use bus_client::jobs::{JobsClient, JobsError};
use bus_schemas::jobs::{
    ImportSpec, JobRecord, JobSpec, JobState, JobsErrorKind, Progress, TrainSpec,
};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use testkit::{import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
fn fixtures() -> std::path::PathBuf {
    testkit::repo_dir().join("node/tests/fixtures/torchscript")
}

async fn wait_job(jobs: &JobsClient, id: &str, limit: Duration) -> JobRecord {
    wait_until(&format!("job {id} ends"), limit, || async {
        jobs.get(id).await.ok().filter(|j| j.state.is_final())
    })
    .await
}

fn train_spec(arch: &str, dataset: &str, epochs: u32, limit: u64) -> JobSpec {
    JobSpec::Train(TrainSpec {
        arch: arch.into(),
        name: format!("{arch}-test"),
        dataset: dataset.into(),
        epochs,
        batch: 64,
        lr: None,
        limit: Some(limit),
        seed: 1,
        workers: 1,
    })
}

#[tokio::test]
async fn a_killed_training_worker_is_resumed_from_its_checkpoint_by_another() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let mut progress_sub = c.client.subscribe(subjects::job_events()).await.unwrap();
    let id = jobs.submit(train_spec("cnn", "fm", 6, 3000)).await.unwrap();
    let mut progress = c
        .client
        .subscribe(subjects::job_progress(&id))
        .await
        .unwrap();
    // Kill the worker as soon as its first checkpoint is recorded.
    let first = wait_until("a checkpoint", Duration::from_secs(120), || async {
        let job = jobs.get(&id).await.ok()?;
        assert!(!job.state.is_final(), "ended before a checkpoint: {job:?}");
        (job.checkpoint_epochs >= 1).then_some(job)
    })
    .await;
    let victim = first.attempts[0].worker.clone();
    c.node(&victim).kill9();
    let done = wait_job(&jobs, &id, Duration::from_secs(180)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert!(done.attempts.len() >= 2, "{done:?}");
    let second = &done.attempts[1];
    assert_ne!(second.worker, victim);
    let resumed = second.resumed_at_epoch.expect("the second attempt started");
    assert!(
        resumed >= 1,
        "resumed at epoch {resumed}, i.e. from scratch"
    );
    // No progress of a later attempt ever reports epoch 0: the work was not redone.
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(200), progress.next()).await
    {
        let p: Progress = decode(&msg.payload).unwrap();
        if p.attempt >= 2 {
            assert!(p.epoch >= resumed && p.resumed_at_epoch == resumed, "{p:?}");
        }
    }
    let outcome = done.outcome.expect("an outcome");
    assert!(outcome.test_accuracy.unwrap() > 0.6, "{outcome:?}");
    let model = fs
        .locate(&outcome.model_file, Some(outcome.model_version))
        .await
        .unwrap();
    assert_eq!(model.attrs["arch"], "cnn");
    assert_eq!(model.attrs["job"], id);
    // The events told the story: started, then reassigned, then finished.
    let mut kinds = Vec::new();
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(200), progress_sub.next()).await
    {
        let ev: bus_schemas::jobs::JobEvent = decode(&msg.payload).unwrap();
        if ev.job_id == id {
            kinds.push(format!("{:?}", ev.event));
        }
    }
    for kind in ["Submitted", "Started", "Reassigned", "Finished"] {
        assert!(kinds.iter().any(|k| k == kind), "{kinds:?}");
    }
}

#[derive(serde::Deserialize)]
struct Expected {
    mean: f32,
    std: f32,
    correct: u64,
    predicted: Vec<i64>,
    score: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct ResultLine {
    query_id: u64,
    predicted: i64,
    score: f32,
    label: Option<i64>,
}

#[tokio::test]
async fn a_pytorch_torchscript_model_gives_pytorchs_predictions_through_idunno() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let pt = fixtures().join("fashion_cnn.pt");
    fs.put(&pt, "uploads/fixture.pt", None).await.unwrap();
    let spec = JobSpec::Import(ImportSpec {
        name: "fixture".into(),
        dataset: "fm".into(),
        upload: "uploads/fixture.pt".into(),
        mean: vec![expected.mean],
        std: vec![expected.std],
    });
    let id = jobs.submit(spec).await.unwrap();
    let done = wait_job(&jobs, &id, Duration::from_secs(120)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let outcome = done.outcome.unwrap();
    let acc = outcome.test_accuracy.unwrap();
    assert!(
        (acc * 10_000.0 - expected.correct as f64).abs() < 0.5,
        "{acc} vs {}",
        expected.correct
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    fs.get(outcome.results_file.as_deref().unwrap(), None, &out, None)
        .await
        .unwrap();
    let lines: Vec<ResultLine> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), expected.predicted.len());
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.query_id, i as u64);
        assert_eq!(line.predicted, expected.predicted[i], "sample {i}");
        assert!(line.label.is_some());
        if let Some(s) = expected.score.get(i) {
            assert!(
                (line.score - s).abs() < 1e-4,
                "sample {i}: {} vs {s}",
                line.score
            );
        }
    }
    let v = fs.locate("models/fixture", None).await.unwrap();
    assert_eq!(v.attrs["arch"], "torchscript");
    assert!(
        fs.locate("uploads/fixture.pt", None).await.is_err(),
        "the upload is removed"
    );
}

fn refused(r: Result<String, JobsError>) -> (JobsErrorKind, String) {
    match r {
        Err(JobsError::Refused { kind, message }) => (kind, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_jobs_are_refused_or_fail_clearly_and_every_node_keeps_running() {
    let mut c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let (kind, msg) = refused(jobs.submit(train_spec("vgg", "fm", 1, 10)).await);
    assert_eq!(kind, JobsErrorKind::UnknownModel);
    assert!(msg.contains("mlp, cnn, resnet"), "{msg}");
    let (kind, msg) = refused(jobs.submit(train_spec("cnn", "nope", 1, 10)).await);
    assert_eq!(kind, JobsErrorKind::UnknownDataset);
    assert!(msg.contains("unknown dataset \"nope\""), "{msg}");
    let (kind, _) = refused(jobs.submit(train_spec("cnn", "fm", 0, 10)).await);
    assert_eq!(kind, JobsErrorKind::BadArgument);
    let import = |upload: &str| {
        JobSpec::Import(ImportSpec {
            name: "bad".into(),
            dataset: "fm".into(),
            upload: upload.into(),
            mean: vec![],
            std: vec![],
        })
    };
    let (kind, _) = refused(jobs.submit(import("uploads/missing.pt")).await);
    assert_eq!(kind, JobsErrorKind::NotFound);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "garbage.pt",
            b"PK\x03\x04 certainly not torchscript".to_vec(),
            "not a loadable TorchScript module",
        ),
        (
            "five.pt",
            std::fs::read(fixtures().join("five_outputs.pt")).unwrap(),
            "but fm has 10 classes",
        ),
    ];
    for (file, bytes, reason) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let upload = format!("uploads/{file}");
        fs.put(&path, &upload, None).await.unwrap();
        let id = jobs.submit(import(&upload)).await.unwrap();
        let done = wait_job(&jobs, &id, Duration::from_secs(60)).await;
        assert_eq!(done.state, JobState::Failed);
        let error = done.error.unwrap();
        assert!(error.contains(reason), "{error}");
    }
    assert!(
        fs.ls("models").await.unwrap().is_empty(),
        "nothing was registered"
    );
    for node in &mut c.nodes {
        assert!(node.is_running());
    }
    assert!(c.everyone_alive().await);
}

#[tokio::test]
async fn a_corrupt_checkpoint_fails_the_resumed_job_with_a_clear_error() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let id = jobs.submit(train_spec("cnn", "fm", 6, 6000)).await.unwrap();
    let job = wait_until("a checkpoint", Duration::from_secs(120), || async {
        let job = jobs.get(&id).await.ok()?;
        assert!(!job.state.is_final(), "ended before a checkpoint: {job:?}");
        (job.checkpoint_epochs >= 1).then_some(job)
    })
    .await;
    // Flip bytes in every stored copy of the recorded checkpoint, then kill the worker.
    let version = job.checkpoint_version.unwrap();
    let ckpt = fs
        .locate(&format!("checkpoints/{id}"), Some(version))
        .await
        .unwrap();
    for holder in &ckpt.replicas {
        let blob = c.node(holder).data_dir.join("sdfs/blobs").join(&ckpt.blob);
        let mut bytes = std::fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&blob, bytes).unwrap();
    }
    let victim = job.attempts[0].worker.clone();
    c.node(&victim).kill9();
    let done = wait_job(&jobs, &id, Duration::from_secs(120)).await;
    assert_eq!(
        done.checkpoint_version,
        Some(version),
        "the worker died first"
    );
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let error = done.error.unwrap();
    assert!(
        error.contains(&format!("cannot resume job {id}")),
        "{error}"
    );
    assert!(done.attempts.len() >= 2);
    for node in c.nodes.iter_mut().filter(|n| n.id != victim) {
        assert!(node.is_running());
    }
}
