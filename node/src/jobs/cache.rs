//! Datasets and files a worker fetches from SDFS. A dataset's files are kept under
//! `<data-dir>/cache/datasets/<name>/` and fetched again only when their sha256 no longer
//! matches the manifest's.

use super::JobError;
use bus_client::sdfs::{SdfsClient, SdfsError};
use bus_schemas::sdfs::SdfsErrorKind;
use idunno_datasets::{Manifest, Split, MANIFEST_FILE};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// The SDFS directory of dataset `name`.
pub fn dataset_dir(name: &str) -> String {
    format!("datasets/{name}")
}

/// The worker's local copies.
pub struct Cache {
    root: PathBuf,
    sdfs: SdfsClient,
    lock: Mutex<()>,
}

impl Cache {
    /// A cache under `data_dir`.
    pub fn new(data_dir: &Path, sdfs: SdfsClient) -> Cache {
        Cache {
            root: data_dir.join("cache"),
            sdfs,
            lock: Mutex::new(()),
        }
    }

    /// The SDFS client.
    pub fn sdfs(&self) -> &SdfsClient {
        &self.sdfs
    }

    /// A scratch file path under the cache.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(name)
    }

    /// Reads an SDFS file (a version, or the newest) into memory.
    pub async fn read(&self, name: &str, version: Option<u64>) -> Result<Vec<u8>, JobError> {
        let tmp = self.scratch(&format!(
            "{}-{}",
            rand::random::<u64>(),
            name.replace('/', "_")
        ));
        create_parent(&tmp).await?;
        let got = self.sdfs.get(name, version, &tmp, None).await;
        let bytes = match got {
            Ok(_) => tokio::fs::read(&tmp).await.map_err(JobError::io(&tmp)),
            Err(e) => Err(JobError::from_sdfs(name, e)),
        };
        let _ = tokio::fs::remove_file(&tmp).await;
        bytes
    }

    /// The manifest of dataset `name`.
    pub async fn manifest(&self, name: &str) -> Result<Manifest, JobError> {
        let file = format!("{}/{MANIFEST_FILE}", dataset_dir(name));
        let bytes = self.read(&file, None).await.map_err(|e| match e {
            JobError::NotFound(_) => JobError::UnknownDataset(format!(
                "unknown dataset {name:?} (no {file} in SDFS; see `idunno datasets`)"
            )),
            other => other,
        })?;
        Manifest::from_json(&bytes, Path::new(&file)).map_err(|e| JobError::BadInput(e.to_string()))
    }

    /// Split `split` of dataset `name`, fetched if needed, checked and loaded.
    pub async fn split(
        &self,
        name: &str,
        manifest: &Manifest,
        split: &str,
    ) -> Result<Split, JobError> {
        let _one_at_a_time = self.lock.lock().await;
        let info = manifest.splits.get(split).ok_or_else(|| {
            JobError::BadInput(format!("dataset {name:?} has no {split:?} split"))
        })?;
        let dir = self.root.join("datasets").join(name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(JobError::io(&dir))?;
        let files = [
            Some(&info.images),
            info.labels.as_ref(),
            info.files.as_ref(),
        ];
        for file in files.into_iter().flatten() {
            let local = dir.join(&file.file);
            if matches!(sha256_of(&local).await, Some(sha) if sha == file.sha256) {
                continue;
            }
            let remote = format!("{}/{}", dataset_dir(name), file.file);
            tracing::info!(%remote, "fetching dataset file");
            self.sdfs
                .get(&remote, None, &local, None)
                .await
                .map_err(|e| JobError::from_sdfs(&remote, e))?;
        }
        let (manifest, split) = (manifest.clone(), split.to_string());
        tokio::task::spawn_blocking(move || idunno_datasets::load_split(&dir, &manifest, &split))
            .await
            .map_err(|e| JobError::Internal(e.to_string()))?
            .map_err(|e| JobError::BadInput(e.to_string()))
    }
}

async fn sha256_of(path: &Path) -> Option<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || idunno_datasets::sha256_file(&path).ok())
        .await
        .ok()
        .flatten()
        .map(|(_, sha)| sha)
}

async fn create_parent(path: &Path) -> Result<(), JobError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(JobError::io(parent))
}

impl JobError {
    /// An SDFS failure about file `name`.
    pub fn from_sdfs(name: &str, e: SdfsError) -> JobError {
        match e.kind() {
            Some(SdfsErrorKind::NotFound) => {
                JobError::NotFound(format!("no file {name:?} in SDFS"))
            }
            _ => JobError::Storage(format!("{name}: {e}")),
        }
    }
}
