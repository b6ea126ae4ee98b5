//! File metadata in a JetStream KV bucket: one entry per name holding its kept versions.
//! Every change is a compare-and-swap on the entry's revision, so concurrent writers never
//! lose a version.

use super::keys;
use async_nats::jetstream::kv::{self, Store};
use bus_schemas::sdfs::{FileInfo, VersionInfo};
use bus_schemas::{decode, encode};
use futures::TryStreamExt;
use thiserror::Error;

/// Why a metadata operation failed; a failed operation changed nothing.
#[derive(Debug, Error)]
pub enum MetaError {
    /// The bucket could not be reached or refused the operation.
    #[error("metadata bucket: {0}")]
    Bucket(String),
    /// An entry could not be decoded (it is skipped, never trusted).
    #[error("corrupt metadata for {key}: {reason}")]
    Corrupt {
        /// The KV key.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// Too many concurrent writers changed the entry meanwhile.
    #[error("the metadata of {0} kept changing; try again")]
    Contended(String),
}

fn bucket<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Bucket(e.to_string())
}

/// The metadata bucket.
#[derive(Clone)]
pub struct Meta {
    kv: Store,
}

/// The bucket's name.
pub const BUCKET: &str = "idunno-sdfs";

impl Meta {
    /// Opens the bucket, creating it (with `replicas` copies in a NATS cluster) if needed.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, MetaError> {
        if let Ok(kv) = js.get_key_value(BUCKET).await {
            return Ok(Self { kv });
        }
        let config = kv::Config {
            bucket: BUCKET.into(),
            description: "IDunno SDFS file metadata".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        match js.create_key_value(config).await {
            Ok(kv) => Ok(Self { kv }),
            // Another node created it at the same moment.
            Err(_) => js
                .get_key_value(BUCKET)
                .await
                .map(|kv| Self { kv })
                .map_err(bucket),
        }
    }

    /// The file and its entry revision.
    pub async fn get(&self, name: &str) -> Result<Option<(FileInfo, u64)>, MetaError> {
        let key = keys::key(name);
        let Some(entry) = self.kv.entry(key.clone()).await.map_err(bucket)? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let info = decode::<FileInfo>(&entry.value).map_err(|e| MetaError::Corrupt {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((info, entry.revision)))
    }

    /// Applies `change` to the file's entry (None if absent) with compare-and-swap, retrying
    /// when another writer got there first; returns what was stored.
    pub async fn modify<F>(&self, name: &str, mut change: F) -> Result<Option<FileInfo>, MetaError>
    where
        F: FnMut(Option<FileInfo>) -> Option<FileInfo>,
    {
        let key = keys::key(name);
        for _ in 0..32 {
            let current = self.get(name).await?;
            let revision = current.as_ref().map(|(_, r)| *r);
            let Some(next) = change(current.map(|(f, _)| f)) else {
                return Ok(None);
            };
            let bytes = encode(&next).map_err(bucket)?;
            let written = match revision {
                Some(r) => self
                    .kv
                    .update(&key, bytes.into(), r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => self
                    .kv
                    .create(&key, bytes.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(Some(next)),
                Err(e) => tracing::debug!(%name, "metadata write lost a race, retrying: {e}"),
            }
        }
        Err(MetaError::Contended(name.into()))
    }

    /// Appends a version (numbered after the newest) and keeps only the newest `keep`.
    pub async fn add_version(
        &self,
        name: &str,
        mut version: VersionInfo,
        keep: usize,
    ) -> Result<FileInfo, MetaError> {
        let stored = self
            .modify(name, |current| {
                let mut file = current.unwrap_or_else(|| FileInfo {
                    name: name.to_string(),
                    versions: Vec::new(),
                });
                version.version = file.latest().map_or(1, |v| v.version + 1);
                file.versions.push(version.clone());
                let excess = file.versions.len().saturating_sub(keep.max(1));
                file.versions.drain(..excess);
                Some(file)
            })
            .await?;
        stored.ok_or_else(|| MetaError::Bucket("no entry written".into()))
    }

    /// Deletes a file; false if it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, MetaError> {
        if self.get(name).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(keys::key(name)).await.map_err(bucket)?;
        Ok(true)
    }

    /// Every change to the bucket from now on, after the current value of every file:
    /// `(name, Some(file))` for a put, `(name, None)` for a delete. Undecodable entries are
    /// skipped with a warning.
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = (String, Option<FileInfo>)>, MetaError> {
        use futures::StreamExt;
        let watch = self.kv.watch_all().await.map_err(bucket)?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry
                .map_err(|e| tracing::warn!("metadata watch: {e}"))
                .ok()?;
            let name = keys::name(&entry.key)?;
            if entry.operation != kv::Operation::Put {
                return Some((name, None));
            }
            match decode::<FileInfo>(&entry.value) {
                Ok(file) => Some((name, Some(file))),
                Err(e) => {
                    tracing::warn!(key = %entry.key, "skipping corrupt metadata: {e}");
                    None
                }
            }
        }))
    }

    /// Names of every file (for `ls` of a directory and for repairs).
    pub async fn names(&self) -> Result<Vec<String>, MetaError> {
        let keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(bucket)?
            .try_collect()
            .await
            .map_err(bucket)?;
        Ok(keys.iter().filter_map(|k| keys::name(k)).collect())
    }

    /// The file `name` and every file under the directory `name/` (every file when `name` is
    /// empty), sorted by name.
    pub async fn list(&self, name: &str) -> Result<Vec<FileInfo>, MetaError> {
        let dir = format!("{}/", name.strip_suffix('/').unwrap_or(name));
        let mut found = Vec::new();
        for n in self.names().await? {
            if name.is_empty() || n == name || n.starts_with(&dir) {
                match self.get(&n).await {
                    Ok(Some((file, _))) => found.push(file),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }
}
