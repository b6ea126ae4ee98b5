//! Fair time: concurrent continuous inference jobs whose queries cost several times more or
//! less keep their query rates equal (or in the ratio of their weights).

mod common;

use bus_client::jobs::JobsClient;
use bus_schemas::jobs::QpsPolicy;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use testkit::{continuous, import_fashion, train_quick, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

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
async fn jobs_of_different_cost_get_equal_rates_weights_set_the_ratio_and_qps_local_divides_workers(
) {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "mlp", 256).await;
    train_quick(&jobs, "resnet", 256).await;
    let ids = vec![
        jobs.submit(continuous("mlp", 1)).await.unwrap(),
        jobs.submit(continuous("resnet", 1)).await.unwrap(),
    ];
    for w in rates(&jobs, &ids, 2).await {
        let ratio = w[0] / w[1];
        assert!(
            w[1] > 0.0 && (0.9..1.11).contains(&ratio),
            "equal weights, rates {w:?}"
        );
    }
    let stats: Vec<f64> = {
        let mut v = Vec::new();
        for id in &ids {
            let s = jobs.get(id).await.unwrap().serve.unwrap();
            let median = s.proc_ms.expect("batches were timed").median;
            v.push(median / f64::from(s.batch));
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
            w[1] > 0.0 && (1.8..2.22).contains(&ratio),
            "weights 2:1, rates {w:?}"
        );
    }
    for id in &ids {
        jobs.cancel(id).await.unwrap();
    }

    // qps local: each worker keeps to one job, and the costlier resnet gets more workers.
    assert_eq!(
        jobs.qps(Some(QpsPolicy::Local)).await.unwrap(),
        QpsPolicy::Local
    );
    let ids = vec![
        jobs.submit(continuous("mlp", 1)).await.unwrap(),
        jobs.submit(continuous("resnet", 1)).await.unwrap(),
    ];
    let workers = |ids: Vec<String>| {
        let jobs = jobs.clone();
        async move {
            let mut v = Vec::new();
            for id in &ids {
                v.push(jobs.get(id).await.ok()?.serve?.workers);
            }
            Some(v)
        }
    };
    let split = |w: &Vec<Vec<String>>| {
        w[0].iter().all(|x| !w[1].contains(x)) && w[0].len() == 1 && w[1].len() == 2
    };
    // The division is redone every 5 s as costs are measured: wait until it holds still.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last: Option<Vec<Vec<String>>> = None;
    let divided = loop {
        let w = workers(ids.clone()).await;
        if let Some(now) = w
            .as_ref()
            .filter(|now| Some(*now) == last.as_ref() && split(now))
        {
            break now.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "qps local never divided 1:2: {w:?}"
        );
        last = w;
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let before: Vec<u64> = done(&jobs, &ids).await;
    // Each worker keeps to its job: every answered batch from here on comes from its workers.
    let by_worker = |id: &String| {
        let jobs = jobs.clone();
        let id = id.clone();
        async move { jobs.get(&id).await.unwrap().serve.unwrap().by_worker }
    };
    let (mlp0, resnet0) = (by_worker(&ids[0]).await, by_worker(&ids[1]).await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (mlp1, resnet1) = (by_worker(&ids[0]).await, by_worker(&ids[1]).await);
    let grew = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
        b.iter()
            .filter(|(w, n)| a.get(*w).copied().unwrap_or(0) < **n)
            .map(|(w, _)| w.clone())
            .collect::<Vec<_>>()
    };
    let now = workers(ids.clone()).await.unwrap();
    let kept = grew(&mlp0, &mlp1).iter().all(|w| divided[0].contains(w))
        && grew(&resnet0, &resnet1)
            .iter()
            .all(|w| divided[1].contains(w));
    if now == divided && !kept {
        for n in &c.nodes {
            let log = std::fs::read_to_string(n.data_dir.join("stdout.log")).unwrap_or_default();
            for l in log.lines().filter(|l| l.contains("qps local")) {
                eprintln!("{}: {l}", n.id);
            }
        }
        panic!("workers strayed from {divided:?}: mlp {mlp0:?} -> {mlp1:?}, resnet {resnet0:?} -> {resnet1:?}");
    }
    let after = done(&jobs, &ids).await;
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "{before:?} {after:?}"
    );
    // Back to global: every worker serves both jobs again.
    jobs.qps(Some(QpsPolicy::Global)).await.unwrap();
    wait_until(
        "qps global shares every worker",
        Duration::from_secs(30),
        || async {
            let w = workers(ids.clone()).await?;
            (w[0].len() == 3 && w[1].len() == 3).then_some(())
        },
    )
    .await;
    for id in &ids {
        jobs.cancel(id).await.unwrap();
    }
}

async fn done(jobs: &JobsClient, ids: &[String]) -> Vec<u64> {
    let mut v = Vec::new();
    for id in ids {
        v.push(jobs.get(id).await.unwrap().serve.unwrap().done);
    }
    v
}
