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
use testkit::procstat::cpu_seconds;
use testkit::{
    collect_results, env_or, import_fashion, serve_spec, train_quick, wait_until, Cluster,
    NatsServer, Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// One cluster and what the benchmark uses on it.
struct Side {
    name: &'static str,
    cluster: Cluster,
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
            cluster,
            seen,
        }
    }

    /// CPU seconds used so far by the nats-server, the nodes together, and this process (the
    /// client).
    fn cpu(&self) -> [f64; 3] {
        let nodes = self
            .cluster
            .nodes
            .iter()
            .map(|n| cpu_seconds(n.pid()))
            .sum();
        [
            cpu_seconds(self.cluster.nats.pid()),
            nodes,
            cpu_seconds(std::process::id()),
        ]
    }

    /// Seconds for a put and a get of `file`, and the CPU seconds each used (server, nodes,
    /// client).
    async fn put_get(&self, file: &Path, out: &Path) -> ((f64, [f64; 3]), (f64, [f64; 3])) {
        let (t, c) = (Instant::now(), self.cpu());
        self.files.put(file, "bench/big", None).await.unwrap();
        let put = (t.elapsed().as_secs_f64(), minus(self.cpu(), c));
        let _ = std::fs::remove_file(out);
        let (t, c) = (Instant::now(), self.cpu());
        self.files.get("bench/big", None, out, None).await.unwrap();
        let get = (t.elapsed().as_secs_f64(), minus(self.cpu(), c));
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

fn minus(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
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
    // CPU seconds per put and per get: [side][server, nodes, client][round].
    let mut cpu_put = [[vec![], vec![], vec![]], [vec![], vec![], vec![]]];
    let mut cpu_get = cpu_put.clone();
    for _ in 0..rounds {
        for (i, side) in [&secure, &open].into_iter().enumerate() {
            let ((p, pc), (g, gc)) = side.put_get(&file, &out).await;
            put[i].push(mb as f64 / p);
            get[i].push(mb as f64 / g);
            for k in 0..3 {
                cpu_put[i][k].push(pc[k]);
                cpu_get[i][k].push(gc[k]);
            }
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
    println!("\nCPU seconds (user + system, medians) of one {mb} MB transfer, secure / open:\n");
    println!("| transfer | nats-server | the 3 nodes | client | total |\n|---|---|---|---|---|");
    for (what, c) in [("put", &cpu_put), ("get", &cpu_get)] {
        let m = |i: usize, k: usize| median(&c[i][k]);
        let cell = |k: usize| format!("{:.2} / {:.2}", m(0, k), m(1, k));
        let total = |i: usize| m(i, 0) + m(i, 1) + m(i, 2);
        println!(
            "| {what} | {} | {} | {} | {:.2} / {:.2} |",
            cell(0),
            cell(1),
            cell(2),
            total(0),
            total(1)
        );
    }
}
