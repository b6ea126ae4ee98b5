//! What the hostile-input checks cost (`make bench-checks`): the same `serve cnn 64` job on a
//! one-node cluster, the node restarted alternately with this build and with a build from
//! before the checks (`BENCH_BASE_NODE`, built by `infra/build-base.sh`), in interleaved
//! rounds on the same data; the medians are compared. Without `BENCH_BASE_NODE` it says so
//! and measures this build only.
//!
//! Knobs (environment): `BENCH_THREADS` (default 2), `BENCH_PASSES` (default 2),
//! `BENCH_ROUNDS` (default 5).

use bus_client::jobs::JobsClient;
use bus_schemas::jobs::JobState;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{
    collect_results, env_or, import_fashion, median, serve_spec, train_quick, wait_until, Cluster,
    NodeProc, Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(compare());
}

/// Restarts the one node with `binary` on the same data directory.
fn restart(c: &mut Cluster, binary: &Path, flags: &[&str]) {
    let node = &mut c.nodes[0];
    node.terminate();
    node.wait_exit(Duration::from_secs(30));
    let data = node.data_dir.clone();
    *node = NodeProc::spawn(binary, "n1", &c.nats.node_bus("n1"), &data, flags);
}

/// Queries per second of one `serve cnn 64` job, first to last result.
async fn one_job(jobs: &JobsClient, seen: &Seen, passes: u32) -> f64 {
    let id = wait_until("the node takes jobs", Duration::from_secs(120), || async {
        jobs.submit(serve_spec("cnn", Some(passes))).await.ok()
    })
    .await;
    let done = wait_until("the job ends", Duration::from_secs(1800), || async {
        jobs.get(&id).await.ok().filter(|j| j.state.is_final())
    })
    .await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let times: Vec<Instant> = {
        let seen = seen.lock().unwrap();
        seen.iter().filter(|s| s.1 == id).map(|s| s.0).collect()
    };
    let (first, last) = (times[0], *times.last().unwrap());
    (f64::from(passes) * 10_000.0 - 64.0) / (last - first).as_secs_f64()
}

async fn compare() {
    let threads: u32 = env_or("BENCH_THREADS", 2);
    let passes: u32 = env_or("BENCH_PASSES", 2);
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let base: Option<PathBuf> = std::env::var_os("BENCH_BASE_NODE").map(PathBuf::from);
    println!("## The checks' cost: `serve cnn 64`, one node, {threads} threads, {passes} passes\n");
    let t = threads.to_string();
    let flags = ["--threads", &t, "--replication", "1", "--write-quorum", "1"];
    let mut c = Cluster::start_with(Path::new(NODE), 1, &flags).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "cnn", 1000).await;
    let seen = collect_results(&c.client).await;
    let mut builds: Vec<(&str, PathBuf)> = vec![("this build", NODE.into())];
    match &base {
        Some(b) => builds.push(("before the checks", b.clone())),
        None => println!("(BENCH_BASE_NODE is not set: measuring this build only)\n"),
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); builds.len()];
    for _ in 0..rounds {
        for (i, (_, binary)) in builds.iter().enumerate() {
            restart(&mut c, binary, &flags);
            rates[i].push(one_job(&jobs, &seen, passes).await);
        }
    }
    for ((name, _), r) in builds.iter().zip(&rates) {
        let list: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "- {name}: median **{:.0}** queries/s ({})",
            median(r),
            list.join(", ")
        );
    }
    if rates.len() == 2 {
        println!(
            "- ratio this build / before: **{:.3}**",
            median(&rates[0]) / median(&rates[1])
        );
    }
}
