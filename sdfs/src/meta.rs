//! File metadata in a JetStream KV bucket: one entry per name holding its kept versions.
//! Every change is a compare-and-swap on the entry's revision, so concurrent writers never
//! lose a version.

use super::keys;
use async_nats::jetstream::kv::{self, Store};
use bus_schemas::fsck::MetaEpoch;
use bus_schemas::sdfs::{FileInfo, VersionInfo};
use bus_schemas::{decode, encode};
use idunno_cluster::error::{BoxError, KvError};
use thiserror::Error;

/// Why a metadata operation failed; a failed operation changed nothing.
#[derive(Debug, Error)]
pub enum MetaError {
    /// The bucket could not be reached or refused the operation ([`KvError::is_retryable`]
    /// says which).
    #[error("metadata bucket: {0}")]
    Bucket(#[from] KvError),
    /// An entry could not be decoded (it is skipped, never trusted).
    #[error("corrupt metadata for {key}: {reason}")]
    Corrupt {
        /// The KV key.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// The file has versions a model alias or rollout names: it is not deleted.
    #[error("{name} has versions {versions:?} that a model alias or rollout names (pinned): remove the alias first")]
    Pinned {
        /// The SDFS name.
        name: String,
        /// Its pinned versions.
        versions: Vec<u64>,
    },
    /// A version to pin does not exist.
    #[error("{name} has no version {version}")]
    NoVersion {
        /// The SDFS name.
        name: String,
        /// The version.
        version: u64,
    },
    /// Too many concurrent writers changed the entry meanwhile.
    #[error("the metadata of {0} kept changing; try again")]
    Contended(String),
}

/// One change seen on the bucket.
#[derive(Debug, Clone)]
pub enum Change {
    /// The file's entry now holds these versions.
    Put(FileInfo),
    /// The file was deleted.
    Deleted,
    /// The entry does not decode (why): its blobs must not be judged by it.
    Corrupt(String),
}

/// A failure of `what` on the bucket.
fn bucket<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> MetaError {
    move |e| MetaError::Bucket(KvError::new(what, e))
}

/// The metadata bucket.
#[derive(Clone)]
pub struct Meta {
    kv: Store,
}

/// The bucket's name.
pub const BUCKET: &str = bus_schemas::subjects::SDFS_BUCKET;
/// The key of the bucket's epoch marker (file keys start with `f.`, so it names no file).
pub const EPOCH_KEY: &str = "epoch";

impl Meta {
    /// Opens the bucket, creating it (with `replicas` copies in a NATS cluster) only when the
    /// server says it does not exist: a bucket that cannot be reached is an error to retry,
    /// never a reason to start an empty one. A new bucket gets a new epoch marker.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, MetaError> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        use async_nats::jetstream::ErrorCode;
        match js.get_stream(format!("KV_{BUCKET}")).await {
            Ok(_) => {
                let kv = (js.get_key_value(BUCKET).await).map_err(bucket("opening the bucket"))?;
                return Ok(Self { kv });
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {}
                _ => return Err(bucket("looking the bucket up")(e)),
            },
        }
        let config = kv::Config {
            bucket: BUCKET.into(),
            description: "IDunno SDFS file metadata".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = match js.create_key_value(config).await {
            Ok(kv) => kv,
            // Another node created it at the same moment.
            Err(_) => (js.get_key_value(BUCKET).await).map_err(bucket("opening the bucket"))?,
        };
        tracing::warn!(
            "created the SDFS metadata bucket (a new cluster, or its metadata was lost)"
        );
        Ok(Self { kv })
    }

    /// The bucket's epoch marker, creating one if it has none (a new bucket, or one made by
    /// an older version). `None` if the marker cannot be decoded: then the bucket is not
    /// trusted.
    pub async fn epoch(&self) -> Result<Option<MetaEpoch>, MetaError> {
        if let Some(entry) = self.leader(EPOCH_KEY).await? {
            if !entry.deleted {
                return Ok(decode::<MetaEpoch>(&entry.value).ok());
            }
        }
        let fresh = MetaEpoch {
            epoch: format!("{:032x}", rand::random::<u128>()),
            created_ms: super::now_ms(),
        };
        let bytes = encode(&fresh).map_err(|e| KvError::corrupt("the epoch marker", e))?;
        match self.kv.create(EPOCH_KEY, bytes.into()).await {
            Ok(_) => {
                tracing::info!(epoch = %fresh.epoch, "new SDFS metadata epoch");
                Ok(Some(fresh))
            }
            // Another node wrote one first: read it.
            Err(_) => match self.leader(EPOCH_KEY).await? {
                Some(entry) if !entry.deleted => Ok(decode::<MetaEpoch>(&entry.value).ok()),
                _ => Ok(None),
            },
        }
    }

    /// The entry of `key` as the bucket's leader has it (see [`idunno_cluster::cas`]).
    async fn leader(
        &self,
        key: &str,
    ) -> Result<Option<idunno_cluster::cas::LeaderEntry>, MetaError> {
        Ok(idunno_cluster::cas::leader_entry(&self.kv, key).await?)
    }

    /// The file and its entry revision, as the bucket's leader has them.
    pub async fn get(&self, name: &str) -> Result<Option<(FileInfo, u64)>, MetaError> {
        let key = keys::key(name);
        let Some(entry) = self.leader(&key).await? else {
            return Ok(None);
        };
        if entry.deleted {
            return Ok(None);
        }
        let info = decode::<FileInfo>(&entry.value).map_err(|e| MetaError::Corrupt {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((info, entry.revision)))
    }

    /// Applies `change` to the file's entry (None if absent) with compare-and-swap, retrying
    /// when another writer got there first or the bucket is briefly unavailable (see
    /// [`idunno_cluster::cas`]; `change` must be idempotent); returns what was stored.
    pub async fn modify<F>(&self, name: &str, mut change: F) -> Result<Option<FileInfo>, MetaError>
    where
        F: FnMut(Option<FileInfo>) -> Option<FileInfo>,
    {
        let key = keys::key(name);
        let mut tries = idunno_cluster::cas::Tries::new();
        loop {
            let (race, e) = match self.get(name).await {
                Err(MetaError::Bucket(e)) => (false, e),
                Err(e) => return Err(e),
                Ok(current) => {
                    let revision = current.as_ref().map(|(_, r)| *r);
                    let Some(next) = change(current.map(|(f, _)| f)) else {
                        return Ok(None);
                    };
                    match self.write(&key, &next, revision).await {
                        Ok(()) => return Ok(Some(next)),
                        Err(failed) => failed,
                    }
                }
            };
            tracing::debug!(%name, tries = tries.tried(), "metadata not written, retrying: {e}");
            if !tries.next().await {
                return Err(match race {
                    true => MetaError::Contended(name.into()),
                    false => MetaError::Bucket(e),
                });
            }
        }
    }

    /// Writes `file` at `key` if the entry is still at `revision` (absent if None); the error
    /// says whether another writer got there first, and why.
    async fn write(
        &self,
        key: &str,
        file: &FileInfo,
        revision: Option<u64>,
    ) -> Result<(), (bool, KvError)> {
        let bytes = encode(file).map_err(|e| (false, KvError::corrupt("a file's entry", e)))?;
        match revision {
            Some(r) => (self.kv.update(key, bytes.into(), r).await).map_err(|e| {
                let race = e.kind() == kv::UpdateErrorKind::WrongLastRevision;
                (race, KvError::new("updating a file's entry", e))
            }),
            None => (self.kv.create(key, bytes.into()).await).map_err(|e| {
                let race = e.kind() == kv::CreateErrorKind::AlreadyExists;
                (race, KvError::new("creating a file's entry", e))
            }),
        }
        .map(|_| ())
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
                    pinned: Vec::new(),
                });
                // Already there: an earlier try was applied though its answer was lost.
                if file.versions.iter().any(|v| v.blob == version.blob) {
                    return None;
                }
                version.version = file.latest().map_or(1, |v| v.version + 1);
                file.versions.push(version.clone());
                prune(&mut file, keep);
                Some(file)
            })
            .await?;
        match stored {
            Some(file) => Ok(file),
            None => (self.get(name).await?)
                .map(|(file, _)| file)
                .ok_or_else(|| MetaError::Contended(name.into())),
        }
    }

    /// Changes the versions of `name` never pruned: `unpin` leave, then `pin` join (each of
    /// those must exist); the pinned set after.
    pub async fn pin(&self, name: &str, pin: &[u64], unpin: &[u64]) -> Result<Vec<u64>, MetaError> {
        let mut missing = None;
        let changed = self
            .modify(name, |current| {
                let mut file = current?;
                let has = |w: &u64| file.versions.iter().any(|v| v.version == *w);
                missing = pin.iter().find(|w| !has(w)).copied();
                let mut pinned: std::collections::BTreeSet<u64> =
                    file.pinned.iter().copied().collect();
                unpin.iter().for_each(|v| {
                    pinned.remove(v);
                });
                pinned.extend(pin);
                let pinned: Vec<u64> = pinned.into_iter().collect();
                (missing.is_none() && file.pinned != pinned).then(|| {
                    file.pinned = pinned;
                    file
                })
            })
            .await?;
        if let Some(version) = missing {
            let name = name.to_string();
            return Err(MetaError::NoVersion { name, version });
        }
        match changed {
            Some(file) => Ok(file.pinned),
            None => match self.get(name).await? {
                Some((file, _)) => Ok(file.pinned),
                None => match pin.first() {
                    None => Ok(Vec::new()),
                    Some(version) => Err(MetaError::NoVersion {
                        name: name.to_string(),
                        version: *version,
                    }),
                },
            },
        }
    }

    /// Deletes a file; false if it did not exist. The delete names the revision it read, so a
    /// version committed meanwhile is never deleted unseen (the delete is tried again).
    pub async fn delete(&self, name: &str) -> Result<bool, MetaError> {
        let key = keys::key(name);
        let mut tries = idunno_cluster::cas::Tries::new();
        loop {
            let Some(entry) = self.leader(&key).await? else {
                return Ok(false);
            };
            if entry.deleted {
                return Ok(false);
            }
            if let Ok(file) = decode::<FileInfo>(&entry.value) {
                if !file.pinned.is_empty() {
                    let (name, versions) = (name.to_string(), file.pinned);
                    return Err(MetaError::Pinned { name, versions });
                }
            }
            match self
                .kv
                .delete_expect_revision(&key, Some(entry.revision))
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) => tracing::debug!(%name, "delete not applied, retrying: {e}"),
            }
            if !tries.next().await {
                return Err(MetaError::Contended(name.into()));
            }
        }
    }

    /// Adds the versions of `restored` whose blobs the file does not list yet. A version keeps
    /// its number unless the file already has that number for another blob; versions without
    /// a free number (or numbered 0) come after the newest. Returns how many were added.
    pub async fn restore(&self, name: &str, restored: &[VersionInfo]) -> Result<u64, MetaError> {
        let mut added = 0;
        self.modify(name, |current| {
            let mut file = current.unwrap_or_else(|| FileInfo {
                name: name.to_string(),
                versions: Vec::new(),
                pinned: Vec::new(),
            });
            added = super::restore::merge_versions(&mut file, restored);
            (added > 0).then_some(file)
        })
        .await?;
        Ok(added)
    }

    /// Every change to the bucket from now on, after the current value of every file.
    /// Undecodable entries come as [`Change::Corrupt`], so that the blobs they name are kept.
    pub async fn watch(&self) -> Result<impl futures::Stream<Item = (String, Change)>, MetaError> {
        use futures::StreamExt;
        let watch = (self.kv.watch_all().await).map_err(bucket("watching the bucket"))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry
                .map_err(|e| tracing::warn!("metadata watch: {e}"))
                .ok()?;
            let name = keys::name(&entry.key)?;
            if entry.operation != kv::Operation::Put {
                return Some((name, Change::Deleted));
            }
            match decode::<FileInfo>(&entry.value) {
                Ok(file) => Some((name, Change::Put(file))),
                Err(e) => {
                    tracing::warn!(key = %entry.key, "corrupt metadata entry, skipped: {e}");
                    Some((name, Change::Corrupt(e.to_string())))
                }
            }
        }))
    }

    /// The bucket, for watching.
    pub fn kv(&self) -> &Store {
        &self.kv
    }

    /// Names of every file (for `ls` of a directory and for repairs); a deleted file's name
    /// may be among them (its `get` says None).
    pub async fn names(&self) -> Result<Vec<String>, MetaError> {
        // From the bucket's leader, not a consumer: a consumer is made by the JetStream meta
        // leader, which a cluster that lost a server may be electing for seconds.
        let keys = idunno_cluster::cas::leader_keys(&self.kv).await?;
        Ok(keys.iter().filter_map(|k| keys::name(k)).collect())
    }
}

/// Keeps the newest `keep` versions of `file` (at least one) and every pinned one: a file with
/// pinned versions may keep more than `keep`.
pub fn prune(file: &mut FileInfo, keep: usize) {
    let first_kept = file.versions.len().saturating_sub(keep.max(1));
    let pinned = file.pinned.clone();
    let mut at = 0;
    file.versions.retain(|v| {
        at += 1;
        at > first_kept || pinned.contains(&v.version)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_schemas::sdfs::VersionInfo;

    fn file(versions: &[u64], pinned: &[u64]) -> FileInfo {
        let v = |n: u64| VersionInfo {
            version: n,
            blob: format!("b{n}"),
            size: 1,
            sha256: String::new(),
            replicas: vec![],
            created_ms: n,
            replication: None,
            attrs: Default::default(),
        };
        FileInfo {
            name: "models/m".into(),
            versions: versions.iter().map(|n| v(*n)).collect(),
            pinned: pinned.to_vec(),
        }
    }

    fn numbers(f: &FileInfo) -> Vec<u64> {
        f.versions.iter().map(|v| v.version).collect()
    }

    #[test]
    fn pruning_keeps_the_newest_and_every_pinned_version() {
        let mut f = file(&[1, 2, 3, 4, 5, 6], &[]);
        prune(&mut f, 3);
        assert_eq!(numbers(&f), [4, 5, 6]);
        let mut f = file(&[1, 2, 3, 4, 5, 6], &[1]);
        prune(&mut f, 3);
        assert_eq!(
            numbers(&f),
            [1, 4, 5, 6],
            "the newest three and the pinned one"
        );
        let mut f = file(&[1, 2, 3, 4], &[1, 2, 3]);
        prune(&mut f, 2);
        assert_eq!(numbers(&f), [1, 2, 3, 4], "more than keep when pins say so");
        let mut f = file(&[1, 2], &[]);
        prune(&mut f, 0);
        assert_eq!(numbers(&f), [2]);
    }
}
