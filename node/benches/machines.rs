//! Several-machines benchmark (`make bench`): 3 machines of 2 nodes each (network namespaces,
//! a nats-server per machine, one JetStream cluster, R3) against 1 machine of 6 nodes (one
//! namespace, one nats-server, R1; `sync_interval: always` on every server), both alive in the
//! same run and measured in alternating rounds:
//! (a) `serve fixture 64` throughput, first to last result;
//! (b) SDFS put and get of one large file;
//! then on the 3 machines alone (c) a whole machine `kill -9`ed (its server and both nodes)
//! while a continuous `serve fixture 64` runs: detection time, and the time until the job
//! resumes when the lost machine held workers only and when it held the coordinator. The lost
//! machine is started again on its data between kills.
//!
//! Knobs (environment): `BENCH_ROUNDS` (default 3 alternating rounds of (a) and (b)),
//! `BENCH_PASSES` (default 2 passes over the 10000 test images in (a)), `BENCH_MACHINES_MB`
//! (default 256, the file of (b)), `BENCH_MACHINE_KILLS` (default 4 kills of each kind in (c)).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "machines/death.rs"]
mod death;
#[path = "machines/report.rs"]
mod report;
#[path = "machines/setup.rs"]
mod setup;

use bus_schemas::jobs::JobState;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{env_or, median, serve_spec};

use setup::Setup;

const MB: u64 = 1_000_000;

/// A file of `mb` MB of pseudo-random bytes in `dir`.
fn make_file(dir: &Path, mb: u64) -> PathBuf {
    let path = dir.join(format!("f{mb}"));
    testkit::random_file(&path, mb);
    path
}

/// Queries per second of a `serve fixture 64` job of `passes` passes, first to last result.
async fn serve_rate(s: &Setup, passes: u32) -> f64 {
    let id = s
        .jobs
        .submit(serve_spec("fixture", Some(passes)))
        .await
        .unwrap();
    let done = common::wait_job(&s.jobs, &id, Duration::from_secs(600)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let times: Vec<Instant> = {
        let seen = s.seen[0].lock().unwrap();
        seen.iter().filter(|r| r.1 == id).map(|r| r.0).collect()
    };
    let (first, last) = (times[0], *times.last().unwrap());
    (u64::from(passes) * 10_000 - 64) as f64 / (last - first).as_secs_f64()
}

/// MB/s of a put and of a get of `src` (`mb` MB); the file is deleted afterwards.
async fn sdfs_rates(s: &Setup, src: &Path, mb: u64) -> (f64, f64) {
    let started = Instant::now();
    s.fs.put(src, "bench/big", None).await.unwrap();
    let put = mb as f64 / started.elapsed().as_secs_f64();
    let out = src.with_extension("out");
    let started = Instant::now();
    s.fs.get("bench/big", None, &out, None).await.unwrap();
    let get = mb as f64 / started.elapsed().as_secs_f64();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), mb * MB);
    std::fs::remove_file(&out).unwrap();
    s.fs.delete("bench/big").await.unwrap();
    (put, get)
}

/// Figures of the 3 machines and of the 1 machine, round by round.
#[derive(Default)]
struct Pair {
    three: Vec<f64>,
    one: Vec<f64>,
}

impl Pair {
    /// "3 machines X, 1 machine Y: ratio Z (rounds …)".
    fn line(&self, unit: &str) -> String {
        let (t, o) = (median(&self.three), median(&self.one));
        let list = |v: &[f64]| {
            let v: Vec<String> = v.iter().map(|r| format!("{r:.0}")).collect();
            v.join(", ")
        };
        format!(
            "3 machines **{t:.0} {unit}**, 1 machine **{o:.0} {unit}**: ratio **{:.3}** (medians; rounds: 3 machines {}; 1 machine {})",
            t / o,
            list(&self.three),
            list(&self.one)
        )
    }
}

/// (a) and (b) in alternating rounds on both sets.
async fn side_by_side(three: &Setup, one: &Setup) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let passes: u32 = env_or("BENCH_PASSES", 2);
    let mb: u64 = env_or("BENCH_MACHINES_MB", 256);
    if rounds == 0 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_file(dir.path(), mb);
    let (mut serve, mut put, mut get) = (Pair::default(), Pair::default(), Pair::default());
    for round in 0..rounds {
        // Who goes first alternates too: the box's speed drifts within a run.
        let order: [(&Setup, bool); 2] = if round % 2 == 0 {
            [(three, true), (one, false)]
        } else {
            [(one, false), (three, true)]
        };
        for (s, is_three) in order {
            let q = serve_rate(s, passes).await;
            let (p, g) = sdfs_rates(s, &src, mb).await;
            for (pair, v) in [(&mut serve, q), (&mut put, p), (&mut get, g)] {
                let side = if is_three {
                    &mut pair.three
                } else {
                    &mut pair.one
                };
                side.push(v);
            }
        }
    }
    println!(
        "### (a), (b) 3 machines × 2 nodes (R3) vs 1 machine × 6 nodes (one server, R1), {rounds} alternating rounds\n"
    );
    println!(
        "- (a) `serve fixture 64`, {} queries, first to last result: {}",
        passes * 10_000,
        serve.line("q/s")
    );
    println!(
        "- (b) SDFS put of {mb} MB (RF 4, W 3): {}",
        put.line("MB/s")
    );
    println!("- (b) SDFS get of {mb} MB: {}", get.line("MB/s"));
    println!();
}

async fn run() {
    println!("## Several machines benchmark\n");
    let started = Instant::now();
    let three = Setup::machines(3, 2).await;
    let one = Setup::machines(1, 6).await;
    eprintln!(
        "both sets ready after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    side_by_side(&three, &one).await;
    drop(one);
    death::machine_deaths(three, env_or("BENCH_MACHINE_KILLS", 4)).await;
    eprintln!("took {:.0} s", started.elapsed().as_secs_f64());
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = testkit::machines_unavailable() {
        println!("## Several machines benchmark\n\nskipped: {why}");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}
