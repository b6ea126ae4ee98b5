//! Data-parallel training (`--workers N`) with a real nats-server, real nodes and real
//! Fashion-MNIST: the loss curve of N workers is the loss curve of one, step by step; a worker
//! killed or frozen mid-epoch is dropped and the others go on from the current step, with no
//! step lost or applied twice (the steps file and the curve show it).
//!
//! The curves are compared on `mlp` (no batch norm): with batch norm each worker normalises
//! with its shard's statistics, as PyTorch's DDP does without SyncBatchNorm, so `cnn`'s curve
//! is close but not equal to float tolerance.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn spec(workers: u32, epochs: u32, limit: u64) -> JobSpec {
    JobSpec::Train(TrainSpec {
        arch: "mlp".into(),
        name: format!("mlp-w{workers}"),
        dataset: "fm".into(),
        epochs,
        batch: 128,
        lr: None,
        limit: Some(limit),
        seed: 3,
        workers,
    })
}

async fn wait_job(jobs: &JobsClient, id: &str) -> JobRecord {
    let done = wait_until(
        &format!("job {id} ends"),
        Duration::from_secs(300),
        || async { jobs.get(id).await.ok().filter(|j| j.state.is_final()) },
    )
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    done
}

#[derive(Debug, serde::Deserialize)]
struct Step {
    step: u64,
    loss: Option<f32>,
    workers: u32,
}

/// The job's steps file, read from SDFS.
async fn steps(fs: &SdfsClient, job: &JobRecord) -> Vec<Step> {
    let outcome = job.outcome.as_ref().expect("an outcome");
    let name = outcome.steps_file.as_ref().expect("a steps file");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.jsonl");
    fs.get(name, None, &path, None).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every step once, in order, each with its loss; the losses within float tolerance of
/// `reference`'s for the first `strict` steps (a step lost or taken twice shows at once), then
/// within 2% (rounding differences of the sums grow over a hundred steps of SGD).
fn same_curve(got: &[Step], reference: &[Step], what: &str, strict: usize) {
    assert_eq!(got.len(), reference.len(), "{what}: steps");
    for (i, (g, r)) in got.iter().zip(reference).enumerate() {
        assert_eq!(g.step, i as u64, "{what}: step {i} is once, in order");
        let (g, r) = (g.loss.expect("a loss"), r.loss.expect("a loss"));
        let tolerance = if i < strict { 2e-3 } else { 2e-2 };
        assert!(
            (g - r).abs() <= tolerance * r.abs().max(1.0),
            "{what}: step {i}: loss {g} against {r} on one worker"
        );
    }
}

#[tokio::test]
async fn n_workers_take_the_same_steps_as_one() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    // 50 steps of 128.
    let one = jobs.submit(spec(1, 1, 6400)).await.unwrap();
    let one = steps(&fs, &wait_job(&jobs, &one).await).await;
    assert_eq!(one.len(), 50);
    for workers in [2, 3] {
        let id = jobs.submit(spec(workers, 1, 6400)).await.unwrap();
        let done = wait_job(&jobs, &id).await;
        let group = done.attempts[0].group.as_ref().expect("a group");
        assert_eq!(group.members.len(), workers as usize, "{done:?}");
        let got = steps(&fs, &done).await;
        assert!(
            got.iter().all(|s| s.workers == workers),
            "every step on {workers}"
        );
        same_curve(&got, &one, &format!("{workers} workers"), 50);
    }
}

/// Waits until the job's rank 0 reports a step after `p`'s from a newer group than `p`'s (the
/// group went on without a member: with one worker fewer, or as many if a free node joined at
/// once); the progress.
async fn going_on(sub: &mut async_nats::Subscriber, p: &Progress, limit: Duration) -> Progress {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, sub.next()).await;
        let msg =
            msg.unwrap_or_else(|_| panic!("no new group went on after step {}", p.global_step));
        let q: Progress = decode(&msg.expect("the subscription").payload).unwrap();
        if q.group_generation > p.group_generation && q.global_step > p.global_step {
            return q;
        }
    }
}

/// Waits until the job's rank 0 reports step `at` or later on `workers` workers; the progress.
async fn progress_at(
    sub: &mut async_nats::Subscriber,
    workers: u32,
    at: u64,
    limit: Duration,
) -> Progress {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, sub.next()).await;
        let msg = msg.unwrap_or_else(|_| panic!("no progress at step {at} on {workers} workers"));
        let p: Progress = decode(&msg.expect("the subscription").payload).unwrap();
        if p.workers == workers && p.global_step >= at {
            return p;
        }
    }
}

/// A 3-worker job of 2 epochs of 100 steps at its step 30, and the same on one worker.
struct Started {
    reference: Vec<Step>,
    id: String,
    progress: async_nats::Subscriber,
    p: Progress,
}

async fn three_at_step_30(c: &Cluster, fs: &SdfsClient, jobs: &JobsClient) -> Started {
    let reference = jobs.submit(spec(1, 2, 12_800)).await.unwrap();
    let reference = steps(fs, &wait_job(jobs, &reference).await).await;
    let id = jobs.submit(spec(3, 2, 12_800)).await.unwrap();
    let mut progress = c
        .client
        .subscribe(subjects::job_progress(&id))
        .await
        .unwrap();
    let p = progress_at(&mut progress, 3, 30, Duration::from_secs(120)).await;
    Started {
        reference,
        id,
        progress,
        p,
    }
}

#[tokio::test]
async fn a_worker_killed_mid_epoch_is_dropped_and_no_step_is_lost_or_doubled() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let Started {
        reference,
        id,
        mut progress,
        p,
    } = three_at_step_30(&c, &fs, &jobs).await;
    let job = jobs.get(&id).await.unwrap();
    let members = job
        .current()
        .and_then(|a| a.group.clone())
        .expect("a group");
    let victim = members.members[1].worker.clone();
    c.node(&victim).kill9();
    let killed = Instant::now();
    let after = going_on(&mut progress, &p, Duration::from_secs(60)).await;
    let took = killed.elapsed();
    eprintln!(
        "kill -9 of {victim} at step {}: going on with {} workers at step {} after {took:?}",
        p.global_step, after.workers, after.global_step
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let done = wait_job(&jobs, &id).await;
    let lost = &done.attempts.last().unwrap().group.as_ref().unwrap().lost;
    assert!(
        lost.iter().any(|l| l.worker == victim && l.died),
        "{lost:?}"
    );
    let got = steps(&fs, &done).await;
    // 3 workers, 2 after the kill, then 3 again when the free fourth node joins (it may join
    // in the very regroup that drops the victim: then no step is taken by 2).
    let stretches = stretches(&got);
    eprintln!("workers per stretch of steps: {stretches:?}");
    assert_eq!(stretches[0].0, 3, "{stretches:?}");
    assert!(stretches[0].1 >= p.global_step as usize, "{stretches:?}");
    assert!(
        stretches.iter().all(|s| (2..=3).contains(&s.0)),
        "{stretches:?}"
    );
    same_curve(
        &got,
        &reference,
        "3 workers, then 2",
        p.global_step as usize + 30,
    );
}

/// Runs of steps taken by the same number of workers: (workers, steps).
fn stretches(steps: &[Step]) -> Vec<(u32, usize)> {
    let mut out: Vec<(u32, usize)> = Vec::new();
    for s in steps {
        match out.last_mut() {
            Some((w, n)) if *w == s.workers => *n += 1,
            _ => out.push((s.workers, 1)),
        }
    }
    out
}

#[tokio::test]
async fn a_frozen_worker_is_dropped_the_others_go_on_and_it_may_join_again() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    let Started {
        reference,
        id,
        mut progress,
        p,
    } = three_at_step_30(&c, &fs, &jobs).await;
    // Rank 0 freezes (SIGSTOP): the others go on without it.
    let frozen = p.worker.clone();
    c.node(&frozen).freeze();
    let after = going_on(&mut progress, &p, Duration::from_secs(60)).await;
    assert_ne!(after.worker, frozen, "another worker is rank 0");
    c.node(&frozen).thaw();
    let done = wait_job(&jobs, &id).await;
    let got = steps(&fs, &done).await;
    eprintln!("workers per stretch of steps: {:?}", stretches(&got));
    same_curve(
        &got,
        &reference,
        "3 workers, one frozen",
        p.global_step as usize + 30,
    );
    let group = done.attempts.last().unwrap().group.clone().unwrap();
    assert!(group.lost.iter().any(|l| l.worker == frozen), "{group:?}");
}
