//! Training benchmark (`make bench`): `cnn` and `resnet` trained to convergence on
//! Fashion-MNIST by the cluster (epochs, time, test accuracy, images/s per epoch). The speed
//! against PyTorch itself is the `pytorch` bench's.
//!
//! Knobs (environment): `BENCH_TRAIN_ARCHS` (default `cnn,resnet`), `BENCH_TRAIN_EPOCHS`
//! (default 5), `BENCH_THREADS` (default 2).

use bus_schemas::jobs::{JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use idunno_node::ml::arch::Arch;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn main() {
    if std::env::args().any(|a| a == "--list") {
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
    let threads_flag = threads.to_string();
    let c = Cluster::start_with(Path::new(NODE), 2, &["--threads", &threads_flag]).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    for arch_name in archs.split(',').filter(|a| !a.is_empty()) {
        Arch::parse(arch_name).expect("BENCH_TRAIN_ARCHS: mlp, cnn or resnet");
        let spec = JobSpec::Train(TrainSpec {
            arch: arch_name.into(),
            name: format!("{arch_name}-bench"),
            dataset: "fm".into(),
            epochs,
            batch: 128,
            lr: None,
            limit: None,
            seed: 0,
            workers: 1,
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
    }
}
