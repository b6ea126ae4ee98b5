//! Fair time: concurrent continuous inference jobs whose queries cost several times more or
//! less keep their query rates equal (or in the ratio of their weights).

mod common;

use bus_client::jobs::JobsClient;
use bus_schemas::jobs::{JobSpec, JobState, ServeSpec, TrainSpec};
use common::wait_job;
use std::path::Path;
use std::time::Duration;
use testkit::{import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

async fn train(jobs: &JobsClient, arch: &str) {
    let spec = JobSpec::Train(TrainSpec {
        arch: arch.into(),
        name: arch.into(),
        dataset: "fm".into(),
        epochs: 1,
        batch: 64,
        lr: None,
        limit: Some(256),
        seed: 0,
    });
    let id = jobs.submit(spec).await.unwrap();
    assert_eq!(
        wait_job(jobs, &id, Duration::from_secs(120)).await.state,
        JobState::Succeeded
    );
}

fn continuous(model: &str, weight: u32) -> JobSpec {
    JobSpec::Serve(ServeSpec {
        model: model.into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        batch: 16,
        passes: None,
        weight,
    })
}

/// Queries each job answers in each of `windows` 10-second windows, after a 10 s warm-up.
async fn rates(jobs: &JobsClient, ids: &[String], windows: usize) -> Vec<Vec<f64>> {
    let done = |ids: &[String]| {
        let ids = ids.to_vec();
        let jobs = jobs.clone();
        async move {
            let mut v = Vec::new();
            for id in &ids {
                v.push(jobs.get(id).await.unwrap().serve.unwrap().done as f64);
            }
            v
        }
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut last = done(ids).await;
    let mut out = Vec::new();
    for _ in 0..windows {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = done(ids).await;
        out.push(now.iter().zip(&last).map(|(a, b)| (a - b) / 10.0).collect());
        last = now;
    }
    out
}

#[tokio::test]
async fn jobs_of_different_cost_get_equal_rates_and_weights_set_the_ratio() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    train(&jobs, "mlp").await;
    train(&jobs, "resnet").await;
    let ids = vec![
        jobs.submit(continuous("mlp", 1)).await.unwrap(),
        jobs.submit(continuous("resnet", 1)).await.unwrap(),
    ];
    for w in rates(&jobs, &ids, 2).await {
        let ratio = w[0] / w[1];
        assert!(
            w[1] > 0.0 && (0.75..1.33).contains(&ratio),
            "equal weights, rates {w:?}"
        );
    }
    let stats: Vec<f64> = {
        let mut v = Vec::new();
        for id in &ids {
            let s = jobs.get(id).await.unwrap().serve.unwrap();
            v.push(s.proc_ms[2] / f64::from(s.batch));
        }
        v
    };
    assert!(
        stats[1] > 3.0 * stats[0],
        "the resnet costs ≥ 3× per query: {stats:?}"
    );
    for id in &ids {
        jobs.cancel(id).await.unwrap();
    }
    let ids = vec![
        jobs.submit(continuous("mlp", 2)).await.unwrap(),
        jobs.submit(continuous("resnet", 1)).await.unwrap(),
    ];
    for w in rates(&jobs, &ids, 2).await {
        let ratio = w[0] / w[1];
        assert!(
            w[1] > 0.0 && (1.5..2.67).contains(&ratio),
            "weights 2:1, rates {w:?}"
        );
    }
    for id in &ids {
        jobs.cancel(id).await.unwrap();
    }
}
