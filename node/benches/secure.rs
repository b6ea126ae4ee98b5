//! The cost of security (`make bench`, in the README's "Measured figures"): the same work on a
//! secure cluster (TLS for every client, NKEY identities with their roles' permissions, as
//! `idunno local up` makes by default) and on an open one (`--insecure`), side by side in one
//! run, in interleaved rounds:
//! - SDFS put and get of a 256 MB file (3 nodes, RF 3, W 3) by the operator;
//! - `serve mlp 64` over the 10000 test images (3 nodes: the smallest model, so the bus's share
//!   of the time, and with it the cost of TLS, is largest), first to last result.
//!
//! Knobs (environment): `BENCH_SECURE_MB` (default 256), `BENCH_ROUNDS` (default 3),
//! `BENCH_PASSES` (default 3).

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::JobState;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{
    collect_results, env_or, import_fashion, serve_spec, train_quick, wait_until, Cluster,
    NatsServer, Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// One cluster and what the benchmark uses on it.
struct Side {
    name: &'static str,
    _cluster: Cluster,
    files: SdfsClient,
    jobs: JobsClient,
    seen: Seen,
}

impl Side {
    async fn start(name: &'static str, nats: NatsServer) -> Side {
        let flags = ["--replication", "3", "--write-quorum", "3"];
        let cluster = Cluster::start_on(nats, Path::new(NODE), 3, &flags).await;
        // The operator (on the open cluster: anyone) does the work; the test client sets up.
        let operator = cluster.nats.connect_as("operator").await;
        let (_, setup) = import_fashion(&cluster.client, "fm").await;
        train_quick(&setup, "mlp", 1000).await;
        let seen = collect_results(&cluster.client).await;
        Side {
            name,
            files: SdfsClient::new(operator.clone(), Duration::from_secs(10)),
            jobs: JobsClient::new(operator, Duration::from_secs(10)),
            _cluster: cluster,
            seen,
        }
    }

    /// Seconds for a put and a get of `file`.
    async fn put_get(&self, file: &Path, out: &Path) -> (f64, f64) {
        let t = Instant::now();
        self.files.put(file, "bench/big", None).await.unwrap();
        let put = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(out);
        let t = Instant::now();
        self.files.get("bench/big", None, out, None).await.unwrap();
        let get = t.elapsed().as_secs_f64();
        std::fs::remove_file(out).unwrap();
        (put, get)
    }

    /// Queries per second of one `serve mlp 64` of `passes` passes, first to last result.
    async fn serve(&self, passes: u32) -> f64 {
        let id = self
            .jobs
            .submit(serve_spec("mlp", Some(passes)))
            .await
            .unwrap();
        let done = wait_until(
            &format!("{} job ends", self.name),
            Duration::from_secs(1800),
            || async { self.jobs.get(&id).await.ok().filter(|j| j.state.is_final()) },
        )
        .await;
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        let times: Vec<Instant> = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter().filter(|s| s.1 == id).map(|s| s.0).collect()
        };
        let (first, last) = (times[0], times[times.len() - 1]);
        let queries = u64::from(passes) * 10_000 - 64;
        queries as f64 / (last - first).as_secs_f64()
    }
}

fn median(v: &[f64]) -> f64 {
    testkit::median(v)
}

fn list(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb: u64 = env_or("BENCH_SECURE_MB", 256);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let passes: u32 = env_or("BENCH_PASSES", 3);
    println!("## Security benchmark: secure (TLS + roles) vs open, 3 nodes each, one run\n");
    let secure = Side::start("secure", NatsServer::start_synced()).await;
    let open = Side::start("open", NatsServer::start_open_synced()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    testkit::random_file(&file, mb);
    let out = dir.path().join("out");
    let (mut put, mut get, mut serve) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    for _ in 0..rounds {
        for (i, side) in [&secure, &open].into_iter().enumerate() {
            let (p, g) = side.put_get(&file, &out).await;
            put[i].push(mb as f64 / p);
            get[i].push(mb as f64 / g);
        }
        for (i, side) in [&secure, &open].into_iter().enumerate() {
            serve[i].push(side.serve(passes).await);
        }
    }
    println!("| measure | secure | open | secure / open |\n|---|---|---|---|");
    for (what, v, unit, digits) in [
        (format!("SDFS put of {mb} MB"), &put, "MB/s", 0),
        (format!("SDFS get of {mb} MB"), &get, "MB/s", 0),
        (
            format!("`serve mlp 64`, {passes} passes"),
            &serve,
            "queries/s",
            0,
        ),
    ] {
        let (s, o) = (median(&v[0]), median(&v[1]));
        println!(
            "| {what} | {s:.0} {unit} ({}) | {o:.0} {unit} ({}) | **{:.3}** |",
            list(&v[0], digits),
            list(&v[1], digits),
            s / o
        );
    }
    println!("\n(medians of {rounds} interleaved rounds; both servers fsync every write, as the shipped configs do)");
}
