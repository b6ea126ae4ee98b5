//! Datasets and files a worker fetches from SDFS. A dataset's files are kept under
//! `<data-dir>/cache/datasets/<name>/` and fetched again only when their sha256 no longer
//! matches the manifest's. Every file's size, as SDFS records it, is checked against its
//! limit ([`FetchLimits`], `MAX_MANIFEST_BYTES`) before a byte of it is downloaded.

use crate::error::JobError;
use bus_client::sdfs::SdfsClient;
use idunno_datasets::limits::MAX_MANIFEST_BYTES;
use idunno_datasets::{FileRef, Manifest, Split, MANIFEST_FILE};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// The SDFS name of model `name`.
pub fn model_file(name: &str) -> String {
    bus_schemas::serve::ServeTarget::model_file(name)
}

/// The SDFS directory of dataset `name`.
pub fn dataset_dir(name: &str) -> String {
    format!("datasets/{name}")
}

/// Default of [`FetchLimits::max_model_bytes`]: 1 GiB.
pub const DEFAULT_MAX_MODEL_FILE_BYTES: u64 = 1 << 30;

/// Size limits of the files a worker fetches, checked against the size SDFS records before
/// anything is downloaded (documented in `docs/bus.md`, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Dataset files: stored and decompressed size (`--max-dataset-file-bytes`).
    pub datasets: idunno_datasets::Limits,
    /// Files read whole into memory: models, checkpoints, TorchScript uploads
    /// (`--max-model-file-bytes`).
    pub max_model_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            datasets: idunno_datasets::Limits::default(),
            max_model_bytes: DEFAULT_MAX_MODEL_FILE_BYTES,
        }
    }
}

/// The worker's local copies.
pub struct Cache {
    root: PathBuf,
    sdfs: SdfsClient,
    lock: Mutex<()>,
    limits: FetchLimits,
}

impl Cache {
    /// A cache under `data_dir`, with the default [`FetchLimits`].
    pub fn new(data_dir: &Path, sdfs: SdfsClient) -> Cache {
        Cache {
            root: data_dir.join("cache"),
            sdfs,
            lock: Mutex::new(()),
            limits: FetchLimits::default(),
        }
    }

    /// The same cache with other limits.
    pub fn with_limits(self, limits: FetchLimits) -> Cache {
        Cache { limits, ..self }
    }

    /// The SDFS client.
    pub fn sdfs(&self) -> &SdfsClient {
        &self.sdfs
    }

    /// A scratch file path under the cache.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(name)
    }

    /// Reads an SDFS file (a version, or the newest) into memory; a file over
    /// [`FetchLimits::max_model_bytes`] is refused before it is downloaded.
    pub async fn read(&self, name: &str, version: Option<u64>) -> Result<Vec<u8>, JobError> {
        let max = self.limits.max_model_bytes;
        self.read_within(name, version, max, "--max-model-file-bytes")
            .await
    }

    /// Reads an SDFS file into memory if SDFS records at most `max` bytes for it (`limit`
    /// names the limit in the refusal).
    async fn read_within(
        &self,
        name: &str,
        version: Option<u64>,
        max: u64,
        limit: &str,
    ) -> Result<Vec<u8>, JobError> {
        let v = self
            .sdfs
            .locate(name, version)
            .await
            .map_err(|e| JobError::from_sdfs(name, e))?;
        if v.size > max {
            return Err(JobError::BadInput(format!(
                "{name} v{} is refused: a file read into memory is at most {max} bytes ({limit}), not {}",
                v.version, v.size
            )));
        }
        let tmp = self.scratch(&format!(
            "{}-{}",
            rand::random::<u64>(),
            name.replace('/', "_")
        ));
        create_parent(&tmp).await?;
        let got = self.sdfs.get(name, Some(v.version), &tmp, None).await;
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
        let read = self.read_within(&file, None, MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES");
        let bytes = read.await.map_err(|e| match e {
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
        manifest
            .validate(Path::new(&format!("{}/{MANIFEST_FILE}", dataset_dir(name))))
            .map_err(|e| JobError::BadInput(e.to_string()))?;
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
            self.fetch(name, file, &local).await?;
        }
        let (manifest, split) = (manifest.clone(), split.to_string());
        let limits = self.limits.datasets;
        // Errors name the file as the user knows it (in SDFS), not this worker's copy.
        let (local, remote) = (dir.display().to_string(), dataset_dir(name));
        let load = move || idunno_datasets::load_split_with(&dir, &manifest, &split, &limits);
        tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| JobError::Internal(e.to_string()))?
            .map_err(|e| JobError::BadInput(e.to_string().replace(&local, &remote)))
    }
}

impl Cache {
    /// Downloads dataset file `file` to `local` if SDFS records the size its manifest
    /// declares, within `--max-dataset-file-bytes`.
    async fn fetch(&self, name: &str, file: &FileRef, local: &Path) -> Result<(), JobError> {
        let remote = format!("{}/{}", dataset_dir(name), file.file);
        let v = self
            .sdfs
            .locate(&remote, None)
            .await
            .map_err(|e| JobError::from_sdfs(&remote, e))?;
        let max = self.limits.datasets.max_file_bytes;
        if v.size > max {
            return Err(JobError::BadInput(format!(
                "{remote} v{} is refused: a dataset file holds at most {max} bytes (--max-dataset-file-bytes), not {}",
                v.version, v.size
            )));
        }
        if v.size != file.size {
            return Err(JobError::BadInput(format!(
                "{remote} v{} is {} bytes but its manifest records {}",
                v.version, v.size, file.size
            )));
        }
        tracing::info!(%remote, "fetching dataset file");
        self.sdfs
            .get(&remote, Some(v.version), local, None)
            .await
            .map_err(|e| JobError::from_sdfs(&remote, e))?;
        Ok(())
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
