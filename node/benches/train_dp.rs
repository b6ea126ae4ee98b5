//! Data-parallel training benchmark (`make bench`): a 4-node cluster, each node `--threads 1`.
//!
//! 1. Speed: `cnn` images/s with 1, 2 and 3 workers, side by side in interleaved rounds, from
//!    rank 0's progress over the steps after the first fifth; the all-reduce's share of step
//!    time. With the full PyTorch installed (`infra/pytorch.sh`), PyTorch's DDP (gloo, CPU) on
//!    the same model, batch and threads, in the same rounds.
//! 2. Accuracy: `cnn` for 5 epochs on all of Fashion-MNIST with 2 and with 3 workers.
//! 3. Elastic: the same with 3 workers, one killed (`kill -9`) in the second epoch: how soon the
//!    others go on with 2, the steps file (every step once), the final accuracy.
//!
//! Knobs (environment): `BENCH_DP_ROUNDS` (2), `BENCH_DP_LIMIT` (19200 samples for the speed
//! runs), `BENCH_DP_EPOCHS` (5; 0 skips parts 2 and 3), `BENCH_DP_PYTORCH` (1; 0 skips DDP).

use bus_client::jobs::JobsClient;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const BATCH: u32 = 128;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(bench());
}

fn spec(workers: u32, epochs: u32, limit: Option<u64>) -> JobSpec {
    JobSpec::Train(TrainSpec {
        arch: "cnn".into(),
        name: format!("cnn-dp{workers}"),
        dataset: "fm".into(),
        epochs,
        batch: BATCH,
        lr: None,
        limit,
        seed: 0,
        workers,
    })
}

/// A finished run: its record and rank 0's progress messages with when they came.
struct Run {
    job: JobRecord,
    progress: Vec<(Instant, Progress)>,
    started: Instant,
}

async fn run(c: &Cluster, jobs: &JobsClient, spec: JobSpec, mut on: impl FnMut(&Progress)) -> Run {
    let started = Instant::now();
    let id = jobs.submit(spec).await.unwrap();
    let mut sub = c
        .client
        .subscribe(subjects::job_progress(&id))
        .await
        .unwrap();
    let mut progress = Vec::new();
    let job = loop {
        tokio::select! {
            Some(msg) = sub.next() => {
                let p: Progress = decode(&msg.payload).unwrap();
                on(&p);
                progress.push((Instant::now(), p));
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let job = jobs.get(&id).await.unwrap();
                if job.state.is_final() {
                    break job;
                }
            }
        }
    };
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    Run {
        job,
        progress,
        started,
    }
}

impl Run {
    /// Images/s over the steps after the first fifth, and the mean all-reduce share there.
    fn rate(&self) -> (f64, f64) {
        let total = self
            .progress
            .iter()
            .map(|(_, p)| p.global_step)
            .max()
            .unwrap_or(0);
        let window: Vec<&(Instant, Progress)> = (self.progress.iter())
            .filter(|(_, p)| p.global_step * 5 >= total && p.global_step < total)
            .collect();
        let (Some(first), Some(last)) = (window.first(), window.last()) else {
            return (0.0, 0.0);
        };
        let steps = last.1.global_step - first.1.global_step;
        let secs = last.0.duration_since(first.0).as_secs_f64().max(1e-9);
        let share =
            window.iter().map(|(_, p)| p.allreduce_share).sum::<f64>() / window.len() as f64;
        (steps as f64 * f64::from(BATCH) / secs, share)
    }

    fn accuracy(&self) -> f64 {
        self.job
            .outcome
            .as_ref()
            .and_then(|o| o.test_accuracy)
            .unwrap_or(0.0)
            * 100.0
    }
}

async fn bench() {
    let rounds: usize = env_or("BENCH_DP_ROUNDS", 2);
    let limit: u64 = env_or("BENCH_DP_LIMIT", 19_200);
    let epochs: u32 = env_or("BENCH_DP_EPOCHS", 5);
    let with_torch: u32 = env_or("BENCH_DP_PYTORCH", 1);
    println!(
        "## Data-parallel training benchmark (4 nodes, --threads 1 each, cnn, batch {BATCH})\n"
    );
    let mut c = Cluster::start_with(Path::new(NODE), 4, &["--threads", "1"]).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    let torch = (with_torch == 1).then(testkit::pytorch::PyTorch::install);
    speed(&c, &jobs, rounds, limit, torch.as_ref()).await;
    if epochs == 0 {
        return;
    }
    for workers in [2, 3] {
        let r = run(&c, &jobs, spec(workers, epochs, None), |_| {}).await;
        println!(
            "- `cnn`, {epochs} epochs on {workers} workers: test accuracy **{:.2}%** in {:.0} s",
            r.accuracy(),
            r.started.elapsed().as_secs_f64()
        );
    }
    elastic(&mut c, &jobs, epochs).await;
}

async fn speed(
    c: &Cluster,
    jobs: &JobsClient,
    rounds: usize,
    limit: u64,
    torch: Option<&testkit::pytorch::PyTorch>,
) {
    let mut rates: Vec<Vec<(f64, f64)>> = vec![Vec::new(); 3];
    let mut ddp: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let steps = (limit / u64::from(BATCH)).to_string();
    for round in 0..rounds {
        for workers in 1..=3u32 {
            let r = run(c, jobs, spec(workers, 1, Some(limit)), |_| {}).await;
            let (rate, share) = r.rate();
            println!(
                "  round {round}: {workers} worker(s): {rate:.0} img/s, all-reduce {:.1}%",
                share * 100.0
            );
            rates[workers as usize - 1].push((rate, share));
            if let Some(t) = torch {
                let args = [
                    "ddp",
                    "cnn",
                    "--workers",
                    &workers.to_string(),
                    "--batch",
                    "128",
                    "--steps",
                    &steps,
                ];
                let figure = t.figure(&args, "images_per_s");
                println!("  round {round}: PyTorch DDP, {workers} process(es): {figure:.0} img/s");
                ddp[workers as usize - 1].push(figure);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => 0.0,
            n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            n => v[n / 2],
        }
    };
    let mut one: Vec<f64> = rates[0].iter().map(|r| r.0).collect();
    let base = median(&mut one);
    println!("\n| workers | IDunno img/s | × 1 worker | all-reduce share | PyTorch DDP img/s | × 1 process |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let torch_base = median(&mut ddp[0].clone());
    for (i, r) in rates.iter().enumerate() {
        let mut v: Vec<f64> = r.iter().map(|x| x.0).collect();
        let mut s: Vec<f64> = r.iter().map(|x| x.1).collect();
        let (rate, share) = (median(&mut v), median(&mut s));
        let t = median(&mut ddp[i].clone());
        let (tr, tx) = match torch {
            Some(_) => (
                format!("{t:.0}"),
                format!("{:.2}", t / torch_base.max(1e-9)),
            ),
            None => ("—".into(), "—".into()),
        };
        println!(
            "| {} | {rate:.0} | **{:.2}** | {:.1}% | {tr} | {tx} |",
            i + 1,
            rate / base.max(1e-9),
            share * 100.0
        );
    }
    println!();
}

async fn elastic(c: &mut Cluster, jobs: &JobsClient, epochs: u32) {
    let steps_per_epoch = 60_000u64.div_ceil(u64::from(BATCH));
    let started = Instant::now();
    let id = jobs.submit(spec(3, epochs, None)).await.unwrap();
    let mut sub = c
        .client
        .subscribe(subjects::job_progress(&id))
        .await
        .unwrap();
    // Kill a member other than rank 0 halfway through the second epoch.
    let at = steps_per_epoch + steps_per_epoch / 2;
    let (victim, killed_at) = loop {
        let msg = sub.next().await.expect("progress");
        let p: Progress = decode(&msg.payload).unwrap();
        if p.workers == 3 && p.global_step >= at {
            let job = jobs.get(&id).await.unwrap();
            let group = job
                .current()
                .and_then(|a| a.group.clone())
                .expect("a group");
            break (group.members[1].worker.clone(), p.global_step);
        }
    };
    c.node(&victim).kill9();
    let killed = Instant::now();
    let resumed = loop {
        let msg = sub.next().await.expect("progress");
        let p: Progress = decode(&msg.payload).unwrap();
        if p.workers == 2 && p.global_step > killed_at {
            break p;
        }
    };
    let took = killed.elapsed();
    let job = loop {
        let job = jobs.get(&id).await.unwrap();
        if job.state.is_final() {
            break job;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let acc = job
        .outcome
        .as_ref()
        .and_then(|o| o.test_accuracy)
        .unwrap_or(0.0)
        * 100.0;
    println!(
        "- elastic: `kill -9` of {victim} at step {killed_at} (3 workers): going on with 2 at step {} after **{:.2} s**; {epochs} epochs, test accuracy **{acc:.2}%** in {:.0} s",
        resumed.global_step,
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
