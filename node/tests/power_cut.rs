//! A power cut, measured from outside: the server's store and every node's data directory sit
//! on a FUSE layer that forgets writes not yet fsynced (`testkit::lazyfs`, as Jepsen's LazyFS).
//! Right after the last put is acknowledged every process is killed -9, the layer forgets what
//! was not fsynced, and everything starts again on the same directories: with the server
//! fsyncing before it acknowledges (`sync_interval: always`, as the shipped configs set),
//! acknowledged puts, finished jobs and the trained model must all still be there. The same cut
//! with JetStream's default sync must lose the puts: the layer is shown to catch the loss.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobSpec, JobState};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::lazyfs::{Forgotten, LazyFs};
use testkit::{wait_until, Cluster, NatsServer};

mod common;

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// Every file's versions (number, size, sha256), by name.
type Catalogue = BTreeMap<String, Vec<(u64, u64, String)>>;

async fn catalogue(fs: &SdfsClient) -> Option<Catalogue> {
    let files = fs.ls("").await.ok()?;
    let versions = |f: &bus_schemas::sdfs::FileInfo| {
        (f.versions.iter())
            .map(|v| (v.version, v.size, v.sha256.clone()))
            .collect()
    };
    Some(
        files
            .iter()
            .map(|f| (f.name.clone(), versions(f)))
            .collect(),
    )
}

/// The bytes of `name` at `version`, once some replica serves them (up to 90 s).
async fn read_back(fs: &SdfsClient, name: &str, version: u64, dir: &Path) -> Vec<u8> {
    let out = dir.join("out");
    let what = format!("{name} v{version} reads back");
    wait_until(&what, Duration::from_secs(90), || async {
        fs.get(name, Some(version), &out, None).await.ok()
    })
    .await;
    std::fs::read(&out).unwrap()
}

/// Puts two versions of each of 6 files; returns (name, version, bytes) of every version.
async fn put_files(fs: &SdfsClient, dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut written = Vec::new();
    for i in 0..6u32 {
        let name = format!("cut/f{i}");
        for round in 0..2u32 {
            let bytes: Vec<u8> = (0..100_000u32).map(|k| (k * 7 + i + round) as u8).collect();
            let path = dir.join(format!("f{i}-{round}"));
            std::fs::write(&path, &bytes).unwrap();
            let v = fs.put(&path, &name, None).await.unwrap();
            written.push((name.clone(), v, bytes));
        }
    }
    written
}

/// The trained model's file and version, from its job's record.
async fn trained(jobs: &JobsClient) -> (String, u64) {
    let all = jobs.list().await.unwrap();
    let job = (all.iter())
        .find(|j| matches!(j.spec, JobSpec::Train(_)) && j.state == JobState::Succeeded)
        .expect("a succeeded training job");
    let outcome = job.outcome.as_ref().unwrap();
    (outcome.model_file.clone(), outcome.model_version)
}

/// A nats-server and 3 nodes with all their storage on one power-cut layer, which is dropped
/// after them (struct fields drop in order, also while a failed test unwinds).
struct Rig {
    c: Cluster,
    disk: LazyFs,
}

impl Rig {
    /// `synced`: the server fsyncs before it acknowledges (`sync_interval: always`).
    async fn start(synced: bool) -> Rig {
        let disk = LazyFs::mount();
        let nats = NatsServer::start_in(&disk.path().join("nats"), synced);
        let data = disk.path().join("nodes");
        let c = Cluster::start_in(nats, Path::new(NODE), 3, &[], Some(&data)).await;
        Rig { c, disk }
    }

    /// Every process killed -9 at once, what was not fsynced forgotten, and everything started
    /// again on the same directories; returns what was forgotten.
    async fn power_cut(&mut self) -> Forgotten {
        for node in &mut self.c.nodes {
            node.kill9();
        }
        let mut lost = Forgotten::default();
        let disk = &self.disk;
        self.c.nats.restart_after(|| lost = disk.power_cut());
        for i in 0..self.c.nodes.len() {
            let id = self.c.nodes[i].id.clone();
            self.c.nodes[i] = self.c.spawn_node(&id);
        }
        self.c.wait_all_alive(Duration::from_secs(60)).await;
        lost
    }
}

#[tokio::test]
async fn acknowledged_puts_finished_jobs_and_the_model_survive_a_power_cut() {
    let started = Instant::now();
    let mut rig = Rig::start(true).await;
    let (fs, jobs) = testkit::import_fashion(&rig.c.client, "fm").await;
    testkit::train_quick(&jobs, "mlp", 2000).await;
    let (model, model_version) = trained(&jobs).await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let spec = testkit::serve_spec("fixture", Some(1));
    let served = jobs.submit(spec).await.unwrap();
    let served = common::wait_job(&jobs, &served, Duration::from_secs(300)).await;
    common::check_results(&fs, &served).await;
    let dir = tempfile::tempdir().unwrap();
    let model_bytes = read_back(&fs, &model, model_version, dir.path()).await;
    let written = put_files(&fs, dir.path()).await;
    let acked = Instant::now();
    let before = catalogue(&fs).await.expect("SDFS lists its files");
    let finished: BTreeMap<String, JobState> = (jobs.list().await.unwrap().into_iter())
        .map(|j| (j.id, j.state))
        .collect();
    assert!(
        finished.values().all(|s| *s == JobState::Succeeded),
        "{finished:?}"
    );

    let cut = acked.elapsed();
    let lost = rig.power_cut().await;
    eprintln!("power cut {cut:?} after the last put's acknowledgement: forgot {lost:?}");
    for (name, version, bytes) in &written {
        let got = read_back(&fs, name, *version, dir.path()).await;
        assert!(&got == bytes, "{name} v{version} changed in the power cut");
    }
    let what = "every file and version is listed as before";
    wait_until(what, Duration::from_secs(30), || async {
        catalogue(&fs).await.filter(|now| now == &before)
    })
    .await;
    let still = fs.locate(&model, Some(model_version)).await.unwrap();
    assert_eq!(still.version, model_version);
    let got = read_back(&fs, &model, model_version, dir.path()).await;
    assert!(
        got == model_bytes,
        "the trained model changed in the power cut"
    );
    let what = "every job is on record, succeeded";
    wait_until(what, Duration::from_secs(30), || async {
        let now: BTreeMap<String, JobState> = (jobs.list().await.ok()?.into_iter())
            .map(|j| (j.id, j.state))
            .collect();
        (now == finished).then_some(())
    })
    .await;
    let again = jobs.get(&served.id).await.unwrap();
    common::check_results(&fs, &again).await;
    eprintln!("the power-cut test took {:?}", started.elapsed());
}

/// How many of `written` are listed, and how many read back byte-identical, once SDFS
/// answers again after a restart (one try each: what is lost does not come back).
async fn surviving(fs: &SdfsClient, written: &[(String, u64, Vec<u8>)]) -> (usize, usize) {
    let what = "SDFS answers after the power cut";
    let now = wait_until(what, Duration::from_secs(60), || catalogue(fs)).await;
    let listed = (written.iter())
        .filter(|(name, v, _)| now.get(name).is_some_and(|vs| vs.iter().any(|x| x.0 == *v)))
        .count();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut readable = 0;
    for (name, version, bytes) in written {
        if fs.get(name, Some(*version), &out, None).await.is_ok() {
            readable += usize::from(std::fs::read(&out).is_ok_and(|got| &got == bytes));
        }
    }
    (listed, readable)
}

/// The same power cut with JetStream's default sync (an fsync every 2 minutes, long after the
/// acknowledgement; this test cuts within seconds of the server's start, so before any): the
/// acknowledged puts are lost. The layer does catch a store that acknowledges before it fsyncs.
#[tokio::test]
async fn without_sync_always_acknowledged_puts_are_lost() {
    let mut rig = Rig::start(false).await;
    let fs = SdfsClient::new(rig.c.client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers", Duration::from_secs(30), || async {
        fs.ls("").await.ok()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let written = put_files(&fs, dir.path()).await;
    let lost = rig.power_cut().await;
    let (listed, readable) = surviving(&fs, &written).await;
    eprintln!(
        "default sync: of {} acknowledged versions {listed} listed, {readable} readable after \
         the power cut (forgot {lost:?})",
        written.len()
    );
    assert!(
        readable < written.len(),
        "nothing was lost: the layer caught nothing"
    );
}
