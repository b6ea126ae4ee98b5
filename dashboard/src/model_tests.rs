use super::*;
use bus_schemas::control::{NodeResources, NodeStats};
use bus_schemas::jobs::{Attempt, ServeSpec, ServeState, TrainSpec};
use bus_schemas::membership::MemberRecord;

fn member(id: &str, state: MemberState) -> MemberRecord {
    MemberRecord {
        started_ms: None,
        id: id.into(),
        generation: 1,
        incarnation: 0,
        state,
        host: "h".into(),
        zone: None,
        http: None,
        last_heard_ms: Some(5),
    }
}

fn view() -> ViewSnapshot {
    ViewSnapshot {
        node: "n1".into(),
        coordinator: Some("n1".into()),
        members: vec![
            member("n1", MemberState::Alive),
            member("n2", MemberState::Alive),
            member("n3", MemberState::Failed),
        ],
        version: 7,
    }
}

fn job(id: &str, spec: JobSpec, state: JobState) -> JobRecord {
    JobRecord {
        state,
        attempts: vec![Attempt {
            started_ms: None,
            attempt: 1,
            worker: "n2".into(),
            assigned_ms: 2,
            resumed_at_epoch: None,
            generation: None,
            died: None,
            group: None,
        }],
        ..JobRecord::queued(id.into(), spec, 1, None)
    }
}

fn serve_job(id: &str, rate: f64) -> JobRecord {
    let spec = JobSpec::Serve(ServeSpec {
        model: "cnn".into(),
        model_version: None,
        dataset: "fm".into(),
        split: "test".into(),
        batch: 64,
        passes: None,
        weight: 1,
    });
    let mut j = job(id, spec, JobState::Running);
    j.serve = Some(ServeState {
        workers: vec!["n1".into(), "n2".into()],
        by_worker: [("n1".to_string(), 100), ("n2".to_string(), 60)].into(),
        rate,
        done: 160,
        proc_ms: Some(bus_schemas::serve::ProcStats {
            mean: 10.0,
            std: 1.0,
            median: 9.0,
            p90: 12.0,
            p95: 13.0,
            p99: 20.0,
        }),
        pending: vec![bus_schemas::serve::PendingBatch::new(3, 192, 64)],
        ..ServeState::default()
    });
    j
}

fn train_job() -> JobRecord {
    let spec = JobSpec::Train(TrainSpec {
        arch: "mlp".into(),
        name: "mlp".into(),
        dataset: "fm".into(),
        epochs: 1,
        batch: 32,
        lr: None,
        limit: None,
        seed: 0,
        workers: 1,
    });
    job("t-1", spec, JobState::Running)
}

#[test]
fn workers_carry_their_jobs_models_and_queries() {
    let jobs = vec![serve_job("s-1", 100.0), train_job()];
    let resources = NodeResources {
        cpu_cores: 0.5,
        cpus: 2,
        rss_bytes: 300 << 20,
        disk_free_bytes: 40 << 30,
        disk_total_bytes: 100 << 30,
        tch_threads: 1,
        device: "cpu".into(),
    };
    let stats = NodeStats {
        cached_models: vec!["cnn v1".to_string()],
        resources: Some(resources.clone()),
        ..NodeStats::default()
    };
    let stats = [("n2".to_string(), stats.clone()), ("n3".to_string(), stats)].into();
    let w = workers(&view(), &jobs, &stats);
    assert_eq!(w.len(), 3);
    assert!(w[0].coordinator && !w[1].coordinator);
    assert_eq!(w[0].training, None);
    assert_eq!(w[1].training.as_deref(), Some("t-1"));
    assert_eq!(w[0].serving, vec!["s-1".to_string()]);
    assert_eq!((w[0].queries, w[1].queries, w[2].queries), (100, 60, 0));
    assert_eq!(w[1].models, vec!["cnn v1".to_string()]);
    assert_eq!(w[1].resources.as_ref(), Some(&resources));
    assert_eq!(
        w[0].resources, None,
        "a node that did not answer has no figures"
    );
    let json = serde_json::to_value(&w[2]).unwrap();
    assert_eq!(
        json["state"], "failed",
        "the member's fields are flattened: {json}"
    );
}

#[test]
fn a_sample_sums_rates_and_reads_percentiles() {
    let mut ended = serve_job("s-old", 999.0);
    ended.state = JobState::Succeeded;
    let jobs = vec![
        serve_job("s-1", 100.0),
        serve_job("s-2", 50.0),
        ended,
        train_job(),
    ];
    let s = sample(7, &view(), &jobs, 2);
    assert_eq!(s.throughput, 150.0);
    assert_eq!(s.jobs.len(), 2);
    let j = &s.jobs[0];
    assert_eq!(
        (j.p50_ms, j.p90_ms, j.p99_ms, j.pending),
        (9.0, 12.0, 20.0, 1)
    );
    assert_eq!(s.members.alive, 2);
    assert_eq!(s.members.failed, 1);
    assert_eq!(s.failures, 2);
}

fn file(name: &str, replicas: &[&str], replication: Option<u32>) -> FileInfo {
    FileInfo {
        name: name.into(),
        pinned: vec![],
        versions: vec![VersionInfo {
            version: 1,
            blob: "b".into(),
            size: 10,
            sha256: "00".into(),
            replicas: replicas.iter().map(|r| r.to_string()).collect(),
            created_ms: 1,
            replication,
            attrs: Default::default(),
        }],
    }
}

#[test]
fn files_lacking_live_replicas_are_under_replicated() {
    let live = live_members(&view().members);
    assert_eq!(live.len(), 2);
    let rows = file_rows(
        vec![
            file("a", &["n1", "n2"], None),
            file("b", &["n1", "n3"], None),
            file("c", &["n2"], Some(1)),
        ],
        &live,
        4,
    );
    // Four wanted, but only two nodes live: two is enough.
    assert_eq!((rows[0].wanted, rows[0].under_replicated), (2, false));
    assert_eq!(rows[1].live_replicas, vec!["n1".to_string()]);
    assert!(rows[1].under_replicated);
    assert_eq!((rows[2].wanted, rows[2].under_replicated), (1, false));
}

#[test]
fn membership_events_are_counted_by_kind() {
    let mut c = EventCounts::default();
    c.count(MemberEventKind::Fail);
    c.count(MemberEventKind::Fail);
    c.count(MemberEventKind::Join);
    assert_eq!(c.by_kind["fail"], 2);
    assert_eq!(c.by_kind["join"], 1);
}
