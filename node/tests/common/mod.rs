//! Shared by the inference tests: the PyTorch-made fixture model registered in a cluster.

#![allow(dead_code)]

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{ImportSpec, JobRecord, JobSpec, JobState};
use std::path::Path;
use std::time::Duration;
use testkit::wait_until;

/// The TorchScript fixture's directory.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/torchscript");

/// What PyTorch predicted for the fixture on the 10000 test images.
#[derive(serde::Deserialize)]
pub struct Expected {
    /// Correct predictions.
    pub correct: u64,
    /// The predicted class of each test image.
    pub predicted: Vec<i64>,
}

/// Reads `expected.json`.
pub fn expected() -> Expected {
    serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/expected.json")).unwrap()).unwrap()
}

/// Waits until job `id` ends.
pub async fn wait_job(jobs: &JobsClient, id: &str, limit: Duration) -> JobRecord {
    wait_until(&format!("job {id} ends"), limit, || async {
        jobs.get(id).await.ok().filter(|j| j.state.is_final())
    })
    .await
}

/// Registers the fixture as `models/<name>` on dataset `fm`.
pub async fn import_fixture(fs: &SdfsClient, jobs: &JobsClient, name: &str) {
    let upload = format!("uploads/{name}.pt");
    fs.put(&Path::new(FIXTURES).join("fashion_cnn.pt"), &upload, None)
        .await
        .unwrap();
    let spec = JobSpec::Import(ImportSpec {
        name: name.into(),
        dataset: "fm".into(),
        upload,
        mean: vec![0.286],
        std: vec![0.353],
    });
    let id = jobs.submit(spec).await.unwrap();
    let done = wait_job(jobs, &id, Duration::from_secs(120)).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
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
