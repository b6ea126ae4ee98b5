//! Scale benchmark (`make bench`): what a cluster's history costs. One 3-node cluster is
//! measured twice in one run: first holding one page of history (100 ended jobs, 100 files),
//! then holding 10,000 ended jobs and 20,000 files. Each time: the coordinator's CPU per
//! second while no job runs, the latency of a page (100 entries) of `jobs`, `ls`,
//! `/api/jobs` and `/api/files`, and the time from submitting an inference job to its first
//! result. Flat (the bar) means within 20% of the first figures.
//!
//! The ended jobs are records written straight into the job bucket (what a finished job
//! leaves there); the files are real SDFS puts of small files (every byte replicated).
//! Nodes run with `--keep-jobs 100000` so that the retention keeps them all, and with
//! `--sdfs-store-slots 64` for the bulk load (a put refused as overloaded is tried again).
//!
//! Knobs (environment): `BENCH_SCALE_JOBS` (default 10000), `BENCH_SCALE_FILES` (default
//! 20000), `BENCH_SCALE_REQS` (requests per figure, default 100), `BENCH_SCALE_CPU_SECS`
//! (default 30), `BENCH_SCALE_SETTLE_SECS` (default 30), `BENCH_SCALE_FIRSTS` (serve jobs
//! timed, default 3).

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

/// One set of figures.
struct Figures {
    settle_s: f64,
    cpu_ms_per_s: f64,
    jobs_ms: f64,
    ls_ms: f64,
    api_jobs_ms: f64,
    api_files_ms: f64,
    first_result_s: f64,
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("## Scale benchmark\n");
    let flags = ["--keep-jobs", "100000", "--sdfs-store-slots", "64"];
    let c = Cluster::start_with(Path::new(NODE), 3, &flags).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "mlp", 1000).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (n_jobs, n_files) = (
        env_or("BENCH_SCALE_JOBS", 10_000usize),
        env_or("BENCH_SCALE_FILES", 20_000usize),
    );
    add_jobs(&c.client, 0..PAGE as usize).await;
    add_files(&fs, dir.path(), 0..PAGE as usize).await;
    let small = measure(&c, &fs, &jobs, None).await;
    let t = Instant::now();
    add_jobs(&c.client, PAGE as usize..n_jobs).await;
    add_files(&fs, dir.path(), PAGE as usize..n_files).await;
    eprintln!("history written in {:.0} s", t.elapsed().as_secs_f64());
    // Settled: within twice the small history's idle CPU (the figure is then taken over 30 s).
    let bound = (small.cpu_ms_per_s * 2.0).max(20.0);
    let big = measure(&c, &fs, &jobs, Some(bound)).await;
    report(&small, &big, n_jobs, n_files);
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

/// Every figure, on the cluster as it is.
async fn measure(
    c: &Cluster,
    fs: &SdfsClient,
    jobs: &JobsClient,
    settled_below: Option<f64>,
) -> Figures {
    let reqs = env_or("BENCH_SCALE_REQS", 100usize);
    let coordinator = c.coordinator().await;
    let node = c
        .nodes
        .iter()
        .find(|n| n.id == coordinator)
        .expect("the coordinator");
    let addr = c
        .seen(&node.id, &node.id)
        .await
        .and_then(|m| m.http)
        .expect("its dashboard");
    let settle_s = settle(node.pid(), settled_below).await;
    // Over a window that holds one of the keeper's periodic full passes (every 30 s).
    let secs = env_or("BENCH_SCALE_CPU_SECS", 30u64);
    eprintln!("measuring the coordinator {} (pid {})", node.id, node.pid());
    let cpu_ms_per_s = cpu_ms_per_s(node.pid(), secs).await;
    let jobs_ms = time(reqs, || async {
        let page = jobs
            .page(JobsFilter::All, Some(PAGE), None)
            .await
            .expect("a page of jobs");
        assert_eq!(page.jobs.len(), PAGE as usize);
    })
    .await;
    let ls_ms = time(reqs, || async {
        let (files, _) = fs
            .ls_page("bench", Some(PAGE), None)
            .await
            .expect("a page of files");
        assert_eq!(files.len(), PAGE as usize);
    })
    .await;
    let api_jobs_ms = time_http(&addr, ("/api/jobs?limit=100", "jobs"), reqs).await;
    let files = ("/api/files?prefix=bench&limit=100", "files");
    let api_files_ms = time_http(&addr, files, reqs).await;
    let mut firsts = Vec::new();
    for _ in 0..env_or("BENCH_SCALE_FIRSTS", 3usize) {
        firsts.push(first_result(jobs).await);
    }
    Figures {
        settle_s,
        cpu_ms_per_s,
        jobs_ms,
        ls_ms,
        api_jobs_ms,
        api_files_ms,
        first_result_s: median(&firsts),
    }
}

/// The coordinator's CPU milliseconds per second over `secs`.
async fn cpu_ms_per_s(pid: u32, secs: u64) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds(pid) - before) * 1e3 / secs as f64
}

/// Waits for the work writing the history left behind (each node rewrites the label of every
/// new blob once, with its version number, and fsyncs it; the watches catch up): until a 5 s
/// window of the coordinator's CPU is below `below` ms/s (at most 15 min), or 30 s without a
/// bound. Returns the seconds waited.
async fn settle(pid: u32, below: Option<f64>) -> f64 {
    let t = Instant::now();
    match below {
        None => tokio::time::sleep(Duration::from_secs(30)).await,
        Some(bound) => {
            while t.elapsed() < Duration::from_secs(900) && cpu_ms_per_s(pid, 5).await > bound {}
        }
    }
    t.elapsed().as_secs_f64()
}

/// The median milliseconds of `n` calls of `f`, one after the other.
async fn time<F, Fut>(n: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&ms)
}

/// The median milliseconds of `n` GETs of `path`, whose answer lists a page under `key`.
async fn time_http(addr: &str, (path, key): (&str, &'static str), n: usize) -> f64 {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let a = get(&addr, &path, &[]);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            let body = a.json();
            let listed = body[key].as_array().map_or(0, Vec::len);
            assert_eq!(listed, PAGE as usize, "{path}: a full page");
        }
        median(&ms)
    })
    .await
    .expect("the requests ran")
}

/// Seconds from submitting a one-pass inference job to its first result; waits for its end.
async fn first_result(jobs: &JobsClient) -> f64 {
    let t = Instant::now();
    let id = jobs
        .submit(serve_spec("mlp", Some(1)))
        .await
        .expect("submitted");
    wait_until("a first result", Duration::from_secs(120), || async {
        let s = jobs.get(&id).await.ok()?.serve?;
        (s.done > 0).then_some(())
    })
    .await;
    let first = t.elapsed().as_secs_f64();
    wait_until("the job ends", Duration::from_secs(300), || async {
        jobs.get(&id).await.ok().filter(|j| j.state.is_final())
    })
    .await;
    first
}

fn report(small: &Figures, big: &Figures, n_jobs: usize, n_files: usize) {
    println!("| figure | 100 jobs, 100 files | {n_jobs} jobs, {n_files} files | ratio |");
    println!("|---|---|---|---|");
    let rows = [
        (
            "coordinator CPU, ms per s, idle",
            small.cpu_ms_per_s,
            big.cpu_ms_per_s,
        ),
        (
            "`jobs` (page of 100), median ms",
            small.jobs_ms,
            big.jobs_ms,
        ),
        (
            "`ls bench` (page of 100), median ms",
            small.ls_ms,
            big.ls_ms,
        ),
        (
            "`/api/jobs?limit=100`, median ms",
            small.api_jobs_ms,
            big.api_jobs_ms,
        ),
        (
            "`/api/files?prefix=bench&limit=100`, median ms",
            small.api_files_ms,
            big.api_files_ms,
        ),
        (
            "submit → first result, median s",
            small.first_result_s,
            big.first_result_s,
        ),
    ];
    for (what, a, b) in rows {
        println!("| {what} | {a:.2} | {b:.2} | {:.2} |", b / a.max(1e-9));
    }
    println!(
        "\nThe work writing the history left (label rewrites, watches) took {:.0} s to settle.",
        big.settle_s
    );
}
