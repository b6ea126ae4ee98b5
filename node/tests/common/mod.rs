//! Shared by the inference tests: the PyTorch-made fixture model registered in a cluster.

#![allow(dead_code)]

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobRecord, JobState};
use std::path::Path;
use std::time::Duration;

pub mod machines;

/// The TorchScript fixture's directory.
pub fn fixtures() -> std::path::PathBuf {
    testkit::repo_dir().join("node/tests/fixtures/torchscript")
}

/// What PyTorch predicted for the fixture on the 10000 test images.
#[derive(serde::Deserialize)]
pub struct Expected {
    /// Correct predictions.
    pub correct: u64,
    /// The predicted class of each test image.
    pub predicted: Vec<i64>,
}

/// The pixels of the first `n` Fashion-MNIST test images (28×28 each, one after another).
pub fn test_pixels(n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
    let manifest = idunno_datasets::import_fashion_mnist(src, dir.path(), "fm").unwrap();
    let split = idunno_datasets::load_split(dir.path(), &manifest, "test").unwrap();
    split.pixels[..n * 784].to_vec()
}

/// The first `n` Fashion-MNIST test images as PNG files.
pub fn test_pngs(n: usize) -> Vec<Vec<u8>> {
    test_pixels(n)
        .chunks(784)
        .map(|px| {
            let img = image::GrayImage::from_raw(28, 28, px.to_vec()).unwrap();
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        })
        .collect()
}

/// Reads `expected.json`.
pub fn expected() -> Expected {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

/// Waits until job `id` ends.
/// On a timeout the panic says what the last read showed (the record's state and progress, or
/// why it could not be read).
pub async fn wait_job(jobs: &JobsClient, id: &str, limit: Duration) -> JobRecord {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let last = match jobs.get(id).await {
            Ok(job) if job.state.is_final() => return job,
            Ok(job) => {
                let serve = job.serve.as_ref().map(|s| {
                    let pending = s.pending.len();
                    (s.done, s.total, pending, s.workers.clone())
                });
                let attempts = job.attempts.len();
                format!("{:?}, serve (done, total, pending, workers) {serve:?}, {attempts} attempt(s), error {:?}", job.state, job.error)
            }
            Err(e) => format!("not read: {e}"),
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for job {id} to end; the last read: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers the fixture as `models/<name>` on dataset `fm`.
pub async fn import_fixture(fs: &SdfsClient, jobs: &JobsClient, name: &str) {
    let file = fixtures().join("fashion_cnn.pt");
    testkit::import_torchscript(fs, jobs, &file, name).await;
}

/// How many times the nodes of `c` left the online-inference queue group to shed load, from
/// their `/metrics` (`idunno_infer_pauses_total`).
pub async fn infer_pauses(c: &testkit::Cluster) -> u64 {
    let mut total = 0;
    for n in &c.nodes {
        let rec = c.seen("n1", &n.id).await.expect("node in view");
        let addr = rec.http.expect("node serves a dashboard");
        let text = testkit::http::get(&addr, "/metrics", &[]).body;
        let line = text
            .lines()
            .find(|l| l.starts_with("idunno_infer_pauses_total "));
        total += line
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .expect("idunno_infer_pauses_total in /metrics");
    }
    total
}

/// One line of a results file.
#[derive(serde::Deserialize)]
struct Line {
    query_id: u64,
    sample: u64,
    predicted: i64,
    label: Option<i64>,
}

/// Checks the finished job's results file: every query once, PyTorch's predictions, and the
/// reported accuracy equal to the recomputed one.
pub async fn check_results(fs: &SdfsClient, job: &JobRecord) {
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let outcome = job.outcome.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let name = outcome.results_file.as_deref().unwrap();
    // Just after a restart, a replica's read subject may not yet have reached every server.
    testkit::wait_until(
        "the results file reads back",
        Duration::from_secs(30),
        || async { fs.get(name, None, &path, None).await.ok() },
    )
    .await;
    let expected = expected();
    let mut seen = vec![0u32; expected.predicted.len()];
    let mut correct = 0u64;
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        let l: Line = serde_json::from_str(line).unwrap();
        seen[l.query_id as usize] += 1;
        assert_eq!(l.sample, l.query_id);
        assert_eq!(l.predicted, expected.predicted[l.sample as usize]);
        correct += u64::from(l.label == Some(l.predicted));
    }
    assert!(seen.iter().all(|&n| n == 1), "every query exactly once");
    assert_eq!(correct, expected.correct);
    let reported = outcome.test_accuracy.unwrap();
    assert!(
        (reported - correct as f64 / 10_000.0).abs() < 1e-12,
        "reported {reported}, the results file {correct} of 10000 correct; {:?}",
        job.serve
    );
    let state = job.serve.as_ref().unwrap();
    assert_eq!((state.done, state.pending.len()), (10_000, 0));
}
