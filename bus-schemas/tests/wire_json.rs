//! The JSON the dashboard's API sends of the wire types, checked in under
//! `frontend/src/test/wire/`. The frontend's tests parse the same files with its schemas
//! (`frontend/src/schemas/wire.test.ts`) and fail on a field they do not know, so a field
//! added, renamed or reshaped on either side fails a test until the other side follows.
//! After changing a type on purpose, rewrite the files with
//! `IDUNNO_UPDATE_WIRE=1 cargo test -p bus-schemas --test wire_json`.

use bus_schemas::jobs::{
    Attempt, ImportSpec, JobOutcome, JobRecord, JobSpec, JobState, Progress, TrainSpec,
};
use bus_schemas::sdfs::{FileInfo, VersionInfo};
use bus_schemas::serve::{
    BatchDeaths, PendingBatch, ProcStats, QueryResult, ServeSpec, ServeState,
};
use serde::Serialize;
use std::path::PathBuf;

fn wire_dir() -> PathBuf {
    // Run time, not compile time: a test binary may be reused from another checkout's build.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../frontend/src/test/wire")
}

/// Compares `value`'s JSON with the checked-in file `name` (or rewrites it when asked).
fn check<T: Serialize>(name: &str, value: &T) {
    let path = wire_dir().join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(value).expect("the sample serialises") + "\n";
    if std::env::var_os("IDUNNO_UPDATE_WIRE").is_some() {
        std::fs::write(&path, &json).expect("the wire fixture is written");
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        kept,
        json,
        "{} is not what the Rust types send: rewrite it with IDUNNO_UPDATE_WIRE=1 and make the \
         frontend's schemas follow",
        path.display()
    );
}

fn attempt(worker: &str, died: Option<&str>) -> Attempt {
    Attempt {
        attempt: 1,
        worker: worker.into(),
        assigned_ms: 1_700_000_000_000,
        resumed_at_epoch: Some(0),
        generation: Some(1_700_000_000_001),
        started_ms: Some(1_700_000_000_010),
        died: died.map(str::to_string),
        group: None,
    }
}

fn serve_job() -> JobRecord {
    let spec = ServeSpec {
        model: "resnet".into(),
        model_version: Some(2),
        dataset: "fm".into(),
        split: "test".into(),
        batch: 32,
        passes: Some(1),
        weight: 2,
    };
    let state = ServeState {
        model_version: 2,
        count: 10_000,
        total: Some(10_000),
        batch: 32,
        next_query: 640,
        next_batch: 20,
        pending: vec![PendingBatch::new(19, 608, 32)],
        done: 608,
        correct: Some(550),
        workers: vec!["n1".into(), "n2".into()],
        by_worker: [("n1".to_string(), 320), ("n2".to_string(), 288)].into(),
        rate: 151.5,
        proc_ms: Some(ProcStats {
            mean: 20.5,
            std: 3.25,
            median: 19.75,
            p90: 24.5,
            p95: 26.0,
            p99: 31.5,
        }),
        deaths: vec![BatchDeaths {
            batch_id: 7,
            workers: vec!["n3".into()],
            last: "n3".into(),
        }],
    };
    JobRecord {
        state: JobState::Running,
        attempts: vec![attempt("n1", None)],
        ..JobRecord::queued(
            "serve-1".into(),
            JobSpec::Serve(spec),
            1_699_999_999_000,
            Some(state),
        )
    }
}

fn train_job() -> JobRecord {
    let spec = TrainSpec {
        arch: "cnn".into(),
        name: "cnn".into(),
        dataset: "fm".into(),
        epochs: 5,
        batch: 64,
        lr: Some(0.01),
        limit: Some(6_000),
        seed: 7,
        workers: 1,
    };
    let progress = Progress {
        job_id: "train-1".into(),
        worker: "n2".into(),
        attempt: 2,
        epoch: 5,
        epochs: 5,
        step: 470,
        steps: 470,
        loss: 0.25,
        accuracy: 0.91,
        images_per_s: 890.5,
        resumed_at_epoch: 3,
        queries: 0,
        total: None,
        query_rate: 0.0,
        ..Default::default()
    };
    JobRecord {
        state: JobState::Succeeded,
        finished_ms: Some(1_700_000_100_000),
        attempts: vec![attempt("n1", Some("n1 failed")), attempt("n2", None)],
        checkpoint_epochs: 5,
        checkpoint_version: Some(3),
        progress: Some(progress),
        outcome: Some(JobOutcome {
            model_file: "models/cnn".into(),
            model_version: 3,
            test_accuracy: Some(0.912),
            results_file: None,
            seconds: 95.5,
            steps_file: None,
        }),
        ..JobRecord::queued(
            "train-1".into(),
            JobSpec::Train(spec),
            1_700_000_000_000,
            None,
        )
    }
}

fn import_job() -> JobRecord {
    let spec = ImportSpec {
        name: "resnet-ts".into(),
        dataset: "fm".into(),
        upload: "uploads/resnet-ts.pt".into(),
        mean: vec![0.5],
        std: vec![0.25],
    };
    JobRecord {
        state: JobState::Failed,
        finished_ms: Some(1_700_000_000_500),
        error: Some("not a loadable TorchScript file".into()),
        ..JobRecord::queued(
            "import-1".into(),
            JobSpec::Import(spec),
            1_700_000_000_000,
            None,
        )
    }
}

#[test]
fn the_frontend_fixtures_are_what_the_rust_types_send() {
    check("serve-job", &serve_job());
    check("train-job", &train_job());
    check("import-job", &import_job());
    let version = |v: u64, replication| VersionInfo {
        version: v,
        blob: format!("{v:032x}"),
        size: 1234,
        sha256: "ab".repeat(32),
        replicas: vec!["n1".into(), "n2".into(), "n3".into()],
        created_ms: 1_700_000_000_000 + v,
        replication,
        attrs: [("accuracy".to_string(), "0.91".to_string())].into(),
    };
    let file = FileInfo {
        name: "models/cnn".into(),
        versions: vec![version(1, None), version(2, Some(4))],
        pinned: vec![1],
    };
    check("file", &file);
    let result = QueryResult {
        query_id: 12,
        sample: 9_012,
        predicted: 3,
        class_name: "Dress".into(),
        score: 0.875,
        label: Some(3),
    };
    check("query-result", &result);
}
