//! Dashboard benchmark (`make bench`): API latency against a busy cluster, what open event
//! streams cost the node serving them, and the time from `kill -9` to the `fail` event on a
//! page's event stream.
//!
//! Knobs (environment): `BENCH_HTTP_REQS` (default 200), `BENCH_SSE_CLIENTS` (default 50),
//! `BENCH_SSE_SECS` (default 10), `BENCH_KILLS` (default 5).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::http::{get, EventStream};
use testkit::procstat::{cpu_seconds, rss_kib};
use testkit::{continuous, env_or, import_fashion, train_quick, wait_until, Cluster};

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
    println!("## Dashboard benchmark\n");
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let (_fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "mlp", 2000).await;
    let addr = c.seen("n1", "n1").await.unwrap().http.unwrap();
    // The streams' own cost shows best on an otherwise idle node.
    let pid = c.node("n1").pid();
    let (clients, secs) = (
        env_or("BENCH_SSE_CLIENTS", 50),
        env_or("BENCH_SSE_SECS", 10),
    );
    streams(&addr, pid, clients, secs).await;
    jobs.submit(continuous("mlp", 1)).await.unwrap();
    wait_until("the job runs", Duration::from_secs(60), || async {
        let all = get(&addr, "/api/jobs", &[]).json();
        let done = all["jobs"][0]["serve"]["done"].as_u64()?;
        (done > 0).then_some(())
    })
    .await;
    latency(&addr, env_or("BENCH_HTTP_REQS", 200)).await;
    kills(&mut c, &addr, env_or("BENCH_KILLS", 5)).await;
}

/// Sequential requests to each endpoint while a continuous job runs on every node.
async fn latency(addr: &str, n: usize) {
    println!("\n| endpoint, while a continuous job runs | p50 ms | p99 ms | body bytes |");
    println!("|---|---|---|---|");
    for path in [
        "/api/workers",
        "/api/jobs",
        "/api/files",
        "/api/stats",
        "/metrics",
    ] {
        let (addr, path) = (addr.to_string(), path.to_string());
        let shown = path.clone();
        let (mut times, bytes) = tokio::task::spawn_blocking(move || {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..n {
                let t = Instant::now();
                let a = get(&addr, &path, &[]);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(a.status, 200, "{path}");
                bytes = a.body.len();
            }
            (times, bytes)
        })
        .await
        .unwrap();
        times.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!("| `{shown}` | {p50:.1} | {p99:.1} | {bytes} |");
    }
}

/// The serving node's CPU and memory with no event stream open, then with `clients` open.
async fn streams(addr: &str, pid: u32, clients: usize, secs: u64) {
    let span = Duration::from_secs(secs);
    let measure = move |what: &str, snapshots: Option<&AtomicU64>| {
        let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
        let before = snapshots.map(|s| s.load(Ordering::Relaxed));
        std::thread::sleep(span);
        let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
        let per_client = match (snapshots, before) {
            (Some(s), Some(b)) => format!(
                "{:.2}",
                (s.load(Ordering::Relaxed) - b) as f64 / clients as f64 / secs as f64
            ),
            _ => "-".into(),
        };
        println!(
            "| {what} | {cpu:.1}% | {:.0} MB | {per_client} |",
            rss_kib(pid) as f64 / 1024.0
        );
    };
    println!(
        "\n| open event streams on the node (idle cluster) | its CPU | its RSS | snapshots per client per s |"
    );
    println!("|---|---|---|---|");
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        measure("0", None);
        let stop = Arc::new(AtomicBool::new(false));
        let snapshots = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..clients)
            .map(|_| {
                let (addr, stop, snapshots) = (addr.clone(), stop.clone(), snapshots.clone());
                std::thread::spawn(move || {
                    let mut s = EventStream::open(&addr, "/api/events", &[]);
                    while !stop.load(Ordering::Relaxed) {
                        match s.next_event(Duration::from_secs(5)) {
                            Some((name, _)) if name == "snapshot" => {
                                snapshots.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(_) => {}
                            None => break,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2)); // every stream open and past its first event
        measure(&clients.to_string(), Some(&snapshots));
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let _ = r.join();
        }
    })
    .await
    .unwrap();
}

/// `kill -9` of a node → the `fail` event on an event stream of another node.
async fn kills(c: &mut Cluster, addr: &str, kills: usize) {
    let mut times = Vec::new();
    for round in 0..kills {
        let victim = format!("n{}", round % 4 + 2);
        let mut stream = EventStream::open(addr, "/api/events", &[]);
        stream
            .next_event(Duration::from_secs(5))
            .expect("the stream opens");
        let t = Instant::now();
        c.node(&victim).kill9();
        let took = tokio::task::spawn_blocking(move || loop {
            let (name, data) = stream.next_event(Duration::from_secs(10))?;
            let e: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            if name == "member" && e["kind"] == "fail" && e["node"] == victim.as_str() {
                return Some(t.elapsed());
            }
        })
        .await
        .unwrap()
        .expect("a fail event on the stream");
        times.push(took.as_secs_f64() * 1e3);
        let id = format!("n{}", round % 4 + 2);
        let node = c.spawn_node(&id);
        *c.node(&id) = node;
        c.wait_all_alive(Duration::from_secs(30)).await;
    }
    let list: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
    times.sort_by(f64::total_cmp);
    println!(
        "\n`kill -9` → `fail` event on a page's stream, {kills} kills: p50 {:.0} ms, max {:.0} ms ({} ms)",
        percentile(&times, 0.5),
        percentile(&times, 1.0),
        list.join(", ")
    );
}
