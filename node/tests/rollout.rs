//! Safe model rollout on a real cluster: aliases name versions, a canary takes its share of a
//! steady stream of online requests, promote and rollback switch every node at once, no
//! request fails meanwhile, and a version an alias names is never pruned nor deleted.

use bus_client::jobs::{JobsClient, JobsError};
use bus_client::sdfs::SdfsClient;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use bus_schemas::jobs::{JobsErrorKind, JobsRequest};
use bus_schemas::models::{Arm, RoutesStatus};
use bus_schemas::subjects;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::{import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
mod common;

use common::{import_fixture, test_pngs};

/// Clients sending requests one after another, at once.
const CLIENTS: usize = 4;
/// Test images the stream cycles through.
const IMAGES: usize = 64;

/// One answered request: when it was sent, and the version that answered (`Err`: why not).
type Sent = (Instant, Result<u64, String>);

/// The first `n` test labels.
fn test_labels(n: usize) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
    let manifest = idunno_datasets::import_fashion_mnist(src, dir.path(), "fm").unwrap();
    let split = idunno_datasets::load_split(dir.path(), &manifest, "test").unwrap();
    split.labels.unwrap()[..n].to_vec()
}

/// `CLIENTS` clients asking for `model` (a bare name) until `stop`, each request one image
/// with its label; every answer is kept.
fn stream(client: &async_nats::Client, stop: Arc<Mutex<bool>>) -> Arc<Mutex<Vec<Sent>>> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let (pngs, labels) = (test_pngs(IMAGES), test_labels(IMAGES));
    for k in 0..CLIENTS {
        let (client, stop, sent) = (client.clone(), stop.clone(), sent.clone());
        let (pngs, labels) = (pngs.clone(), labels.clone());
        tokio::spawn(async move {
            let mut i = k;
            while !*stop.lock().unwrap() {
                let req = InferRequest {
                    model: "fixture".into(),
                    version: None,
                    images: vec![ByteBuf::from(pngs[i % IMAGES].clone())],
                    tensor: None,
                    labels: vec![labels[i % IMAGES]],
                    timeout_ms: 20_000,
                };
                let at = Instant::now();
                let wait = Duration::from_secs(30);
                let reply = bus_client::request(&client, subjects::infer(), &req, wait).await;
                let got = match reply {
                    Ok(InferReply::Done { version, .. }) => Ok(version),
                    Ok(InferReply::Error { message, .. }) => Err(message),
                    Err(e) => Err(e.to_string()),
                };
                sent.lock().unwrap().push((at, got));
                i += CLIENTS;
            }
        });
    }
    sent
}

/// Requests sent from `from` on, once at least `n` of them were answered.
async fn answered_after(sent: &Mutex<Vec<Sent>>, from: Instant, n: usize) -> Vec<Sent> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let after: Vec<Sent> = (sent.lock().unwrap().iter())
            .filter(|(at, _)| *at >= from)
            .cloned()
            .collect();
        if after.len() >= n {
            return after;
        }
        assert!(
            Instant::now() < deadline,
            "only {} answers in 120 s",
            after.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long after `changed` a request was still sent to `old`: the latest such send (zero if
/// none was).
fn took_effect(sent: &[Sent], changed: Instant, old: u64) -> Duration {
    (sent.iter())
        .filter(|(at, v)| *at >= changed && v.as_ref().ok() == Some(&old))
        .map(|(at, _)| *at - changed)
        .max()
        .unwrap_or_default()
}

/// Sends `req` (a promote or rollback from version `from` to `to`) under the stream: the
/// alias names `to` after it, and no request sent 1 s after it began got `from`.
async fn switch(
    jobs: &JobsClient,
    sent: &Mutex<Vec<Sent>>,
    req: JobsRequest,
    (from, to): (u64, u64),
    what: &str,
) -> RoutesStatus {
    let began = Instant::now();
    let status = routes(jobs, req).await;
    assert_eq!(status.routes.aliases["production"], to, "{what}");
    let after = answered_after(sent, began, 1000).await;
    let within = took_effect(&after, began, from);
    println!("{what} took effect within {within:?}");
    assert!(within < Duration::from_secs(1), "{what}: {within:?}");
    status
}

async fn routes(jobs: &JobsClient, req: JobsRequest) -> RoutesStatus {
    jobs.routes(req).await.unwrap()
}

#[tokio::test]
async fn a_canary_takes_its_share_and_promote_and_rollback_switch_without_a_failed_request() {
    let c = Cluster::start_with(Path::new(NODE), 3, &["--keep-versions", "2"]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    import_fixture(&fs, &jobs, "fixture").await;
    let model = |alias: &str| ("fixture".to_string(), alias.to_string());
    let (m, production) = model("production");
    let alias = JobsRequest::Alias {
        model: m.clone(),
        alias: production.clone(),
        version: Some(1),
    };
    let status = routes(&jobs, alias).await;
    assert_eq!(status.routes.aliases[&production], 1);
    assert_eq!(status.versions, [1, 2]);

    let stop = Arc::new(Mutex::new(false));
    let sent = stream(&c.client, stop.clone());
    let warm = answered_after(&sent, Instant::now(), 200).await;
    assert!(
        warm.iter().all(|(_, v)| v == &Ok(1)),
        "a bare name follows production"
    );

    // The canary at 10%: its share of the requests sent once every node has the rollout.
    let rollout = JobsRequest::Rollout {
        model: m.clone(),
        alias: production.clone(),
        version: 2,
        percent: 10.0,
    };
    let started = Instant::now();
    routes(&jobs, rollout).await;
    let window = answered_after(&sent, started + Duration::from_secs(1), 3000).await;
    let canary = window.iter().filter(|(_, v)| v == &Ok(2)).count();
    let share = canary as f64 * 100.0 / window.len() as f64;
    println!("canary share: {share:.2}% of {} requests", window.len());
    assert!((8.0..=12.0).contains(&share), "canary share {share}%");

    // Promote: every request sent from then on goes to version 2.
    let promote = JobsRequest::Promote {
        model: m.clone(),
        alias: production.clone(),
    };
    let status = switch(&jobs, &sent, promote, (1, 2), "promote").await;
    let arms = &status.figures;
    let (base, canary) = (&arms[0], &arms[1]);
    assert_eq!(
        (base.arm, canary.arm),
        (Some(Arm::Baseline), Some(Arm::Canary))
    );
    assert!(canary.ok > 0 && base.ok > 8 * canary.ok, "{arms:?}");
    assert_eq!(base.errors + canary.errors, 0, "{arms:?}");
    // Both versions are the fixture: each arm's accuracy is the fixture's on the images sent.
    let predicted = &common::expected().predicted[..IMAGES];
    let labels = test_labels(IMAGES);
    let right = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count();
    let want = right as f64 / IMAGES as f64;
    for arm in arms {
        let accuracy = arm.accuracy().expect("labels were given");
        println!("{:?} v{}: {} ok, accuracy {accuracy:.4} (fixture {want:.4}), p50 ≤{:?} ms, p99 ≤{:?} ms",
            arm.arm, arm.version, arm.ok, arm.latency_ms(0.5), arm.latency_ms(0.99));
        assert!((accuracy - want).abs() < 0.1, "{arm:?}");
        assert!(arm.latency_ms(0.99).is_some(), "{arm:?}");
    }

    // Rollback: production names version 1 again (what it named before the promote).
    let rollback = JobsRequest::Rollback {
        model: m.clone(),
        alias: production.clone(),
    };
    switch(&jobs, &sent, rollback, (2, 1), "rollback").await;

    *stop.lock().unwrap() = true;
    let all = sent.lock().unwrap().clone();
    let failed: Vec<&Sent> = all.iter().filter(|(_, v)| v.is_err()).collect();
    println!("{} requests, {} failed", all.len(), failed.len());
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );

    pinned_versions_stay(&fs, &jobs).await;
    refusals(&jobs).await;
}

/// With `--keep-versions 2`, a new version prunes the oldest, never one an alias names; a
/// model file with named versions is not deleted.
async fn pinned_versions_stay(fs: &SdfsClient, jobs: &JobsClient) {
    import_fixture(fs, jobs, "fixture").await;
    let versions = |fs: SdfsClient| async move {
        let files = fs.ls("models/fixture").await.unwrap();
        (
            files[0]
                .versions
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            files[0].pinned.clone(),
        )
    };
    // production → 1, previous → 2: both named, so 3 versions are kept of at most 2.
    assert_eq!(versions(fs.clone()).await, (vec![1, 2, 3], vec![1, 2]));
    let e = fs.delete("models/fixture").await.unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
    let remove = JobsRequest::Alias {
        model: "fixture".into(),
        alias: "production".into(),
        version: None,
    };
    let status = jobs.routes(remove).await.unwrap();
    assert!(status.routes.aliases.is_empty() && status.routes.previous.is_empty());
    import_fixture(fs, jobs, "fixture").await;
    assert_eq!(versions(fs.clone()).await, (vec![3, 4], vec![]));
}

/// Changes the state does not allow are refused with a reason, and change nothing.
async fn refusals(jobs: &JobsClient) {
    let refused = |r: Result<RoutesStatus, JobsError>| match r {
        Err(JobsError::Refused { kind, message }) => (kind, message),
        other => panic!("not refused: {other:?}"),
    };
    let promote = JobsRequest::Promote {
        model: "fixture".into(),
        alias: "production".into(),
    };
    let (kind, why) = refused(jobs.routes(promote).await);
    assert_eq!(kind, JobsErrorKind::Conflict, "{why}");
    let alias = |version| JobsRequest::Alias {
        model: "fixture".into(),
        alias: "production".into(),
        version: Some(version),
    };
    let (kind, why) = refused(jobs.routes(alias(99)).await);
    assert_eq!(kind, JobsErrorKind::UnknownModel, "{why}");
    assert!(why.contains("no version 99"), "{why}");
    let rollout = JobsRequest::Rollout {
        model: "fixture".into(),
        alias: "production".into(),
        version: 4,
        percent: 10.0,
    };
    let (kind, why) = refused(jobs.routes(rollout).await);
    assert_eq!(kind, JobsErrorKind::Conflict, "{why}");
    assert!(why.contains("has no alias"), "{why}");
    let unknown = JobsRequest::Routes {
        model: "nope".into(),
    };
    let status = jobs.routes(unknown).await.unwrap();
    assert!(status.versions.is_empty() && status.routes.aliases.is_empty());
}
