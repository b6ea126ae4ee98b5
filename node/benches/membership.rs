//! Membership benchmark (`make bench`): detection time after `kill -9`, false positives under
//! simulated loss, and membership messages per node per second as the cluster grows.
//!
//! Knobs (environment): `BENCH_KILLS` (default 100), `BENCH_LOSS_SECS` (default 300),
//! `BENCH_SIZES` (default "5,20,50"), `BENCH_RATE_SECS` (default 20).

use bus_schemas::control::ControlRequest;
use bus_schemas::membership::{MemberEvent, MemberEventKind, MemberState};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    println!("## Membership benchmark\n");
    let kills = env_or("BENCH_KILLS", 100);
    if kills > 0 {
        detection_time(kills).await;
    }
    let loss_secs = env_or("BENCH_LOSS_SECS", 300u64);
    let rates = [
        ("3%", 0.03, loss_secs),
        ("30%", 0.3, loss_secs),
        ("90%", 0.9, loss_secs / 5),
    ];
    for (name, rate, secs) in rates.into_iter().filter(|r| r.2 > 0) {
        false_positives(name, rate, Duration::from_secs(secs)).await;
    }
    let sizes: String = env_or("BENCH_SIZES", "5,20,50".to_string());
    let secs = env_or("BENCH_RATE_SECS", 20u64);
    if sizes.trim().is_empty() {
        return;
    }
    println!("\n| nodes | membership msgs sent+received per node per s (mean) | max node |");
    println!("|---|---|---|");
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        message_rate(n, Duration::from_secs(secs)).await;
    }
}

async fn detection_time(kills: usize) {
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let mut times = Vec::new();
    for round in 0..kills {
        let victim = format!("n{}", round % 5 + 1);
        let mut events = c.client.subscribe(subjects::member_events()).await.unwrap();
        c.client.flush().await.unwrap();
        let killed = Instant::now();
        c.node(&victim).kill9();
        let detected = loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), events.next())
                .await
                .expect("no fail event within 20 s")
                .expect("subscription closed");
            if let Ok(ev) = decode::<MemberEvent>(&msg.payload) {
                if ev.node == victim && ev.kind == MemberEventKind::Fail {
                    break killed.elapsed();
                }
            }
        };
        let watchers = c.others(&[&victim]);
        let watchers: Vec<&str> = watchers.iter().map(String::as_str).collect();
        let limit = Duration::from_secs(20);
        c.wait_seen(&watchers, &victim, MemberState::Failed, None, limit)
            .await;
        times.push(detected.as_secs_f64());
        let restarted = c.spawn_node(&victim);
        *c.node(&victim) = restarted;
        c.wait_all_alive(Duration::from_secs(30)).await;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "Detection time, kill -9 to failed on every node, 5 nodes, {} kills: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        times.len(),
        percentile(&times, 0.5) * 1000.0,
        percentile(&times, 0.99) * 1000.0,
        times.last().copied().unwrap_or(0.0) * 1000.0
    );
}

async fn false_positives(name: &str, rate: f64, span: Duration) {
    let c = Cluster::start(Path::new(NODE), 5).await;
    for id in c.ids() {
        c.control(&id, ControlRequest::DropRate { rate })
            .await
            .expect("droprate");
    }
    let mut events = c.client.subscribe(subjects::member_events()).await.unwrap();
    let (mut suspects, mut fails) = (0, 0);
    let end = Instant::now() + span;
    while let Ok(Some(msg)) =
        tokio::time::timeout(end.saturating_duration_since(Instant::now()), events.next()).await
    {
        match decode::<MemberEvent>(&msg.payload).map(|e| e.kind) {
            Ok(MemberEventKind::Suspect) => suspects += 1,
            Ok(MemberEventKind::Fail) => fails += 1,
            _ => {}
        }
    }
    println!(
        "Loss {name}, 5 nodes, {} s: {fails} false positives (fail events), {suspects} suspicions refuted or pending",
        span.as_secs()
    );
}

async fn message_rate(n: usize, span: Duration) {
    let c = Cluster::start(Path::new(NODE), n).await;
    let ids = c.ids();
    let before = member_messages(&c, &ids).await;
    let started = Instant::now();
    tokio::time::sleep(span).await; // the measurement window itself
    let after = member_messages(&c, &ids).await;
    let secs = started.elapsed().as_secs_f64();
    let rates: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / secs)
        .collect();
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let max = rates.iter().copied().fold(0.0, f64::max);
    println!("| {n} | {mean:.1} | {max:.1} |");
}

async fn member_messages(c: &Cluster, ids: &[String]) -> Vec<u64> {
    let mut sums = Vec::new();
    for id in ids {
        let s = c.stats(id).await.expect("stat");
        sums.push(s.member_msgs_in + s.member_msgs_out);
    }
    sums
}
