//! The download side of [`SdfsClient`]: a get pulls a version's chunks from one replica into
//! a part file, checks the sha256, falls back to the next replica, and reports a corrupt one.

use super::*;

impl SdfsClient {
    /// Writes version `version` (the newest if None) of `name` to `path`, replacing what is
    /// there; returns it.
    pub async fn get(
        &self,
        name: &str,
        version: Option<u64>,
        path: &Path,
        progress: Option<Progress>,
    ) -> Result<VersionInfo, SdfsError> {
        self.get_to(name, version, path, true, progress).await
    }

    /// Like [`SdfsClient::get`]; without `overwrite` an existing `path` is an
    /// [`SdfsError::Exists`], checked before the transfer and again, atomically, at the end.
    /// The bytes go to a new part file next to `path` (see [`crate::part`]); a failed get
    /// leaves nothing.
    pub async fn get_to(
        &self,
        name: &str,
        version: Option<u64>,
        path: &Path,
        overwrite: bool,
        progress: Option<Progress>,
    ) -> Result<VersionInfo, SdfsError> {
        if !overwrite && tokio::fs::symlink_metadata(path).await.is_ok() {
            return Err(SdfsError::Exists { path: path.into() });
        }
        let v = self.locate(name, version).await?;
        let mut reasons = Vec::new();
        for node in &v.replicas {
            match self
                .fetch(node, &v, path, overwrite, progress.clone())
                .await
            {
                Ok(()) => return Ok(v),
                Err(e @ (SdfsError::Exists { .. } | SdfsError::Local { .. })) => return Err(e),
                Err(e) => {
                    if matches!(e, SdfsError::Corrupt(_)) {
                        let report = SdfsRequest::ReportCorrupt {
                            name: name.into(),
                            blob: v.blob.clone(),
                            node: node.clone(),
                        };
                        let _ = self.rpc(&report).await;
                    }
                    reasons.push(format!("{node}: {e}"));
                }
            }
        }
        let reasons = if reasons.is_empty() {
            "no replicas are recorded".into()
        } else {
            reasons.join("; ")
        };
        Err(SdfsError::Unavailable {
            name: name.into(),
            version: v.version,
            reasons,
        })
    }

    async fn fetch(
        &self,
        node: &str,
        v: &VersionInfo,
        path: &Path,
        overwrite: bool,
        progress: Option<Progress>,
    ) -> Result<(), SdfsError> {
        let chunk = transfer::chunk_size(self.client.server_info().max_payload);
        let chunks = transfer::pull(
            self.client.clone(),
            subjects::sdfs_read(node),
            v.blob.clone(),
            v.size,
            chunk,
            self.timeout.max(Duration::from_secs(10)),
            Duration::ZERO,
        );
        let (part, mut file) = PartFile::create(path).await.map_err(local(path))?;
        let mut hasher = Hasher::default();
        let mut done = 0;
        let mut chunks = std::pin::pin!(chunks);
        let result = async {
            while let Some(data) = chunks.next().await {
                // A replica that answers but cannot serve its bytes (lost or unreadable) is
                // reported like a corrupt one, so the cluster repairs it.
                let data = data.map_err(|e| match e {
                    crate::transfer::TransferError::Source { .. } => {
                        SdfsError::Corrupt(e.to_string())
                    }
                    other => SdfsError::Unexpected(other.to_string()),
                })?;
                let data = hasher.update(data).await;
                file.write_all(&data).await.map_err(local(part.path()))?;
                done += data.len() as u64;
                if let Some(p) = &progress {
                    p(done, v.size);
                }
            }
            let sha = std::mem::take(&mut hasher).finish();
            if sha != v.sha256 {
                return Err(SdfsError::Corrupt(format!(
                    "bytes have sha256 {sha}, expected {}",
                    v.sha256
                )));
            }
            file.sync_all().await.map_err(local(part.path()))?;
            Ok(())
        }
        .await;
        drop(file);
        result?;
        match part.commit(path, overwrite).await {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !overwrite => {
                Err(SdfsError::Exists { path: path.into() })
            }
            other => other.map_err(local(path)),
        }
    }
}
