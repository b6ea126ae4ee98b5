//! Inference benchmark (`make bench`), in the README's "Measured figures" (the speed against
//! PyTorch itself is the `pytorch` bench's):
//! (b) on 4 nodes: each job's share when a second job arrives, the time until the second job's
//!     first result, the time to resume after a worker and after a coordinator `kill -9`;
//! (c) the largest rate difference of the two concurrent jobs over 10 s windows;
//! (d) `infer` latency of one image, idle and while both jobs run.
//!
//! Knobs (environment): `BENCH_KILLS` (default 3 of each kind), `BENCH_INFERS` (default 200).

use bus_client::jobs::JobsClient;
use bus_schemas::infer::{ByteBuf, InferErrorKind, InferReply, InferRequest};
use bus_schemas::subjects;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{
    collect_results, env_or, import_fashion, serve_spec, train_quick, wait_until, Cluster, Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("## Inference benchmark\n");
    rt.block_on(sharing_and_failover());
}

/// Queries each job answered per second over the last `secs` seconds.
async fn rates(jobs: &JobsClient, ids: &[String], secs: u64) -> Vec<f64> {
    let done = || async {
        let mut v = Vec::new();
        for id in ids {
            v.push(jobs.get(id).await.unwrap().serve.unwrap().done as f64);
        }
        v
    };
    let before = done().await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = done().await;
    let took = started.elapsed().as_secs_f64();
    after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / took)
        .collect()
}

/// Per-query cost (median batch time / batch) of each job.
async fn costs(jobs: &JobsClient, ids: &[String]) -> Vec<f64> {
    let mut v = Vec::new();
    for id in ids {
        let s = jobs.get(id).await.unwrap().serve.unwrap();
        v.push(s.proc_ms.map_or(0.0, |p| p.median) / f64::from(s.batch));
    }
    v
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// (d): one-image `infer` latencies in milliseconds (p50, p99) of the answered requests, and how
/// many were shed (`overloaded`: online work past its share while jobs run, by design).
async fn infer_latency(c: &Cluster, png: &[u8], n: usize) -> (f64, f64, usize) {
    let mut ms = Vec::with_capacity(n);
    let mut shed = 0;
    for _ in 0..n {
        let req = InferRequest {
            labels: Vec::new(),
            model: "cnn".into(),
            version: None,
            images: vec![ByteBuf::from(png.to_vec())],
            timeout_ms: 10_000,
            tensor: None,
        };
        let started = Instant::now();
        let reply: InferReply =
            bus_client::request(&c.client, subjects::infer(), &req, Duration::from_secs(15))
                .await
                .unwrap();
        match reply {
            InferReply::Done { .. } => ms.push(started.elapsed().as_secs_f64() * 1000.0),
            InferReply::Error {
                kind: InferErrorKind::Overloaded,
                ..
            } => shed += 1,
            other => panic!("{other:?}"),
        }
    }
    (pct(&mut ms, 0.5), pct(&mut ms, 0.99), shed)
}

/// Kills `victim` and returns the seconds until the service resumed: for a worker, until
/// every batch pending at the kill was answered; for the coordinator, until the first result
/// of a batch cut after the kill. The node is started again afterwards.
async fn kill_and_resume(
    c: &mut Cluster,
    jobs: &JobsClient,
    ids: &[String],
    seen: &Seen,
    victim: &str,
    is_coordinator: bool,
) -> f64 {
    c.node(victim).kill9();
    let killed = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "killed {victim} at {:.3} s since the epoch",
        wall.as_secs_f64()
    );
    let mut pending = Vec::new();
    let mut next = Vec::new();
    for id in ids {
        let s = jobs.get(id).await.unwrap().serve.unwrap();
        pending.push(s.pending.iter().map(|p| p.batch_id).collect::<Vec<u64>>());
        next.push(s.next_batch);
    }
    let resumed = wait_until("resume", Duration::from_secs(60), || async {
        if is_coordinator {
            let seen = seen.lock().unwrap();
            seen.iter()
                .filter(|(t, _, _)| *t > killed)
                .find(|(_, job, batch)| {
                    ids.iter().zip(&next).any(|(id, n)| id == job && batch >= n)
                })
                .map(|(t, _, _)| *t)
        } else {
            for (id, was) in ids.iter().zip(&pending) {
                let s = jobs.get(id).await.ok()?.serve?;
                if s.pending.iter().any(|p| was.contains(&p.batch_id)) {
                    return None;
                }
            }
            Some(Instant::now())
        }
    })
    .await;
    let secs = (resumed - killed).as_secs_f64();
    let i = c.nodes.iter().position(|n| n.id == victim).unwrap();
    c.nodes[i] = c.spawn_node(victim);
    c.wait_all_alive(Duration::from_secs(60)).await;
    // Wait until the restarted node serves again before the next kill.
    wait_until(
        "the restarted node serves",
        Duration::from_secs(60),
        || async {
            let j = jobs.get(&ids[0]).await.ok()?;
            j.serve?.workers.contains(&victim.to_string()).then_some(())
        },
    )
    .await;
    secs
}

/// (b), (c), (d) on four nodes of one tch thread each.
async fn sharing_and_failover() {
    let kills: usize = env_or("BENCH_KILLS", 3);
    let infers: usize = env_or("BENCH_INFERS", 200);
    println!(
        "### (b)–(d) four nodes, one tch thread each, `cnn` and `resnet` continuous, batch 64\n"
    );
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "cnn", 1000).await;
    train_quick(&jobs, "resnet", 1000).await;
    let png = {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
        let m = idunno_datasets::import_fashion_mnist(src, dir.path(), "fm").unwrap();
        let split = idunno_datasets::load_split(dir.path(), &m, "test").unwrap();
        let img = image::GrayImage::from_raw(28, 28, split.pixels[..784].to_vec()).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let (p50, p99, shed) = infer_latency(&c, &png, infers).await;
    println!("- (d) `infer` of one image, idle cluster ({infers} requests one after another): p50 **{p50:.1} ms**, p99 **{p99:.1} ms** ({shed} shed)");

    let seen = collect_results(&c.client).await;
    let a = jobs.submit(serve_spec("cnn", None)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let alone = rates(&jobs, std::slice::from_ref(&a), 10).await[0];
    let submitted = Instant::now();
    let b = jobs.submit(serve_spec("resnet", None)).await.unwrap();
    let first = wait_until(
        "the second job's first result",
        Duration::from_secs(60),
        || async {
            let seen = seen.lock().unwrap();
            seen.iter().find(|s| s.1 == b).map(|s| s.0)
        },
    )
    .await;
    let ids = vec![a.clone(), b.clone()];
    let arrival = rates(&jobs, &ids, 10).await;
    println!(
        "- (b) a second job arrives: its first result **{:.0} ms** after submission; `cnn` alone {alone:.0} q/s, then over the next 10 s `cnn` {:.0} q/s and `resnet` {:.0} q/s",
        (first - submitted).as_secs_f64() * 1000.0,
        arrival[0],
        arrival[1]
    );
    let mut worst: f64 = 0.0;
    let mut lines = Vec::new();
    for _ in 0..3 {
        let r = rates(&jobs, &ids, 10).await;
        let cost = costs(&jobs, &ids).await;
        let (ta, tb) = (r[0] * cost[0], r[1] * cost[1]);
        let diff = (r[0] - r[1]).abs() / r[0].max(r[1]);
        worst = worst.max(diff);
        lines.push(format!(
            "{:.0} / {:.0} q/s (diff {:.1}%, worker time {:.0}% / {:.0}%)",
            r[0],
            r[1],
            diff * 100.0,
            100.0 * ta / (ta + tb),
            100.0 * tb / (ta + tb)
        ));
    }
    println!(
        "- (b) shares in the 10 s windows after that, `cnn` / `resnet`: {}",
        lines.join("; ")
    );
    println!(
        "- (c) largest rate difference over those windows: **{:.1}%**",
        worst * 100.0
    );
    let (p50, p99, shed) = infer_latency(&c, &png, infers).await;
    println!(
        "- (d) `infer` of one image while both jobs run: p50 **{p50:.1} ms**, p99 **{p99:.1} ms** ({shed} of {infers} shed as overloaded)"
    );

    let mut worker_secs = Vec::new();
    let mut coord_secs = Vec::new();
    for _ in 0..kills {
        let coord = c.coordinator().await;
        let victim = c.ids().into_iter().find(|n| *n != coord).unwrap();
        worker_secs.push(kill_and_resume(&mut c, &jobs, &ids, &seen, &victim, false).await);
        let coord = c.coordinator().await;
        coord_secs.push(kill_and_resume(&mut c, &jobs, &ids, &seen, &coord, true).await);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{:.2} s", s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "- (b) resume after `kill -9` of a worker (every batch pending at the kill answered): {}",
        show(&worker_secs)
    );
    println!(
        "- (b) resume after `kill -9` of the coordinator (first result of a batch cut by the new one): {}",
        show(&coord_secs)
    );
    for id in &ids {
        jobs.cancel(id).await.unwrap();
    }
}
