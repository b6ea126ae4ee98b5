//! The several-machines acceptance workload: on three machines with two nodes each, files put,
//! a training job with checkpoints, a continuous inference job and a 30 MB put in flight, while
//! one machine is killed whole or cut off for 20 s. Nothing acknowledged is lost, the training
//! job resumes from its checkpoint, every query is answered exactly once (from the streams),
//! and only the lost machine's nodes are failed.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::{SdfsClient, SdfsError};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, TrainSpec};
use bus_schemas::membership::MemberState;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testkit::views::{declared_failed, wait_all_see};
use testkit::wait_until;
use tokio::task::JoinHandle;

mod common;

use common::machines::three_machines;

/// The work running when a machine goes.
struct Workload {
    jobs: JobsClient,
    /// Files put before, with their bytes.
    before: Vec<(String, Vec<u8>)>,
    train: String,
    serve: String,
    /// The 30 MB put in flight, and its bytes.
    big: JoinHandle<Result<u64, SdfsError>>,
    big_bytes: Vec<u8>,
    dir: tempfile::TempDir,
}

const BIG: &str = "work/big";

/// Which machine (0, 1, 2) node `id` is on.
fn machine_of(id: &str) -> usize {
    usize::from(id.as_bytes()[0] - b'a')
}

/// Starts the workload through `client` and returns once the training job has a checkpoint,
/// the inference job answers, and the 30 MB put is under way.
async fn start(client: &async_nats::Client) -> Workload {
    let (fs, jobs) = testkit::import_fashion(client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let dir = tempfile::tempdir().unwrap();
    let mut before = Vec::new();
    for i in 0..5u32 {
        let bytes: Vec<u8> = (0..300_000u32).map(|k| (k * 31 + i) as u8).collect();
        let path = dir.path().join(format!("before{i}"));
        std::fs::write(&path, &bytes).unwrap();
        let name = format!("work/before{i}");
        fs.put(&path, &name, None).await.unwrap();
        before.push((name, bytes));
    }
    let train = jobs
        .submit(JobSpec::Train(TrainSpec {
            arch: "cnn".into(),
            name: "cnn-work".into(),
            dataset: "fm".into(),
            epochs: 4,
            batch: 64,
            lr: None,
            limit: Some(3000),
            seed: 1,
            workers: 1,
        }))
        .await
        .unwrap();
    let serve = jobs
        .submit(testkit::serve_spec("fixture", None))
        .await
        .unwrap();
    wait_until("a checkpoint", Duration::from_secs(180), || async {
        let job = jobs.get(&train).await.ok()?;
        assert!(!job.state.is_final(), "ended before a checkpoint: {job:?}");
        (job.checkpoint_epochs >= 1).then_some(())
    })
    .await;
    wait_until("queries answered", Duration::from_secs(120), || async {
        let job = jobs.get(&serve).await.ok()?;
        (job.serve?.done >= 1000).then_some(())
    })
    .await;
    let big_bytes: Vec<u8> = (0..30_000_000u32).map(|k| (k ^ (k >> 9)) as u8).collect();
    let path: PathBuf = dir.path().join("big");
    std::fs::write(&path, &big_bytes).unwrap();
    let put = fs.clone();
    let big = tokio::spawn(async move { put.put(&path, BIG, None).await });
    Workload {
        jobs,
        before,
        train,
        serve,
        big,
        big_bytes,
        dir,
    }
}

impl Workload {
    /// The training job's current worker.
    async fn trainer(&self) -> String {
        let job = self.jobs.get(&self.train).await.unwrap();
        job.current().unwrap().worker.clone()
    }

    /// Queries answered by the inference job so far.
    async fn done(&self, jobs: &JobsClient) -> u64 {
        let job = jobs.get(&self.serve).await.ok();
        job.and_then(|j| j.serve).map_or(0, |s| s.done)
    }

    /// Checks through `client` (a machine that stayed): the files put before and the 30 MB put
    /// (if it reported success) read back byte-identical, once each; the training job finished,
    /// resumed from its checkpoint; the inference job, cancelled, answered every query once.
    async fn check(self, client: &async_nats::Client) {
        let fs = SdfsClient::new(client.clone(), Duration::from_secs(20));
        let jobs = JobsClient::new(client.clone(), Duration::from_secs(10));
        let big = self.big.await.unwrap();
        eprintln!("the 30 MB put in flight: {big:?}");
        let mut expected = self.before.clone();
        if big.is_ok() {
            expected.push((BIG.to_string(), self.big_bytes.clone()));
        }
        let out = self.dir.path().join("out");
        for (name, bytes) in &expected {
            let _ = std::fs::remove_file(&out);
            let what = format!("{name} reads back");
            wait_until(&what, Duration::from_secs(60), || async {
                fs.get(name, None, &out, None).await.ok()
            })
            .await;
            assert!(std::fs::read(&out).unwrap() == *bytes, "{name} differs");
            // Right after a heal the buckets may still be electing leaders (4–9 s).
            let info = wait_until("the file is listed", Duration::from_secs(30), || async {
                fs.ls(name).await.ok()
            })
            .await;
            assert_eq!(
                info[0].versions.len(),
                1,
                "{name}: one version, not lost or doubled"
            );
        }
        let trained = common::wait_job(&jobs, &self.train, Duration::from_secs(600)).await;
        check_resumed(&trained);
        let serve = self.serve.clone();
        let cancelled = jobs.cancel(&serve).await.unwrap();
        assert!(!cancelled.state.is_final() || cancelled.state == JobState::Cancelled);
        let job = common::wait_job(&jobs, &serve, Duration::from_secs(60)).await;
        assert_eq!(job.state, JobState::Cancelled, "{job:?}");
        check_answers(client, &job).await;
    }
}

/// The training job succeeded in a later attempt that resumed after epoch 0.
fn check_resumed(job: &JobRecord) {
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(job.attempts.len() >= 2, "{:?}", job.attempts);
    let last = job.attempts.last().unwrap();
    let resumed = last.resumed_at_epoch.expect("the last attempt started");
    assert!(
        resumed >= 1,
        "resumed at epoch {resumed}, i.e. from scratch"
    );
}

/// Every answer counted once (from the streams) and PyTorch's prediction for its sample.
async fn check_answers(client: &async_nats::Client, job: &JobRecord) {
    let answers = testkit::served_once(client, job).await;
    let expected = common::expected();
    let n = expected.predicted.len() as u64;
    for (q, r) in &answers {
        assert_eq!(r.sample, q % n, "query {q}");
        assert_eq!(
            r.predicted, expected.predicted[r.sample as usize],
            "query {q}"
        );
    }
    eprintln!("{} queries, each answered once", answers.len());
}

/// The coordinator as node `observer` sees it.
async fn coordinator(client: &async_nats::Client, observer: &str) -> Option<String> {
    let req = bus_schemas::control::ControlRequest::Members;
    match testkit::views::control(client, observer, req).await {
        Some(bus_schemas::control::ControlReply::Members { coordinator, .. }) => coordinator,
        _ => None,
    }
}

#[tokio::test]
async fn a_machine_killed_whole_under_load_loses_nothing() {
    let (mut m, _) = three_machines().await;
    let client = m.client().await;
    let work = start(&client).await;
    // The training worker's machine goes: its job must resume elsewhere.
    let lost_machine = machine_of(&work.trainer().await);
    let stay = (lost_machine + 1) % 3;
    let check = m.client_of(stay).await;
    let (lost, kept) = (m.ids_on(lost_machine), {
        let mut v = m.ids();
        v.retain(|id| machine_of(id) != lost_machine);
        v
    });
    let observer = kept[0].clone();
    let before = coordinator(&check, &observer).await;
    let jobs = JobsClient::new(check.clone(), Duration::from_secs(10));
    let done_then = work.done(&jobs).await;
    let killed = Instant::now();
    m.kill(lost_machine);
    wait_all_see(
        &check,
        &kept,
        &lost,
        MemberState::Failed,
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "lost machine's nodes failed everywhere after {:?}",
        killed.elapsed()
    );
    let wrongly = declared_failed(&check, &kept, &kept, Duration::from_secs(20)).await;
    assert!(
        wrongly.is_empty(),
        "only the lost machine's nodes are failed: {wrongly:?}"
    );
    let after = wait_until(
        "a coordinator that stayed",
        Duration::from_secs(30),
        || async {
            coordinator(&check, &observer)
                .await
                .filter(|c| machine_of(c) != lost_machine)
        },
    )
    .await;
    eprintln!("coordinator {before:?} -> {after}");
    wait_until(
        "the inference job goes on",
        Duration::from_secs(120),
        || async { (work.done(&jobs).await > done_then + 2000).then_some(()) },
    )
    .await;
    work.check(&check).await;
}

#[tokio::test]
async fn a_machine_cut_off_under_load_commits_nothing_and_rejoins() {
    let (m, _) = three_machines().await;
    let client = m.client().await;
    let work = start(&client).await;
    let cut_machine = machine_of(&work.trainer().await);
    let stay = (cut_machine + 1) % 3;
    let check = m.client_of(stay).await;
    let inside = m.client_inside(cut_machine);
    let (cut, kept) = (m.ids_on(cut_machine), {
        let mut v = m.ids();
        v.retain(|id| machine_of(id) != cut_machine);
        v
    });
    let jobs = JobsClient::new(check.clone(), Duration::from_secs(10));
    let done_then = work.done(&jobs).await;
    m.cut(cut_machine);
    let cut_at = Instant::now();
    // The majority declares the cut-off nodes failed and goes on.
    wait_all_see(
        &check,
        &kept,
        &cut,
        MemberState::Failed,
        Duration::from_secs(15),
    )
    .await;
    // The cut-off side cannot commit a file version: a put through its own server fails.
    let minority = SdfsClient::new(inside.client.clone(), Duration::from_secs(5));
    let path = work.dir.path().join("minority");
    std::fs::write(&path, b"written on the cut-off side").unwrap();
    let put = tokio::time::timeout(
        Duration::from_secs(8),
        minority.put(&path, "work/minority", None),
    )
    .await;
    assert!(
        !matches!(put, Ok(Ok(_))),
        "a cut-off machine committed a put: {put:?}"
    );
    wait_until(
        "the inference job goes on",
        Duration::from_secs(30),
        || async { (work.done(&jobs).await > done_then + 1000).then_some(()) },
    )
    .await;
    // 20 s cut off, then healed: the cut-off nodes rejoin and every view agrees within 10 s.
    let left = Duration::from_secs(20).saturating_sub(cut_at.elapsed());
    tokio::time::sleep(left).await;
    m.heal(cut_machine);
    let healed = Instant::now();
    let all = m.ids();
    wait_all_see(
        &check,
        &all,
        &all,
        MemberState::Alive,
        Duration::from_secs(10),
    )
    .await;
    let agreed = healed.elapsed();
    // One coordinator, named by every node. The lease lives in a JetStream bucket, and the
    // server that rejoins forces an election in every Raft group it is in (its term grew while
    // it was alone, and nats-server has no pre-vote): 4–9 s without a leader can follow a heal.
    let one = wait_until(
        "every node names one coordinator",
        Duration::from_secs(30),
        || async {
            let mut named = std::collections::BTreeSet::new();
            for id in &all {
                named.insert(coordinator(&check, id).await?);
            }
            (named.len() == 1).then(|| named.pop_first()).flatten()
        },
    )
    .await;
    eprintln!(
        "every view agrees {agreed:?} after the heal; every node names coordinator {one} after {:?}",
        healed.elapsed()
    );
    let fs = SdfsClient::new(check.clone(), Duration::from_secs(10));
    assert!(
        fs.ls("work/minority").await.unwrap_or_default().is_empty(),
        "the cut-off side's put was committed"
    );
    drop(inside);
    work.check(&check).await;
}
