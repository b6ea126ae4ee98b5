//! Inference jobs end to end: submitted through the jobs API, dispatched by the coordinator,
//! with workers and the coordinator killed mid-job. Every test checks that the results file
//! holds every query exactly once and that the reported accuracy equals the one recomputed
//! from it.

mod common;

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, ServeSpec};
use common::{check_results, import_fixture, wait_job};
use std::path::Path;
use std::time::Duration;
use testkit::{import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn serve(model: &str, batch: u32) -> JobSpec {
    JobSpec::Serve(ServeSpec {
        model: model.into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        batch,
        passes: Some(1),
        weight: 1,
    })
}

async fn setup(n: usize) -> (Cluster, SdfsClient, JobsClient) {
    let c = Cluster::start(Path::new(NODE), n).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    (c, fs, jobs)
}

/// Waits until the job has answered at least `n` queries; on a timeout, shows the tails of
/// the node logs.
async fn wait_done(c: &Cluster, jobs: &JobsClient, id: &str, n: u64) -> JobRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(job) = jobs.get(id).await {
            assert!(!job.state.is_final(), "ended too early: {job:?}");
            if job.serve.as_ref().is_some_and(|s| s.done >= n) {
                return job;
            }
            if std::time::Instant::now() > deadline {
                print_logs(c);
                panic!("timed out waiting for {n} queries of {id}: {job:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last 40 lines of every node's log, on stderr.
fn print_logs(c: &Cluster) {
    for n in &c.nodes {
        let log = std::fs::read_to_string(n.data_dir.join("stdout.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "--- {} ---\n{}",
            n.id,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

#[tokio::test]
async fn a_serve_job_survives_a_killed_worker() {
    let (mut c, fs, jobs) = setup(4).await;
    let id = jobs.submit(serve("fixture", 20)).await.unwrap();
    let job = wait_done(&c, &jobs, &id, 2000).await;
    let coordinator = testkit_view(&c).await.and_then(|v| v.coordinator);
    let workers = job.serve.as_ref().unwrap().workers.clone();
    let victim = workers
        .iter()
        .find(|w| Some(*w) != coordinator.as_ref())
        .unwrap()
        .clone();
    c.node(&victim).kill9();
    let done = wait_job(&jobs, &id, Duration::from_secs(180)).await;
    check_results(&fs, &done).await;
}

#[tokio::test]
async fn a_serve_job_survives_a_killed_coordinator() {
    let (mut c, fs, jobs) = setup(4).await;
    let id = jobs.submit(serve("fixture", 20)).await.unwrap();
    wait_done(&c, &jobs, &id, 2000).await;
    let coordinator = wait_until("a coordinator", Duration::from_secs(10), || async {
        let view = testkit_view(&c).await?;
        view.coordinator
    })
    .await;
    c.node(&coordinator).kill9();
    let done = wait_job(&jobs, &id, Duration::from_secs(180)).await;
    check_results(&fs, &done).await;
}

async fn testkit_view(c: &Cluster) -> Option<bus_schemas::membership::ViewSnapshot> {
    bus_client::request(
        &c.client,
        bus_schemas::subjects::members_list(),
        &bus_schemas::membership::ViewRequest {
            from: "test".into(),
        },
        Duration::from_secs(2),
    )
    .await
    .ok()
}

#[tokio::test]
async fn bad_serve_jobs_are_refused_with_a_reason() {
    let (_c, fs, jobs) = setup(3).await;
    let refused = |r: Result<String, bus_client::jobs::JobsError>| match r {
        Err(bus_client::jobs::JobsError::Refused { message, .. }) => message,
        other => panic!("expected a refusal: {other:?}"),
    };
    let msg = refused(jobs.submit(serve("nope", 8)).await);
    assert!(msg.contains("unknown model \"nope\""), "{msg}");
    let msg = refused(jobs.submit(serve("fixture", 0)).await);
    assert!(msg.contains("batch size must be between 1"), "{msg}");
    let JobSpec::Serve(mut s) = serve("fixture", 8) else {
        unreachable!()
    };
    s.split = "validation".into();
    let msg = refused(jobs.submit(JobSpec::Serve(s)).await);
    assert!(msg.contains("no split \"validation\""), "{msg}");
    // A model file that no worker can load fails the job with the workers' reason.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk"), b"definitely not a model").unwrap();
    fs.put(&dir.path().join("junk"), "models/broken", None)
        .await
        .unwrap();
    let JobSpec::Serve(mut s) = serve("broken", 8) else {
        unreachable!()
    };
    s.dataset = "fm".into();
    let id = jobs.submit(JobSpec::Serve(s)).await.unwrap();
    let done = wait_job(&jobs, &id, Duration::from_secs(60)).await;
    assert_eq!(done.state, JobState::Failed);
    let error = done.error.unwrap();
    assert!(error.contains("not an IDunno model file"), "{error}");
}

#[tokio::test]
async fn a_serve_job_survives_a_frozen_worker_and_a_batch_size_change() {
    let (c, fs, jobs) = setup(4).await;
    let id = jobs.submit(serve("fixture", 20)).await.unwrap();
    wait_done(&c, &jobs, &id, 1000).await;
    let changed = jobs.batch(&id, 50).await.unwrap();
    assert_eq!(changed.serve.as_ref().unwrap().batch, 50);
    let job = wait_done(&c, &jobs, &id, 3000).await;
    let coordinator = testkit_view(&c).await.and_then(|v| v.coordinator);
    let frozen = job
        .serve
        .as_ref()
        .unwrap()
        .workers
        .iter()
        .find(|w| Some(*w) != coordinator.as_ref())
        .unwrap()
        .clone();
    let node = c.nodes.iter().find(|n| n.id == frozen).unwrap();
    node.freeze();
    let done = wait_job(&jobs, &id, Duration::from_secs(240)).await;
    node.thaw();
    check_results(&fs, &done).await;
    let state = done.serve.as_ref().unwrap();
    assert!(
        state.next_batch < 500,
        "batches of 50 were cut after the change: {}",
        state.next_batch
    );
}

#[tokio::test]
async fn a_serve_job_survives_three_nodes_killed_at_once_with_the_coordinator() {
    let (mut c, fs, jobs) = setup(6).await;
    let id = jobs.submit(serve("fixture", 20)).await.unwrap();
    wait_done(&c, &jobs, &id, 2000).await;
    let coordinator = testkit_view(&c).await.and_then(|v| v.coordinator).unwrap();
    let mut victims = vec![coordinator.clone()];
    victims.extend(c.others(&[&coordinator]).into_iter().take(2));
    for v in &victims {
        c.node(v).kill9();
    }
    let done = wait_job(&jobs, &id, Duration::from_secs(240)).await;
    check_results(&fs, &done).await;
}

#[tokio::test]
async fn a_serve_job_survives_a_nats_server_restart() {
    let (mut c, fs, jobs) = setup(4).await;
    let id = jobs.submit(serve("fixture", 20)).await.unwrap();
    wait_done(&c, &jobs, &id, 2000).await;
    c.nats.restart();
    // Diagnostics: if the job stalls, show the tails of the node logs before failing.
    let mut last = (0, std::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(job) = jobs.get(&id).await else {
            continue;
        };
        if job.state.is_final() {
            break;
        }
        let done = job.serve.as_ref().map_or(0, |s| s.done);
        if done != last.0 {
            last = (done, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(90) {
            print_logs(&c);
            panic!("stalled at {done} queries: {job:?}");
        }
    }
    let done = wait_job(&jobs, &id, Duration::from_secs(240)).await;
    check_results(&fs, &done).await;
}
