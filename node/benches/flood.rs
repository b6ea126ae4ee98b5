//! Flood benchmark (`make bench`), issue 11's acceptance item: a serve job's rate while the
//! cluster is flooded with online inference requests at 10x what it answers, against its rate
//! without the flood, in interleaved rounds (medians); with the share of requests shed as
//! `overloaded` and every node's peak resident memory.
//!
//! Knobs (environment): `BENCH_ROUNDS` (default 5), `BENCH_PASSES` (default 10 passes over the
//! 10000 test images per job), `BENCH_FLOOD_X` (default 10: the flood's rate over the measured
//! online capacity), `BENCH_NODE` (another `idunno-node` binary to run the nodes with, e.g. an
//! earlier commit's from `infra/build-base.sh`, for a comparison with the same load generator),
//! `BENCH_OPEN` (`1`: an open nats-server, no TLS and no users, as before clusters were secure
//! by default; the default is a secure one, as `idunno local up` starts).

#[path = "../tests/common/mod.rs"]
mod common;

use bus_client::jobs::JobsClient;
use bus_schemas::infer::{ByteBuf, InferErrorKind, InferReply, InferRequest};
use bus_schemas::jobs::JobState;
use bus_schemas::serve::ResultsBatch;
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::procstat::{cpu_seconds, rss_kib};
use testkit::{env_or, import_fashion, median, serve_spec, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

#[derive(Default)]
struct Tally {
    done: AtomicU64,
    overloaded: AtomicU64,
    /// Answered "no responders" by NATS: every node had left the queue group to shed load.
    no_room: AtomicU64,
    /// Answered `timeout` by a node (taken in, not run by its deadline).
    timeout: AtomicU64,
    /// Not answered at all within 10 s of the flood's end.
    lost: AtomicU64,
    other: AtomicU64,
    sent: AtomicU64,
}

/// One request of 16 small PNGs, encoded once.
fn request() -> bytes::Bytes {
    let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * y) % 256) as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let req = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: vec![ByteBuf::from(png.into_inner()); 16],
        timeout_ms: 5_000,
        tensor: None,
    };
    bus_schemas::encode(&req).unwrap().into()
}

fn tally_reply(payload: &[u8], tally: &Tally) {
    let counter = match decode::<InferReply>(payload) {
        Ok(InferReply::Done { .. }) => &tally.done,
        Ok(InferReply::Error {
            kind: InferErrorKind::Overloaded,
            ..
        }) => &tally.overloaded,
        Ok(InferReply::Error {
            kind: InferErrorKind::Timeout,
            ..
        }) => &tally.timeout,
        _ => &tally.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts one answer on the flood's inbox: a node's reply, or NATS's "no responders".
fn tally_msg(msg: &async_nats::Message, tally: &Tally) {
    if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        tally.no_room.fetch_add(1, Ordering::Relaxed);
    } else {
        tally_reply(&msg.payload, tally);
    }
}

/// Online capacity: requests answered per second with 64 clients back to back, no job.
async fn capacity(c: &Cluster) -> f64 {
    let tally = Arc::new(Tally::default());
    let stop = Instant::now() + Duration::from_secs(10);
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, tally) = (c.client.clone(), tally.clone());
            tokio::spawn(async move {
                let req = request();
                while Instant::now() < stop {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                    match client.request(subjects::infer(), req.clone()).await {
                        Ok(msg) => tally_reply(&msg.payload, &tally),
                        Err(_) => _ = tally.other.fetch_add(1, Ordering::Relaxed),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tally.done.load(Ordering::Relaxed) as f64 / 10.0
}

/// Sends `rate` requests per second until `stop`, open loop: published with a reply subject
/// of their own under one inbox that a single subscription reads (the cheapest way for one
/// process to load the bus, so that the generator takes little of the machine). A request
/// not answered within 10 s of the stop counts as lost.
async fn flood(
    c: &Cluster,
    rate: f64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    let client = c.nats.connect().await;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.*")).await.unwrap();
    tokio::spawn(async move {
        let req = request();
        let (started, mut scheduled, mut sent) = (Instant::now(), 0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut answered = 0u64;
        let subject = subjects::infer();
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = tick.tick() => {
                    let due = (started.elapsed().as_secs_f64() * rate) as u64;
                    while scheduled < due {
                        scheduled += 1;
                        // At most 20000 requests outstanding: beyond, the request is skipped.
                        if sent - answered < 20_000 {
                            sent += 1;
                            let reply = format!("{inbox}.{sent}");
                            client.publish_with_reply(subject.clone(), reply, req.clone()).await.unwrap();
                        }
                    }
                }
                Some(msg) = replies.next() => {
                    answered += 1;
                    tally_msg(&msg, &tally);
                }
            }
        }
        tally.sent.fetch_add(sent, Ordering::Relaxed);
        let drain = async {
            while answered < sent {
                let Some(msg) = replies.next().await else {
                    break;
                };
                answered += 1;
                tally_msg(&msg, &tally);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        tally.lost.fetch_add(sent - answered, Ordering::Relaxed);
    })
}

/// Queries per second of one serve job, from its first to its last result.
async fn serve_rate(c: &Cluster, jobs: &JobsClient, passes: u32) -> f64 {
    let mut sub = c
        .client
        .subscribe(subjects::all_job_results())
        .await
        .unwrap();
    let spec = serve_spec("fixture", Some(passes));
    let id = jobs.submit(spec).await.unwrap();
    let (mut first, mut last, mut queries) = (None, Instant::now(), 0u64);
    let total = u64::from(passes) * 10_000;
    let mut seen = std::collections::HashSet::new();
    while queries < total {
        let msg = tokio::time::timeout(Duration::from_secs(600), sub.next())
            .await
            .unwrap()
            .unwrap();
        let Ok(b) = decode::<ResultsBatch>(&msg.payload) else {
            continue;
        };
        if b.job_id != id || !seen.insert(b.batch_id) {
            continue;
        }
        last = Instant::now();
        if first.is_none() {
            first = Some((last, b.results.len() as u64));
        }
        queries += b.results.len() as u64;
    }
    let done = common::wait_job(jobs, &id, Duration::from_secs(600)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let (t0, n0) = first.unwrap();
    (total - n0) as f64 / (last - t0).as_secs_f64()
}

async fn run() {
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let passes: u32 = env_or("BENCH_PASSES", 10);
    let times: f64 = env_or("BENCH_FLOOD_X", 10.0);
    println!("## Flood benchmark\n");
    let node = std::env::var("BENCH_NODE").unwrap_or_else(|_| NODE.to_string());
    println!("- nodes run {node}");
    let open = env_or("BENCH_OPEN", 0u32) == 1;
    let nats = if open {
        testkit::NatsServer::start_open()
    } else {
        testkit::NatsServer::start()
    };
    let server = if open {
        "open (no TLS, no users)"
    } else {
        "secure (TLS, roles)"
    };
    println!("- nats-server: {server}");
    let c = Cluster::start_on(nats, Path::new(&node), 3, &[]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let cap = capacity(&c).await;
    let rate = cap * times;
    println!("- online capacity of 3 nodes (64 clients back to back, 16 images a request, no job): {cap:.0} requests/s; flood: {rate:.0} requests/s ({times}x)");
    let pids: Vec<u32> = c.nodes.iter().map(|n| n.pid()).collect();
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    let (mut node_cpu, mut client_cpu, mut flood_secs) = (0.0, 0.0, 0.0);
    let (mut nats_cpu, mut quiet_nodes, mut quiet_nats, mut quiet_secs) = (0.0, 0.0, 0.0, 0.0);
    let nats_pid = c.nats.pid();
    let tally = Arc::new(Tally::default());
    let peak = Arc::new(AtomicU64::new(0));
    for _ in 0..rounds {
        let nodes_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let (nats_before, started) = (cpu_seconds(nats_pid), Instant::now());
        quiet.push(serve_rate(&c, &jobs, passes).await);
        quiet_nodes += pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - nodes_before;
        quiet_nats += cpu_seconds(nats_pid) - nats_before;
        quiet_secs += started.elapsed().as_secs_f64();
        let stop = Arc::new(AtomicBool::new(false));
        let sender = flood(&c, rate, stop.clone(), tally.clone()).await;
        let watch = {
            let (pids, peak, stop) = (pids.clone(), peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for pid in &pids {
                        peak.fetch_max(rss_kib(*pid), Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let nodes_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
        let (client_before, started) = (cpu_seconds(std::process::id()), Instant::now());
        let nats_before = cpu_seconds(nats_pid);
        flooded.push(serve_rate(&c, &jobs, passes).await);
        nats_cpu += cpu_seconds(nats_pid) - nats_before;
        node_cpu += pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - nodes_before;
        client_cpu += cpu_seconds(std::process::id()) - client_before;
        flood_secs += started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        sender.await.unwrap();
        watch.await.unwrap();
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (q, f) = (median(&quiet), median(&flooded));
    println!("- `serve fixture 64`, {passes} passes: alone {q:.0} queries/s (median of {}), under the flood {f:.0} queries/s (median of {}): ratio of the medians **{:.3}**", show(&quiet), show(&flooded), f / q);
    // Each round's flooded job against the unloaded one just before it: the machine's speed
    // drifts between rounds, less within one.
    let ratios: Vec<f64> = quiet.iter().zip(&flooded).map(|(q, f)| f / q).collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "- per round (flooded / alone): {}; median **{:.3}**",
        each.join(", "),
        median(&ratios)
    );
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "- flood requests: {} sent, {} answered, {} shed `overloaded` by a node, {} found no node in the queue group (\"no responders\": all had left it to shed load), {} timed out, {} other errors, {} never answered; peak node RSS **{} MiB**",
        t(&tally.sent),
        t(&tally.done),
        t(&tally.overloaded),
        t(&tally.no_room),
        t(&tally.timeout),
        t(&tally.other),
        t(&tally.lost),
        t(&peak) / 1024
    );
    println!(
        "- the nodes left the `idunno-infer` queue group {} times to shed load",
        common::infer_pauses(&c).await
    );
    println!(
        "- CPU during the jobs alone: the 3 nodes {:.2} cores, the nats-server {:.2} cores",
        quiet_nodes / quiet_secs,
        quiet_nats / quiet_secs
    );
    println!(
        "- CPU during the flooded jobs: the 3 nodes {:.2} cores, the nats-server {:.2} cores, the load generator {:.2} cores (this machine has {} cores)",
        node_cpu / flood_secs,
        nats_cpu / flood_secs,
        client_cpu / flood_secs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
