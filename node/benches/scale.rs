//! Scale benchmark (`make bench-scale`): what a cluster's history costs. Two 3-node clusters
//! run side by side in one run: one holds a page of history (100 ended jobs, 100 files), the
//! other 10,000 ended jobs and 20,000 files. Measured on both at the same time, requests
//! interleaved (one to the small cluster, one to the big one, and so on), so that the noise of
//! this shared machine falls on both alike: the coordinator's CPU per second while no job runs
//! (over the same window), the latency of a page (100 entries) of `jobs`, `ls`, `/api/jobs`
//! and `/api/files`, and the time from submitting an inference job to its first result (the
//! first results message on the bus). Flat (the bar) means within 20%.
//!
//! The ended jobs are records written straight into the job bucket (what a finished job
//! leaves there); the files are real SDFS puts of small files (every byte replicated).
//! Nodes run with `--keep-jobs 100000` so that the retention keeps them all, and with
//! `--sdfs-store-slots 64` for the bulk load (a put refused as overloaded is tried again).
//!
//! Knobs (environment): `BENCH_SCALE_JOBS` (default 10000), `BENCH_SCALE_FILES` (default
//! 20000), `BENCH_SCALE_REQS` (requests per figure on each side, default 300), `BENCH_SCALE_CPU_SECS`
//! (default 30), `BENCH_SCALE_FIRSTS` (serve jobs timed on each side, default 11),
//! `BENCH_SCALE_HOLD` (seconds both clusters stay up after measuring, for a profiler; 0).

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobRecord, JobState, JobsFilter};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::http::get;
use testkit::procstat::cpu_seconds;
use testkit::{env_or, import_fashion, median, serve_spec, train_quick, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
/// Entries per page measured.
const PAGE: u32 = 100;

/// One cluster under measurement.
struct Side {
    cluster: Cluster,
    fs: SdfsClient,
    jobs: JobsClient,
    /// The coordinator's process and dashboard address.
    pid: u32,
    addr: String,
}

/// One figure on both clusters: what, the small cluster's, the big one's.
type Row = (&'static str, f64, f64);

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("## Scale benchmark\n");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (n_jobs, n_files) = (
        env_or("BENCH_SCALE_JOBS", 10_000usize),
        env_or("BENCH_SCALE_FILES", 20_000usize),
    );
    let small = Side::start().await;
    let big = Side::start().await;
    for side in [&small, &big] {
        add_jobs(&side.cluster.client, 0..PAGE as usize).await;
        add_files(&side.fs, dir.path(), 0..PAGE as usize).await;
    }
    let t = Instant::now();
    add_jobs(&big.cluster.client, PAGE as usize..n_jobs).await;
    add_files(&big.fs, dir.path(), PAGE as usize..n_files).await;
    eprintln!("history written in {:.0} s", t.elapsed().as_secs_f64());
    let settled = settle(small.pid, big.pid).await;
    let rows = measure(&small, &big).await;
    report(&rows, n_jobs, n_files, settled);
    hold(&[&small, &big]).await;
}

impl Side {
    /// A 3-node cluster with the dataset and a trained `mlp`; its coordinator found.
    async fn start() -> Self {
        let flags = ["--keep-jobs", "100000", "--sdfs-store-slots", "64"];
        let cluster = Cluster::start_with(Path::new(NODE), 3, &flags).await;
        let (fs, jobs) = import_fashion(&cluster.client, "fm").await;
        train_quick(&jobs, "mlp", 1000).await;
        let coordinator = cluster.coordinator().await;
        let node = (cluster.nodes.iter().find(|n| n.id == coordinator)).expect("the coordinator");
        let addr = (cluster.seen(&node.id, &node.id).await)
            .and_then(|m| m.http)
            .expect("its dashboard");
        let pid = node.pid();
        Side {
            cluster,
            fs,
            jobs,
            pid,
            addr,
        }
    }
}

/// Writes ended inference jobs `range` into the job bucket, 200 at a time.
async fn add_jobs(client: &async_nats::Client, range: std::ops::Range<usize>) {
    let js = async_nats::jetstream::new(client.clone());
    let kv = (js.get_key_value(bus_schemas::subjects::JOBS_BUCKET).await).expect("the job bucket");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let puts = range.map(|i| {
        let id = format!("serve-bench{i:06}");
        let record = JobRecord {
            state: JobState::Succeeded,
            finished_ms: Some(now - i as u64),
            ..JobRecord::queued(
                id.clone(),
                serve_spec("mlp", Some(1)),
                now - i as u64 - 1,
                None,
            )
        };
        let kv = kv.clone();
        async move {
            let bytes = bus_schemas::encode(&record).expect("a record encodes");
            kv.put(&id, bytes.into())
                .await
                .expect("a record is written");
        }
    });
    futures::stream::iter(puts)
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;
}

/// Puts files `range` (64 bytes each) under `bench/`, 32 at a time.
async fn add_files(fs: &SdfsClient, dir: &Path, range: std::ops::Range<usize>) {
    let puts = range.map(|i| async move {
        let path = dir.join(format!("f{i}"));
        tokio::fs::write(&path, format!("{i:064}"))
            .await
            .expect("a local file");
        let name = format!("bench/d{:03}/f{i:06}", i % 100);
        let mut tries = 0;
        while let Err(e) = fs.put(&path, &name, None).await {
            tries += 1;
            assert!(tries < 10, "{name}: {e}");
            tokio::time::sleep(Duration::from_millis(100 * tries)).await;
        }
        let _ = tokio::fs::remove_file(&path).await;
    });
    futures::stream::iter(puts)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// What one request asks.
#[derive(Clone, Copy)]
enum Probe {
    Jobs,
    Ls,
    ApiJobs,
    ApiFiles,
    /// `/healthz`: the HTTP server alone (a control: no history behind it).
    Health,
    FirstResult,
}

/// Every figure of both clusters, over the same windows, requests interleaved.
async fn measure(small: &Side, big: &Side) -> Vec<Row> {
    let secs = env_or("BENCH_SCALE_CPU_SECS", 30u64);
    eprintln!(
        "measuring the coordinators (pids {} and {})",
        small.pid, big.pid
    );
    let (cpu_a, cpu_b) = tokio::join!(cpu_ms_per_s(small.pid, secs), cpu_ms_per_s(big.pid, secs));
    let mut rows = vec![("coordinator CPU, ms per s, idle", cpu_a, cpu_b)];
    let reqs = env_or("BENCH_SCALE_REQS", 300usize);
    let probes = [
        ("`jobs` (page of 100), median ms", Probe::Jobs, reqs),
        ("`ls bench` (page of 100), median ms", Probe::Ls, reqs),
        ("`/api/jobs?limit=100`, median ms", Probe::ApiJobs, reqs),
        (
            "`/api/files?prefix=bench&limit=100`, median ms",
            Probe::ApiFiles,
            reqs,
        ),
        (
            "`/healthz` (control: no history behind it), median ms",
            Probe::Health,
            reqs,
        ),
        (
            "submit → first result, median ms",
            Probe::FirstResult,
            env_or("BENCH_SCALE_FIRSTS", 11usize),
        ),
    ];
    for (what, probe, n) in probes {
        let (a, b) = interleaved(small, big, probe, n).await;
        if matches!(probe, Probe::FirstResult) {
            eprintln!("first results, ms: small {a:?}, big {b:?}");
        }
        let (a, b) = (median(&a), median(&b));
        rows.push((what, a, b));
    }
    rows
}

/// The milliseconds of `n` probes on each side, one side then the other (which side goes
/// first alternates).
async fn interleaved(small: &Side, big: &Side, probe: Probe, n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        if i % 2 == 0 {
            a.push(small.probe(probe).await);
            b.push(big.probe(probe).await);
        } else {
            b.push(big.probe(probe).await);
            a.push(small.probe(probe).await);
        }
    }
    (a, b)
}

impl Side {
    /// Milliseconds one `probe` took.
    async fn probe(&self, probe: Probe) -> f64 {
        let t = Instant::now();
        match probe {
            Probe::Jobs => {
                let page = (self.jobs.page(JobsFilter::All, Some(PAGE), None).await)
                    .expect("a page of jobs");
                assert_eq!(page.jobs.len(), PAGE as usize);
            }
            Probe::Ls => {
                let (files, _) =
                    (self.fs.ls_page("bench", Some(PAGE), None).await).expect("a page of files");
                assert_eq!(files.len(), PAGE as usize);
            }
            Probe::ApiJobs => return self.http("/api/jobs?limit=100", Some("jobs")).await,
            Probe::Health => return self.http("/healthz", None).await,
            Probe::ApiFiles => {
                return self
                    .http("/api/files?prefix=bench&limit=100", Some("files"))
                    .await
            }
            Probe::FirstResult => return self.first_result().await,
        }
        t.elapsed().as_secs_f64() * 1e3
    }

    /// Milliseconds of a GET of `path`, whose answer lists a full page under `key` if given.
    async fn http(&self, path: &str, key: Option<&'static str>) -> f64 {
        let (addr, path) = (self.addr.clone(), path.to_string());
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let a = get(&addr, &path, &[]);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            if let Some(key) = key {
                let listed = a.json()[key].as_array().map_or(0, Vec::len);
                assert_eq!(listed, PAGE as usize, "{path}: a full page");
            }
            ms
        })
        .await
        .expect("the request ran")
    }

    /// Milliseconds from submitting a one-pass inference job to its first results message on
    /// the bus; waits for the job's end.
    async fn first_result(&self) -> f64 {
        let client = &self.cluster.client;
        let mut results = (client
            .subscribe(bus_schemas::subjects::all_job_results())
            .await)
            .expect("a subscription");
        client.flush().await.expect("the subscription is sent");
        let t = Instant::now();
        let id = (self.jobs.submit(serve_spec("mlp", Some(1))).await).expect("submitted");
        let subject = bus_schemas::subjects::job_results(&id);
        let first = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(m) = results.next().await {
                if m.subject.as_str() == subject {
                    return t.elapsed();
                }
            }
            panic!("the results subscription ended");
        });
        let ms = first
            .await
            .expect("a first result within 120 s")
            .as_secs_f64()
            * 1e3;
        wait_until("the job ends", Duration::from_secs(300), || async {
            self.jobs.get(&id).await.ok().filter(|j| j.state.is_final())
        })
        .await;
        ms
    }
}

/// The CPU milliseconds per second of process `pid` over `secs`.
async fn cpu_ms_per_s(pid: u32, secs: u64) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds(pid) - before) * 1e3 / secs as f64
}

/// Waits for the work writing the history left behind (each node rewrites the label of every
/// new blob once, with its version number, and fsyncs it; the watches catch up): until, over
/// the same 5 s window, the big cluster's coordinator uses at most twice the small one's CPU
/// (or 20 ms/s), at most 15 min. Returns the seconds waited.
async fn settle(small: u32, big: u32) -> f64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(900) {
        let (a, b) = tokio::join!(cpu_ms_per_s(small, 5), cpu_ms_per_s(big, 5));
        if b <= (2.0 * a).max(20.0) {
            break;
        }
    }
    t.elapsed().as_secs_f64()
}

/// Keeps both clusters up for `BENCH_SCALE_HOLD` seconds (default 0) after measuring, for a
/// look with a profiler; prints where each coordinator is.
async fn hold(sides: &[&Side]) {
    let secs = env_or("BENCH_SCALE_HOLD", 0u64);
    if secs == 0 {
        return;
    }
    for (side, what) in sides.iter().zip(["small", "big"]) {
        eprintln!(
            "{what}: coordinator pid {} at http://{}",
            side.pid, side.addr
        );
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

fn report(rows: &[Row], n_jobs: usize, n_files: usize, settled: f64) {
    println!("| figure | 100 jobs, 100 files | {n_jobs} jobs, {n_files} files | ratio |");
    println!("|---|---|---|---|");
    for (what, a, b) in rows {
        println!("| {what} | {a:.2} | {b:.2} | {:.2} |", b / a.max(1e-9));
    }
    println!(
        "\nTwo clusters side by side, requests interleaved. The work writing the history left \
         (label rewrites, watches) took {settled:.0} s to settle."
    );
}
