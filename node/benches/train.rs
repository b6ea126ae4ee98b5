//! Training benchmark (`make bench`): `cnn` and `resnet` trained to convergence on
//! Fashion-MNIST by the cluster (epochs, time, test accuracy), and the training throughput of
//! IDunno's `cnn` job against the same tch training loop in a bare process (this binary started
//! again with `BENCH_BARE_ARCH` set: no runtime, no bus), same threads, same run. The bare loop
//! is measured before and after the job; the mean is the reference.
//!
//! Knobs (environment): `BENCH_TRAIN_ARCHS` (default `cnn,resnet`), `BENCH_TRAIN_EPOCHS`
//! (default 5), `BENCH_THREADS` (default 2).

use bus_schemas::jobs::{JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use idunno_node::ml::arch::Arch;
use idunno_node::ml::model::Model;
use idunno_node::ml::modelfile::{Header, Payload};
use idunno_node::ml::train::{Samples, Schedule, Trainer};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// Images per second of one epoch of the bare training loop (same code as the worker's).
fn bare_epoch(arch: Arch, dir: &Path, m: &idunno_datasets::Manifest, threads: i32) -> f64 {
    tch::set_num_threads(threads);
    let split = idunno_datasets::load_split(dir, m, "train").unwrap();
    let header = Header {
        payload: Payload::Weights,
        arch: String::new(),
        dataset: m.name.clone(),
        classes: m.classes.clone(),
        shape: m.shape,
        mean: m.mean.clone(),
        std: m.std.clone(),
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: None,
        payload_sha256: String::new(),
    };
    tch::manual_seed(0);
    let model = Model::builtin(arch, header, tch::Device::Cpu);
    let schedule = Schedule {
        epochs: 5,
        batch: 128,
        lr: arch.default_lr(),
        seed: 0,
    };
    let mut t = Trainer::new(model, Samples::from_split(&split, None), schedule).unwrap();
    t.run_epoch(0, &mut |_| true).unwrap().images_per_s
}

/// Runs one bare epoch in a fresh process of this binary; returns its images/s.
fn bare_process(arch: &str, dir: &Path, threads: i32) -> f64 {
    testkit::rerun_self(&[
        ("BENCH_BARE_ARCH", arch.to_string()),
        ("BENCH_BARE_DIR", dir.display().to_string()),
        ("BENCH_THREADS", threads.to_string()),
    ])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let (Ok(arch), Ok(dir)) = (
        std::env::var("BENCH_BARE_ARCH"),
        std::env::var("BENCH_BARE_DIR"),
    ) {
        let dir = Path::new(&dir);
        let m = idunno_datasets::Manifest::read(dir).unwrap();
        let arch = Arch::parse(&arch).unwrap();
        println!("{}", bare_epoch(arch, dir, &m, env_or("BENCH_THREADS", 2)));
        return;
    }
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(cluster_bench());
}

async fn cluster_bench() {
    let archs: String = env_or("BENCH_TRAIN_ARCHS", "cnn,resnet".to_string());
    let epochs: u32 = env_or("BENCH_TRAIN_EPOCHS", 5);
    let threads: i32 = env_or("BENCH_THREADS", 2);
    println!("## Training benchmark ({threads} tch threads, Fashion-MNIST, batch 128)\n");
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
    idunno_datasets::import_fashion_mnist(src, dir.path(), "fm").unwrap();
    let threads_flag = threads.to_string();
    let c = Cluster::start_with(Path::new(NODE), 2, &["--threads", &threads_flag]).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    for arch_name in archs.split(',').filter(|a| !a.is_empty()) {
        let arch = Arch::parse(arch_name).expect("BENCH_TRAIN_ARCHS: mlp, cnn or resnet");
        let compare = arch == Arch::Cnn;
        let before = compare.then(|| bare_process(arch_name, dir.path(), threads));
        let spec = JobSpec::Train(TrainSpec {
            arch: arch_name.into(),
            name: format!("{arch_name}-bench"),
            dataset: "fm".into(),
            epochs,
            batch: 128,
            lr: None,
            limit: None,
            seed: 0,
        });
        let started = Instant::now();
        let id = jobs.submit(spec).await.unwrap();
        let mut progress = c
            .client
            .subscribe(subjects::job_progress(&id))
            .await
            .unwrap();
        let mut rates = Vec::new();
        let job = loop {
            tokio::select! {
                Some(msg) = progress.next() => {
                    let p: Progress = decode(&msg.payload).unwrap();
                    if p.step == p.steps && rates.len() <= p.epoch as usize {
                        println!("  {arch_name} epoch {}/{}: loss {:.4}, train acc {:.2}%, {:.0} img/s, {:.0} s",
                            p.epoch + 1, p.epochs, p.loss, p.accuracy * 100.0, p.images_per_s, started.elapsed().as_secs_f64());
                        rates.push(p.images_per_s);
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let job = jobs.get(&id).await.unwrap();
                    if job.state.is_final() {
                        break job;
                    }
                }
            }
        };
        let took = started.elapsed();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let acc = job.outcome.as_ref().and_then(|o| o.test_accuracy).unwrap();
        println!(
            "- `{arch_name}`: {epochs} epochs in {:.0} s (job submitted to model stored), test accuracy **{:.2}%**",
            took.as_secs_f64(),
            acc * 100.0
        );
        if let Some(before) = before {
            let after = bare_process(arch_name, dir.path(), threads);
            let bare = (before + after) / 2.0;
            let mut sorted = rates.clone();
            sorted.sort_by(f64::total_cmp);
            let job_rate = sorted[sorted.len() / 2];
            println!(
                "- `{arch_name}` training throughput: IDunno job {job_rate:.0} img/s (median epoch) vs bare tch loop {bare:.0} img/s (before {before:.0}, after {after:.0}): ratio **{:.3}**",
                job_rate / bare
            );
        }
    }
}
