//! A hostile dataset on a real 3-node cluster: its images file decompresses to 100x the size
//! its manifest declares. Every worker refuses it without its memory growing past the declared
//! size plus a constant, the serve job fails once with a message naming the limit, no worker
//! is asked again, and every node keeps running and answering.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::{JobEvent, JobEventKind, JobSpec, JobState, ServeSpec};
use flate2::write::GzEncoder;
use flate2::Compression;
use futures::StreamExt;
use idunno_datasets::idx::{self, IdxType};
use idunno_datasets::{sha256_file, FileRef, Manifest, Source, SplitInfo, MANIFEST_VERSION};
use idunno_node::ml::arch::Arch;
use idunno_node::ml::model::Model;
use idunno_node::ml::modelfile::{Header, Payload};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use testkit::{holds_for, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
/// Samples the manifest declares: 10000 images of 28x28, 7.84 MB of data.
const SAMPLES: usize = 10_000;
const DECLARED: u64 = (SAMPLES * 784) as u64;
/// How much the gzip stream expands past the declared size.
const FACTOR: usize = 100;
/// The stated bound: no node's peak RSS grows by more than the declared data plus this.
const RSS_SLACK: u64 = 48 << 20;

/// Writes a gzipped IDX images file with header `dims` followed by `data_len` zero bytes,
/// compressing as it goes (the expanded stream is never held in memory).
fn write_bomb(path: &Path, dims: &[usize], data_len: usize) {
    let mut header = idx::encode(IdxType::U8, &[1], &[0]).unwrap();
    header.truncate(3);
    header.push(dims.len() as u8);
    for &d in dims {
        header.extend_from_slice(&(d as u32).to_be_bytes());
    }
    let mut gz = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    gz.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = data_len;
    while left > 0 {
        let n = left.min(zeros.len());
        gz.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    gz.finish().unwrap();
}

fn file_ref(dir: &Path, name: &str) -> FileRef {
    let (size, sha256) = sha256_file(&dir.join(name)).unwrap();
    FileRef {
        file: name.into(),
        size,
        sha256,
    }
}

/// A canonical dataset directory, as a user writing it by hand would, whose manifest declares
/// `SAMPLES` 28x28 images and whose images file is a gzip bomb with header `dims`.
fn hostile_dataset(dir: &Path, name: &str, dims: &[usize]) {
    write_bomb(
        &dir.join("test-images.idx"),
        dims,
        FACTOR * DECLARED as usize,
    );
    let labels: Vec<u8> = (0..SAMPLES).map(|i| (i % 10) as u8).collect();
    idx::write(
        &dir.join("test-labels.idx"),
        IdxType::U8,
        &[SAMPLES],
        &labels,
    )
    .unwrap();
    let split = SplitInfo {
        count: SAMPLES as u64,
        images: file_ref(dir, "test-images.idx"),
        labels: Some(file_ref(dir, "test-labels.idx")),
        files: None,
    };
    Manifest {
        version: MANIFEST_VERSION,
        name: name.into(),
        source: Source::Idx,
        shape: [1, 28, 28],
        classes: (0..10).map(|c| c.to_string()).collect(),
        splits: [("test".to_string(), split)].into_iter().collect(),
        mean: vec![],
        std: vec![],
        created_ms: 0,
    }
    .write(dir)
    .unwrap();
}

async fn put_dir(fs: &SdfsClient, dir: &Path, name: &str) {
    for f in ["test-images.idx", "test-labels.idx", "manifest.json"] {
        let remote = format!("datasets/{name}/{f}");
        fs.put(&dir.join(f), &remote, None).await.unwrap();
    }
}

/// A small mlp for 28x28 inputs and 10 classes, stored as `models/tiny`.
async fn put_model(fs: &SdfsClient, dir: &Path) {
    let header = Header {
        payload: Payload::Weights,
        arch: "mlp".into(),
        dataset: "bomb-header".into(),
        classes: (0..10).map(|c| c.to_string()).collect(),
        shape: [1, 28, 28],
        mean: vec![],
        std: vec![],
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: None,
        payload_sha256: String::new(),
    };
    let bytes = Model::builtin(Arch::Mlp, header, tch::Device::Cpu).to_file(None);
    std::fs::write(dir.join("tiny.model"), bytes).unwrap();
    fs.put(&dir.join("tiny.model"), "models/tiny", None)
        .await
        .unwrap();
}

/// A field (in kB) of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resets the peak RSS of `pid` to its current RSS; returns that RSS.
fn reset_peak(pid: u32) -> u64 {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    status_bytes(pid, "VmRSS:")
}

/// Lines of every node's log that say a worker fetched `remote`.
fn fetches(c: &Cluster, remote: &str) -> usize {
    c.nodes
        .iter()
        .map(|n| {
            let log = std::fs::read_to_string(n.data_dir.join("node.log")).unwrap_or_default();
            log.lines()
                .filter(|l| l.contains("fetching dataset file") && l.contains(remote))
                .count()
        })
        .sum()
}

fn serve(dataset: &str) -> JobSpec {
    JobSpec::Serve(ServeSpec {
        model: "tiny".into(),
        model_version: None,
        dataset: dataset.into(),
        split: "test".into(),
        batch: 16,
        passes: Some(1),
        weight: 1,
    })
}

#[tokio::test]
async fn a_gz_bomb_fails_its_job_once_without_growing_any_worker() {
    let mut c = Cluster::start(Path::new(NODE), 3).await;
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    let jobs = JobsClient::new(c.client.clone(), Duration::from_secs(10));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok().map(|_| ())
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    put_model(&fs, tmp.path()).await;
    // Two bombs: a header claiming 100x the manifest's samples, and a header that agrees with
    // the manifest over a stream that goes on to 100x.
    let cases = [
        ("bomb-header", vec![FACTOR * SAMPLES, 28, 28]),
        ("bomb-stream", vec![SAMPLES, 28, 28]),
    ];
    for (name, dims) in &cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        hostile_dataset(&dir, name, dims);
        let stored = std::fs::metadata(dir.join("test-images.idx"))
            .unwrap()
            .len();
        assert!(stored < DECLARED, "the bomb is {stored} bytes stored");
        put_dir(&fs, &dir, name).await;
    }
    let pids: Vec<u32> = c.nodes.iter().map(|n| n.pid()).collect();
    let mut events = c
        .client
        .subscribe(bus_schemas::subjects::job_events())
        .await
        .unwrap();
    for (name, _) in &cases {
        let before: Vec<u64> = pids.iter().map(|&p| reset_peak(p)).collect();
        let id = jobs.submit(serve(name)).await.unwrap();
        let job = wait_until(
            &format!("job {id} ends"),
            Duration::from_secs(60),
            || async { jobs.get(&id).await.ok().filter(|j| j.state.is_final()) },
        )
        .await;
        assert_eq!(job.state, JobState::Failed, "{job:?}");
        let error = job.error.unwrap_or_default();
        println!("{name}: {error}");
        assert!(error.contains("cannot be served"), "{error}");
        assert!(
            error.contains(&format!("{DECLARED} bytes of data are declared for it")),
            "{error}"
        );
        for ((&pid, before), node) in pids.iter().zip(&before).zip(&c.nodes) {
            let peak = status_bytes(pid, "VmHWM:");
            let grew = peak.saturating_sub(*before);
            println!("{name}: {} peak RSS grew by {grew} bytes", node.id);
            assert!(grew <= DECLARED + RSS_SLACK, "{}: grew by {grew}", node.id);
        }
        // Each worker fetched the bomb at most once, and nobody is asked again (a refused
        // worker used to be asked again after 5 s).
        let remote = format!("datasets/{name}/test-images.idx");
        let tried = fetches(&c, &remote);
        assert!((1..=3).contains(&tried), "{tried} fetches");
        holds_for(
            "the job stays failed and untried",
            Duration::from_secs(7),
            || async {
                let failed = jobs
                    .get(&id)
                    .await
                    .is_ok_and(|j| j.state == JobState::Failed);
                failed && fetches(&c, &remote) == tried
            },
        )
        .await;
        // Exactly one `failed` event.
        let mut failed = 0;
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {
            let ev: JobEvent = bus_schemas::decode(&msg.payload).unwrap();
            if ev.job_id == id && ev.event == JobEventKind::Failed {
                failed += 1;
            }
        }
        assert_eq!(failed, 1, "failed events of {id}");
    }
    for node in c.nodes.iter_mut() {
        assert!(node.is_running(), "{} died", node.id);
    }
    c.wait_all_alive(Duration::from_secs(10)).await;
    for id in c.ids() {
        assert!(c.stats(&id).await.is_some(), "{id} does not answer");
    }
    assert!(fs.ls("datasets").await.is_ok());
}
