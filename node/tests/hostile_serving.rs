//! Hostile input on the serving path, against a real 3-node cluster running a serve job:
//! work batches that break the limits sent straight to each worker's work subject, and
//! inference requests with huge counts, then a flood of online requests. Every case gets a
//! typed error, every node keeps running, and the job still answers every query exactly once.

mod common;

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::infer::{ByteBuf, InferErrorKind, InferReply, InferRequest};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, ServeSpec};
use bus_schemas::serve::{WorkBatch, WorkErrorKind, WorkReply};
use bus_schemas::subjects;
use common::{expected, import_fixture, wait_job};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// The memory bound every node stays under during the flood (resident set, from
/// `/proc/<pid>/status`): libtorch and the fixture take about 300 MiB; the limits on requests
/// in progress keep the flood's share small.
const RSS_BOUND_KIB: u64 = 1536 * 1024;

fn serve(batch: u32) -> JobSpec {
    JobSpec::Serve(ServeSpec {
        model: "fixture".into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        batch,
        passes: Some(1),
        weight: 1,
    })
}

async fn setup(extra: &[&str]) -> (Cluster, SdfsClient, JobsClient) {
    let c = Cluster::start_with(Path::new(NODE), 3, extra).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    (c, fs, jobs)
}

/// Waits until the job runs on at least one worker and returns them.
async fn workers(jobs: &JobsClient, id: &str) -> Vec<String> {
    wait_until("the job has workers", Duration::from_secs(60), || async {
        let job = jobs.get(id).await.ok()?;
        assert!(!job.state.is_final(), "ended too early: {job:?}");
        let w = job.serve?.workers;
        (!w.is_empty()).then_some(w)
    })
    .await
}

#[derive(serde::Deserialize)]
struct Line {
    query_id: u64,
    sample: u64,
    predicted: i64,
}

/// The job succeeded and its results file holds every query once, with PyTorch's answers.
async fn check_every_query_once(fs: &SdfsClient, job: &JobRecord) {
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let file = job.outcome.as_ref().and_then(|o| o.results_file.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    fs.get(&file.unwrap(), None, &path, None).await.unwrap();
    let want = expected().predicted;
    let mut seen = vec![0u32; want.len()];
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        let l: Line = serde_json::from_str(line).unwrap();
        seen[l.query_id as usize] += 1;
        assert_eq!(l.predicted, want[l.sample as usize]);
    }
    assert!(seen.iter().all(|&n| n == 1), "every query exactly once");
}

/// Every node process is still running and every node sees the others alive.
async fn all_alive(c: &mut Cluster) {
    for n in c.nodes.iter_mut() {
        assert!(n.is_running(), "{} exited", n.id);
    }
    c.wait_all_alive(Duration::from_secs(30)).await;
}

async fn send_batch(c: &Cluster, job: &str, worker: &str, batch: &WorkBatch) -> WorkReply {
    let subject = subjects::job_work(job, worker);
    bus_client::request(&c.client, subject, batch, Duration::from_secs(30))
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_batches_and_requests_get_typed_errors_and_the_job_completes() {
    let (mut c, fs, jobs) = setup(&[]).await;
    let id = jobs.submit(serve(20)).await.unwrap();
    let workers = workers(&jobs, &id).await;
    let hostile = [
        (0, u32::MAX, "1 to 4096 queries, not 4294967295"),
        (u64::MAX, 1, "overflows"),
        (u64::MAX - 10, 4096, "overflows"),
        (0, 0, "1 to 4096 queries, not 0"),
        (0, 4097, "not 4097"),
    ];
    for worker in &workers {
        for (first_query, len, says) in hostile {
            let batch = WorkBatch {
                job_id: id.clone(),
                batch_id: 1_000_000 + u64::from(len),
                first_query,
                len,
            };
            match send_batch(&c, &id, worker, &batch).await {
                WorkReply::Error { kind, message, .. } => {
                    assert_eq!(kind, WorkErrorKind::BadBatch, "{message}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{first_query} + {len} answered {other:?}"),
            }
        }
        let other_job = WorkBatch {
            job_id: "another-job".into(),
            batch_id: 7,
            first_query: 0,
            len: 8,
        };
        let reply = send_batch(&c, &id, worker, &other_job).await;
        assert!(
            matches!(&reply, WorkReply::Error { kind: WorkErrorKind::BadBatch, message, .. }
                if message.contains("another-job")),
            "{reply:?}"
        );
    }
    let huge = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: vec![ByteBuf::from(vec![0u8; 4]); 1025],
        timeout_ms: 1000,
        tensor: None,
    };
    let forever = InferRequest {
        labels: Vec::new(),
        images: vec![ByteBuf::from(vec![0u8; 4])],
        timeout_ms: u64::MAX,
        ..huge.clone()
    };
    for req in [huge, forever] {
        let reply: InferReply =
            bus_client::request(&c.client, subjects::infer(), &req, Duration::from_secs(30))
                .await
                .unwrap();
        assert!(
            matches!(
                reply,
                InferReply::Error {
                    kind: InferErrorKind::BadInput,
                    ..
                }
            ),
            "{reply:?}"
        );
    }
    all_alive(&mut c).await;
    let done = wait_job(&jobs, &id, Duration::from_secs(300)).await;
    check_every_query_once(&fs, &done).await;
    all_alive(&mut c).await;
}

/// One small PNG the fixture can classify.
fn png() -> Vec<u8> {
    let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * y) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[derive(Default)]
struct Tally {
    done: AtomicU64,
    overloaded: AtomicU64,
    other: AtomicU64,
}

/// `clients` tasks sending requests back to back until `stop`.
fn flood(
    c: &Cluster,
    clients: usize,
    stop: Instant,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let req = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: vec![ByteBuf::from(png()); 16],
        timeout_ms: 5_000,
        tensor: None,
    };
    (0..clients)
        .map(|_| {
            let (client, req, tally) = (c.client.clone(), req.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let wait = Duration::from_secs(10);
                    let reply = bus_client::infer(&client, &req, wait).await;
                    let counter = match reply {
                        Ok(InferReply::Done { .. }) => &tally.done,
                        Ok(InferReply::Error {
                            kind: InferErrorKind::Overloaded,
                            ..
                        }) => &tally.overloaded,
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

#[tokio::test]
async fn a_flood_of_online_requests_is_shed_within_a_memory_bound() {
    // 4 requests in progress per node, 12 in the cluster: 120 clients are 10x what it takes.
    let (mut c, fs, jobs) = setup(&["--infer-max-inflight", "4"]).await;
    let id = jobs.submit(serve(20)).await.unwrap();
    workers(&jobs, &id).await;
    let tally = Arc::new(Tally::default());
    let stop = Instant::now() + Duration::from_secs(20);
    let tasks = flood(&c, 120, stop, tally.clone());
    let pids: Vec<(String, u32)> = c.nodes.iter().map(|n| (n.id.clone(), n.pid())).collect();
    let mut peak = 0;
    while Instant::now() < stop {
        for (node, pid) in &pids {
            let rss = testkit::procstat::rss_kib(*pid);
            assert!(
                rss < RSS_BOUND_KIB,
                "{node} holds {rss} KiB during the flood"
            );
            peak = peak.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (done, shed, other) = (
        tally.done.load(Ordering::Relaxed),
        tally.overloaded.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
    );
    let pauses = common::infer_pauses(&c).await;
    eprintln!("flood: {done} answered, {shed} overloaded, {other} other; peak RSS {peak} KiB; the nodes left the queue group {pauses} times");
    assert!(done > 0, "some requests are answered during the flood");
    assert!(shed > 0, "the flood is shed with overloaded replies");
    assert_eq!(other, 0, "no request times out or goes unanswered");
    assert!(pauses > 0, "the nodes leave the queue group to shed load");
    all_alive(&mut c).await;
    // The nodes joined the queue group again: a request after the flood is answered.
    let req = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: vec![ByteBuf::from(png())],
        timeout_ms: 30_000,
        tensor: None,
    };
    let reply = bus_client::infer(&c.client, &req, Duration::from_secs(40)).await;
    assert!(matches!(reply, Ok(InferReply::Done { .. })), "{reply:?}");
    let done = wait_job(&jobs, &id, Duration::from_secs(300)).await;
    check_every_query_once(&fs, &done).await;
}
