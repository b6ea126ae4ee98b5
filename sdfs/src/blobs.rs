//! The bytes of SDFS versions on this node: one object per blob under `<data-dir>/sdfs`,
//! written through `object_store` with fsync, verified against their sha256 before they count.

use bus_client::transfer::Hasher;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::sync::Arc;
use thiserror::Error;

/// Why a blob operation failed. A failed write keeps nothing.
#[derive(Debug, Error)]
pub enum BlobError {
    /// The blob is not here.
    #[error("blob {0} is not stored here")]
    NotFound(String),
    /// The bytes did not match the expected size or sha256; nothing was kept.
    #[error("blob {blob}: {reason}")]
    Mismatch {
        /// The blob.
        blob: String,
        /// What did not match.
        reason: String,
    },
    /// The bytes could not be fetched from their source; nothing was kept.
    #[error("blob {blob}: {reason}")]
    Source {
        /// The blob.
        blob: String,
        /// What went wrong.
        reason: String,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] object_store::Error),
}

/// A blob this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The blob id.
    pub blob: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written.
    pub modified: std::time::SystemTime,
}

/// The blobs of this node.
#[derive(Clone)]
pub struct Blobs {
    pub(super) store: Arc<LocalFileSystem>,
    /// The data directory (`<data-dir>/sdfs`).
    pub(super) dir: std::path::PathBuf,
    /// Bumped by every write and delete: the keeper passes again only when it moved.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// The blobs held, as last listed and kept by this store's writes and deletes since.
    held: Arc<std::sync::Mutex<Option<Held>>>,
}

/// The blobs held, by id.
pub type Held = Arc<std::collections::HashMap<String, BlobMeta>>;

pub(super) fn path(blob: &str) -> Path {
    Path::from(format!("blobs/{blob}"))
}

impl Blobs {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir.join("blobs")).map_err(|e| BlobError::Source {
            blob: String::new(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(Self {
            store: Arc::new(store),
            dir: dir.to_path_buf(),
            generation: Arc::default(),
            held: Arc::default(),
        })
    }

    /// Writes a blob from a stream of chunks; keeps it only if its size and sha256 match, and
    /// only after it is fsynced. Its label, if given, is written (fsynced) before the blob is
    /// kept, so a kept blob is never without its label.
    pub async fn write<S, E>(
        &self,
        blob: &str,
        size: u64,
        sha256: &str,
        label: Option<&bus_schemas::fsck::BlobLabel>,
        chunks: S,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Vec<u8>, E>>,
        E: std::fmt::Display,
    {
        let written = self.write_chunks(blob, size, sha256, label, chunks).await;
        if written.is_ok() {
            let modified = std::time::SystemTime::now();
            let meta = BlobMeta {
                blob: blob.to_string(),
                size,
                modified,
            };
            self.note(blob, Some(meta));
        }
        self.moved();
        written
    }

    /// Every blob held here, from memory: listed from disk on first use and by
    /// [`Blobs::relist`], kept by this store's own writes and deletes in between.
    pub async fn held(&self) -> Result<Held, BlobError> {
        if let Some(held) = self.held.lock().ok().and_then(|h| h.clone()) {
            return Ok(held);
        }
        self.relist().await
    }

    /// Lists the blobs from disk again (a write or delete during the listing lists again).
    pub async fn relist(&self) -> Result<Held, BlobError> {
        loop {
            let before = self.generation();
            let listed = self.list().await?;
            let held: Held = Arc::new(listed.into_iter().map(|b| (b.blob.clone(), b)).collect());
            let mut kept = self.held.lock().map_err(|_| BlobError::Source {
                blob: String::new(),
                reason: "the held blobs' lock was poisoned".into(),
            })?;
            if self.generation() == before {
                *kept = Some(held.clone());
                return Ok(held);
            }
        }
    }

    /// Keeps the held blobs true to a write (`Some`) or a delete (`None`) of `blob`.
    fn note(&self, blob: &str, meta: Option<BlobMeta>) {
        let Ok(mut kept) = self.held.lock() else {
            return;
        };
        if let Some(held) = kept.as_mut() {
            let held = Arc::make_mut(held);
            match meta {
                Some(m) => held.insert(blob.to_string(), m),
                None => held.remove(blob),
            };
        }
    }

    /// How many writes and deletes this store has seen (see [`Blobs::write`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn moved(&self) {
        (self.generation).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn write_chunks<S, E>(
        &self,
        blob: &str,
        size: u64,
        sha256: &str,
        label: Option<&bus_schemas::fsck::BlobLabel>,
        chunks: S,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Vec<u8>, E>>,
        E: std::fmt::Display,
    {
        let upload = self.store.put_multipart(&path(blob)).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut hasher = Hasher::default();
        let mut written = 0u64;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(next) = chunks.next().await {
            let data = match next {
                Ok(data) => data,
                Err(e) => {
                    let _ = writer.abort().await;
                    let reason = e.to_string();
                    return Err(BlobError::Source {
                        blob: blob.into(),
                        reason,
                    });
                }
            };
            let data = hasher.update(data).await;
            written += data.len() as u64;
            writer.wait_for_capacity(4).await?;
            writer.write(&data);
        }
        let actual = hasher.finish();
        if written != size || actual != sha256 {
            let _ = writer.abort().await;
            let reason = format!(
                "got {written} bytes with sha256 {actual}, expected {size} bytes with {sha256}"
            );
            return Err(BlobError::Mismatch {
                blob: blob.into(),
                reason,
            });
        }
        if let Some(label) = label {
            if let Err(e) = self.write_label(blob, label).await {
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        if let Err(e) = writer.finish().await {
            let _ = self.delete_label(blob).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// The directory the blobs live in (`<data-dir>/sdfs`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Bytes `offset..offset+len` of a blob (fewer at its end).
    pub async fn read(&self, blob: &str, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        let meta = match self.store.head(&path(blob)).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::NotFound(blob.into()))
            }
            Err(e) => return Err(e.into()),
        };
        let end = (offset.saturating_add(len)).min(meta.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .get_range(&path(blob), offset..end)
            .await?
            .to_vec())
    }

    /// Recomputes a blob's sha256 (hex), reading it in pieces.
    pub async fn sha256(&self, blob: &str) -> Result<String, BlobError> {
        let stream = match self.store.get(&path(blob)).await {
            Ok(r) => r.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::NotFound(blob.into()))
            }
            Err(e) => return Err(e.into()),
        };
        let mut stream = std::pin::pin!(stream);
        let mut hasher = Hasher::default();
        while let Some(bytes) = stream.try_next().await? {
            hasher.update(bytes.to_vec()).await;
        }
        Ok(hasher.finish())
    }

    /// Deletes a blob and its label; deleting a missing blob is not an error.
    pub async fn delete(&self, blob: &str) -> Result<(), BlobError> {
        self.moved();
        match self.store.delete(&path(blob)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.note(blob, None);
        self.moved();
        self.delete_label(blob).await
    }

    /// Every blob held here.
    pub async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let prefix = Path::from("blobs");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let blob = m.location.filename()?.to_string();
                let modified = std::time::SystemTime::from(m.last_modified);
                Some(BlobMeta {
                    blob,
                    size: m.size,
                    modified,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Vec<u8>, String>> {
        futures::stream::iter(parts.iter().map(|p| Ok(p.to_vec())).collect::<Vec<_>>())
    }

    const HELLO_SHA: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[tokio::test]
    async fn a_verified_blob_is_kept_and_read_back_in_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        blobs
            .write("b1", 11, HELLO_SHA, None, chunks(&[b"hello ", b"world"]))
            .await
            .unwrap();
        assert_eq!(blobs.read("b1", 6, 100).await.unwrap(), b"world");
        assert_eq!(blobs.sha256("b1").await.unwrap(), HELLO_SHA);
        let listed = blobs.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].blob.as_str(), listed[0].size), ("b1", 11));
        blobs.delete("b1").await.unwrap();
        assert!(matches!(
            blobs.read("b1", 0, 1).await,
            Err(BlobError::NotFound(_))
        ));
        blobs.delete("b1").await.unwrap();
    }

    #[tokio::test]
    async fn wrong_bytes_or_a_failed_source_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let err = blobs
            .write("b2", 11, HELLO_SHA, None, chunks(&[b"hello ", b"wor1d"]))
            .await;
        assert!(matches!(err, Err(BlobError::Mismatch { .. })));
        let failing =
            futures::stream::iter(vec![Ok(b"he".to_vec()), Err("source died".to_string())]);
        let err = blobs.write("b3", 11, HELLO_SHA, None, failing).await;
        assert!(matches!(err, Err(BlobError::Source { .. })));
        assert_eq!(blobs.list().await.unwrap(), vec![]);
    }
}
