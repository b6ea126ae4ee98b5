//! Durability benchmark (`make bench`): what `sync_interval: always` (JetStream fsyncs every
//! write before acknowledging it, as every shipped config sets) costs against JetStream's
//! default (a flush every 2 minutes), in interleaved rounds on fresh 3-node clusters: puts of
//! a 1 MB file one after another, and a `serve fixture 64` job, which writes every batch's
//! results and acceptance to JetStream streams and its progress to the job record.
//!
//! Knobs (environment): `BENCH_ROUNDS` (default 3), `BENCH_PUTS` (default 40).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, import_fashion, median, serve_spec, Cluster, NatsServer};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// Puts per second and the serve job's queries per second on a fresh cluster.
async fn round(synced: bool, puts: usize) -> (f64, f64) {
    let nats = if synced {
        NatsServer::start_synced()
    } else {
        NatsServer::start()
    };
    let c = Cluster::start_on(nats, Path::new(NODE), 3, &[]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, vec![7u8; 1_000_000]).unwrap();
    let started = Instant::now();
    for i in 0..puts {
        fs.put(&file, &format!("bench/f{i}"), None).await.unwrap();
    }
    let put_rate = puts as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let id = jobs.submit(serve_spec("fixture", Some(1))).await.unwrap();
    let done = common::wait_job(&jobs, &id, Duration::from_secs(600)).await;
    let serve_rate = 10_000.0 / started.elapsed().as_secs_f64();
    common::check_results(&fs, &done).await;
    (put_rate, serve_rate)
}

async fn run() {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let puts: usize = env_or("BENCH_PUTS", 40);
    println!("## Durability benchmark\n");
    let (mut puts_sync, mut puts_default, mut serve_sync, mut serve_default) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (p, s) = round(false, puts).await;
        puts_default.push(p);
        serve_default.push(s);
        let (p, s) = round(true, puts).await;
        puts_sync.push(p);
        serve_sync.push(s);
    }
    let (pd, ps) = (median(&puts_default), median(&puts_sync));
    let (sd, ss) = (median(&serve_default), median(&serve_sync));
    println!("- {puts} puts of 1 MB one after another, 3 nodes: default {pd:.1} puts/s ({:.1} ms each), `sync_interval: always` {ps:.1} puts/s ({:.1} ms each): ratio **{:.3}** (medians of {rounds} rounds)", 1000.0 / pd, 1000.0 / ps, ps / pd);
    println!("- `serve fixture 64` (10000 queries, submit to end), 3 nodes: default {sd:.0} q/s, `sync_interval: always` {ss:.0} q/s: ratio **{:.3}**", ss / sd);
    println!();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
