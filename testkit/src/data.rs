//! Putting real Fashion-MNIST into a test cluster, the way `idunno dataset import` does, and
//! training a quick model on it.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use std::path::Path;
use std::time::Duration;

/// Waits until SDFS answers, imports Fashion-MNIST (from the Debian package's files) as
/// `dataset`, and returns SDFS and jobs clients on `client`.
pub async fn import_fashion(
    client: &async_nats::Client,
    dataset: &str,
) -> (SdfsClient, JobsClient) {
    let fs = SdfsClient::new(client.clone(), Duration::from_secs(5));
    crate::wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok().map(|_| ())
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
    let manifest = idunno_datasets::import_fashion_mnist(src, dir.path(), dataset)
        .expect("Fashion-MNIST (Debian package dataset-fashion-mnist) converts");
    let mut files: Vec<String> = manifest.files().iter().map(|f| f.file.clone()).collect();
    files.push(idunno_datasets::MANIFEST_FILE.into());
    for f in files {
        let name = format!("datasets/{dataset}/{f}");
        fs.put(&dir.path().join(&f), &name, None)
            .await
            .expect("dataset file stored");
    }
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(10));
    (fs, jobs)
}

/// Trains `arch` for one epoch on `limit` samples of dataset `fm` (batch 64, seed 0) as
/// `models/<arch>`, and waits (up to 10 min) until it has succeeded.
pub async fn train_quick(jobs: &JobsClient, arch: &str, limit: u64) {
    use bus_schemas::jobs::{JobSpec, JobState, TrainSpec};
    let spec = JobSpec::Train(TrainSpec {
        arch: arch.into(),
        name: arch.into(),
        dataset: "fm".into(),
        epochs: 1,
        batch: 64,
        lr: None,
        limit: Some(limit),
        seed: 0,
        workers: 1,
    });
    let id = jobs.submit(spec).await.expect("training job submitted");
    let job = crate::wait_until(
        &format!("job {id} ends"),
        Duration::from_secs(600),
        || async { jobs.get(&id).await.ok().filter(|j| j.state.is_final()) },
    )
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
}

/// A continuous inference job of `model` over the test split of its own dataset, batch 16.
pub fn continuous(model: &str, weight: u32) -> bus_schemas::jobs::JobSpec {
    bus_schemas::jobs::JobSpec::Serve(bus_schemas::jobs::ServeSpec {
        model: model.into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        batch: 16,
        passes: None,
        weight,
    })
}

/// Writes `path`: `mb` MB (10^6 bytes) of pseudo-random bytes (xorshift, seeded by `mb`:
/// incompressible, cheap to make, the same for the same size), for transfer benchmarks.
pub fn random_file(path: &Path, mb: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create the file"));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ mb;
    let mut block = vec![0u8; 1 << 20];
    let mut left = mb * 1_000_000;
    while left > 0 {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write the file");
        left -= n as u64;
    }
    file.flush().expect("write the file");
}

/// Uploads the TorchScript `file` and imports it as `models/<name>` on dataset `fm` (pixels
/// normalised with Fashion-MNIST's mean 0.286 and std 0.353); panics unless the import
/// succeeds within two minutes.
pub async fn import_torchscript(fs: &SdfsClient, jobs: &JobsClient, file: &Path, name: &str) {
    use bus_schemas::jobs::{ImportSpec, JobSpec, JobState};
    let upload = format!("uploads/{name}.pt");
    fs.put(file, &upload, None)
        .await
        .expect("TorchScript uploaded");
    let spec = JobSpec::Import(ImportSpec {
        name: name.into(),
        dataset: "fm".into(),
        upload,
        mean: vec![0.286],
        std: vec![0.353],
    });
    let id = jobs.submit(spec).await.expect("import job submitted");
    let job = crate::wait_until(
        &format!("job {id} ends"),
        std::time::Duration::from_secs(120),
        || async { jobs.get(&id).await.ok().filter(|j| j.state.is_final()) },
    )
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
}
