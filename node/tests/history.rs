//! What a cluster keeps of its history, with a real nats-server and real nodes: the retention
//! of ended jobs (records and results), and pages of jobs and files with their cursors.

use bus_client::jobs::JobsError;
use bus_schemas::jobs::{JobRecord, JobState, JobsErrorKind, JobsFilter};
use std::path::Path;
use std::time::Duration;
use testkit::{serve_spec, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// Writes ended job `i` (ended at `i` ms after `base`) into the job bucket.
async fn ended(kv: &async_nats::jetstream::kv::Store, i: u64, base: u64) -> String {
    let id = format!("serve-old{i:03}");
    let record = JobRecord {
        state: JobState::Succeeded,
        finished_ms: Some(base + i),
        ..JobRecord::queued(id.clone(), serve_spec("m", Some(1)), base + i, None)
    };
    let bytes = bus_schemas::encode(&record).expect("encodes");
    kv.put(&id, bytes.into()).await.expect("written");
    id
}

/// The job bucket, once the nodes made it.
async fn job_bucket(c: &Cluster) -> async_nats::jetstream::kv::Store {
    let js = async_nats::jetstream::new(c.client.clone());
    wait_until("the job bucket", Duration::from_secs(30), || async {
        js.get_key_value(bus_schemas::subjects::JOBS_BUCKET)
            .await
            .ok()
    })
    .await
}

#[tokio::test]
async fn the_oldest_ended_jobs_beyond_keep_jobs_go_with_their_results() {
    let c = Cluster::start_with(Path::new(NODE), 2, &["--keep-jobs", "3"]).await;
    let kv = job_bucket(&c).await;
    let fs = bus_client::sdfs::SdfsClient::new(c.client.clone(), Duration::from_secs(10));
    let jobs = bus_client::jobs::JobsClient::new(c.client.clone(), Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r.jsonl");
    std::fs::write(&results, b"{}\n").unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(ended(&kv, i, 1_700_000_000_000).await);
    }
    // The oldest job's results, as a finished inference job leaves them.
    let oldest_results = format!("results/{}.jsonl", ids[0]);
    // SDFS may not listen yet on a cluster just started; a failed put commits nothing.
    wait_until(
        "the results file is put",
        Duration::from_secs(30),
        || async { fs.put(&results, &oldest_results, None).await.ok() },
    )
    .await;
    let kept = wait_until("3 ended jobs kept", Duration::from_secs(60), || async {
        let all = jobs.list().await.ok()?;
        (all.len() == 3).then_some(all)
    })
    .await;
    let kept: Vec<&str> = kept.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(kept, [&ids[5], &ids[4], &ids[3]], "the newest are kept");
    wait_until(
        "the oldest job's results go",
        Duration::from_secs(30),
        || async { fs.ls("results").await.ok()?.is_empty().then_some(()) },
    )
    .await;
    assert!(matches!(
        jobs.get(&ids[0]).await,
        Err(JobsError::Refused {
            kind: JobsErrorKind::NotFound,
            ..
        })
    ));
}

#[tokio::test]
async fn jobs_and_files_come_a_page_at_a_time_and_cursors_resume() {
    let c = Cluster::start(Path::new(NODE), 2).await;
    let kv = job_bucket(&c).await;
    let jobs = bus_client::jobs::JobsClient::new(c.client.clone(), Duration::from_secs(10));
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(ended(&kv, i, 1_700_000_000_000).await);
    }
    // Written: the first page any node answers shows them (the index answers once it holds
    // the bucket). The jobs API may not listen yet on a cluster just started.
    let first = wait_until("the jobs API answers", Duration::from_secs(30), || async {
        jobs.page(JobsFilter::Ended, Some(2), None).await.ok()
    })
    .await;
    let ids_of = |p: &[JobRecord]| p.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&first.jobs), [ids[4].clone(), ids[3].clone()]);
    let second = jobs
        .page(JobsFilter::Ended, Some(2), first.next)
        .await
        .unwrap();
    assert_eq!(ids_of(&second.jobs), [ids[2].clone(), ids[1].clone()]);
    let third = jobs
        .page(JobsFilter::Ended, Some(2), second.next)
        .await
        .unwrap();
    assert_eq!(ids_of(&third.jobs), [ids[0].clone()]);
    assert_eq!(third.next, None);
    let live = jobs.page(JobsFilter::Live, None, None).await.unwrap();
    assert!(live.jobs.is_empty());
    let bad = jobs
        .page(JobsFilter::All, None, Some("nonsense".into()))
        .await;
    assert!(
        matches!(
            bad,
            Err(JobsError::Refused {
                kind: JobsErrorKind::BadArgument,
                ..
            })
        ),
        "{bad:?}"
    );
    let fs = bus_client::sdfs::SdfsClient::new(c.client.clone(), Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, b"x").unwrap();
    for i in 0..5 {
        let name = format!("p/f{i}");
        wait_until("a file is put", Duration::from_secs(30), || async {
            fs.put(&local, &name, None).await.ok()
        })
        .await;
    }
    let (page, next) = fs.ls_page("p", Some(3), None).await.unwrap();
    let names: Vec<&str> = page.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["p/f0", "p/f1", "p/f2"]);
    let (rest, next) = fs.ls_page("p", Some(3), next).await.unwrap();
    let names: Vec<&str> = rest.iter().map(|f| f.name.as_str()).collect();
    assert_eq!((names, next), (vec!["p/f3", "p/f4"], None));
    assert_eq!(fs.ls("p").await.unwrap().len(), 5, "every page");
}
