//! The SDFS client: put, get, ls, delete over the bus. Used by the CLI and by nodes.
//!
//! A put plans replicas with any node, serves the file's chunks on an upload subject while
//! each replica pulls, verifies and fsyncs them, then commits the version once the write
//! quorum has stored it. A get pulls chunks from one replica, checking the sha256, and falls
//! back to the next replica on any error.

use crate::part::PartFile;
use crate::request::{request, RequestError};
use crate::transfer::{self, Hasher};
use bus_schemas::sdfs::{
    Chunk, ChunkRequest, FileInfo, SdfsErrorKind, SdfsReply, SdfsRequest, StoreReply, StoreRequest,
    VersionInfo,
};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

mod get;
use tokio::io::AsyncWriteExt;

/// How long a store is asked again of a node that has no responder yet (a node still
/// starting, or whose subscription has not yet reached every server of a NATS cluster).
const STARTING: Duration = Duration::from_secs(5);

/// Asks `node` to store a blob (waiting at most `timeout` for it to hold every byte). A live
/// node may not answer yet: "no responders" is asked again for up to [`STARTING`].
pub async fn ask_store(
    client: &async_nats::Client,
    node: &str,
    req: &StoreRequest,
    timeout: Duration,
) -> Result<StoreReply, RequestError> {
    let ask_until = std::time::Instant::now() + STARTING;
    loop {
        let reply = request(client, subjects::sdfs_store(node), req, timeout).await;
        match reply {
            Err(RequestError::NoResponders { .. }) if std::time::Instant::now() < ask_until => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Why an SDFS operation failed. A failed put commits nothing; a failed get leaves no file.
#[derive(Debug, Error)]
pub enum SdfsError {
    /// The cluster refused the request.
    #[error("{message}")]
    Refused {
        /// The kind, for callers to match.
        kind: SdfsErrorKind,
        /// The cluster's sentence.
        message: String,
    },
    /// The bus failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No replica could deliver the bytes intact.
    #[error("no replica delivered {name} v{version} intact: {reasons}")]
    Unavailable {
        /// The SDFS name.
        name: String,
        /// The version.
        version: u64,
        /// What each replica did.
        reasons: String,
    },
    /// A replica's bytes did not match their sha256.
    #[error("corrupt replica: {0}")]
    Corrupt(String),
    /// A node answered something unexpected.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The destination of a get exists and overwriting was not asked for; nothing was
    /// written.
    #[error("{} already exists (not overwritten)", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
}

impl SdfsError {
    /// The kind of a refusal, if the cluster refused.
    pub fn kind(&self) -> Option<SdfsErrorKind> {
        match self {
            SdfsError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> SdfsError + '_ {
    move |source| SdfsError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// Reports bytes moved so far out of a total.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options of one put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Replicas instead of the cluster's replication factor.
    pub replication: Option<u32>,
    /// User metadata kept with the version (shown by `ls`).
    pub attrs: BTreeMap<String, String>,
}

/// A client of the cluster's file store.
#[derive(Clone)]
pub struct SdfsClient {
    client: async_nats::Client,
    timeout: Duration,
}

impl SdfsClient {
    /// A client on `client`; metadata requests wait at most `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// Sends a metadata request to any node; a refusal is [`SdfsError::Refused`]. The queue
    /// group may hand it to a node that has just died, so it is sent again after a timeout
    /// (three tries within the timeout): every request is safe to repeat, a commit too (a
    /// blob is committed once; a repeated commit answers the version it got).
    pub async fn request(&self, req: &SdfsRequest) -> Result<SdfsReply, SdfsError> {
        self.rpc(req).await
    }

    async fn rpc(&self, req: &SdfsRequest) -> Result<SdfsReply, SdfsError> {
        self.rpc_with(req, 3, self.timeout / 3).await
    }

    /// Sends `req` up to `tries` times, each waiting `each`, while it times out.
    async fn rpc_with(
        &self,
        req: &SdfsRequest,
        tries: u32,
        each: Duration,
    ) -> Result<SdfsReply, SdfsError> {
        // Every request may be sent again after a timeout: a commit too, since a node commits
        // a blob once and answers a repeated commit with the version it already got.
        let mut result = request(&self.client, subjects::sdfs_rpc(req.op()), req, each).await;
        for _ in 1..tries {
            if !matches!(result, Err(RequestError::Timeout { .. })) {
                break;
            }
            result = request(&self.client, subjects::sdfs_rpc(req.op()), req, each).await;
        }
        match result? {
            SdfsReply::Error { kind, message } => Err(SdfsError::Refused { kind, message }),
            reply => Ok(reply),
        }
    }

    /// Stores `path` as a new version of `name`; returns the version number.
    pub async fn put(
        &self,
        path: &Path,
        name: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SdfsError> {
        self.put_with(path, name, PutOptions::default(), progress)
            .await
    }

    /// Like [`SdfsClient::put`], with per-put options.
    pub async fn put_with(
        &self,
        path: &Path,
        name: &str,
        options: PutOptions,
        progress: Option<Progress>,
    ) -> Result<u64, SdfsError> {
        let PutOptions { replication, attrs } = options;
        let (size, sha256) = hash_file(path).await?;
        let prepare = SdfsRequest::Prepare {
            name: name.into(),
            size,
            sha256: sha256.clone(),
            replication,
        };
        let SdfsReply::Prepared {
            blob,
            replicas,
            write_quorum: _,
            chunk_size,
        } = self.rpc(&prepare).await?
        else {
            return Err(SdfsError::Unexpected("to prepare".into()));
        };
        let served = Arc::new(AtomicU64::new(0));
        let total = size * replicas.len() as u64;
        let upload = self
            .serve_upload(path, &blob, served.clone(), total, progress)
            .await?;
        let write = SdfsRequest::Write {
            name: name.into(),
            blob,
            size,
            sha256,
            replicas,
            chunk_size,
            replication,
            attrs,
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        // The node that answers asks every replica to store the blob, each within
        // `store_timeout`, then commits: allow for both, and for the commit. A node that died
        // on the way leaves the write unanswered: it is sent once more (replicas that stored
        // the blob already answer at once, and a blob is committed once).
        let wait = store_timeout(self.timeout, size) + self.timeout * 2;
        let result = self.rpc_with(&write, 2, wait).await;
        upload.abort();
        match result? {
            SdfsReply::Committed { version, .. } => Ok(version),
            other => Err(SdfsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Answers chunk requests for `path` on the blob's upload subject until aborted.
    async fn serve_upload(
        &self,
        path: &Path,
        blob: &str,
        served: Arc<AtomicU64>,
        total: u64,
        progress: Option<Progress>,
    ) -> Result<tokio::task::JoinHandle<()>, SdfsError> {
        let mut sub = self
            .client
            .subscribe(subjects::sdfs_upload(blob))
            .await
            .map_err(|e| {
                SdfsError::Request(RequestError::Bus {
                    subject: subjects::sdfs_upload(blob),
                    reason: e.to_string(),
                })
            })?;
        let client = self.client.clone();
        let path = path.to_path_buf();
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply else { continue };
                let Ok(req) = decode::<ChunkRequest>(&msg.payload) else {
                    continue;
                };
                let len = req.len.min(transfer::MAX_CHUNK);
                let chunk = match read_range(path.clone(), req.offset, len).await {
                    Ok(data) => Chunk {
                        blob: req.blob,
                        offset: req.offset,
                        data,
                        error: None,
                    },
                    Err(e) => Chunk {
                        blob: req.blob,
                        offset: req.offset,
                        data: Vec::new(),
                        error: Some(e.to_string()),
                    },
                };
                let done = served.fetch_add(chunk.data.len() as u64, Ordering::Relaxed)
                    + chunk.data.len() as u64;
                if let Some(p) = &progress {
                    p(done.min(total), total);
                }
                if let Ok(bytes) = encode(&chunk) {
                    let _ = client.publish(reply, bytes.into()).await;
                }
            }
        }))
    }

    /// Where version `version` (the newest if None) of `name` is.
    pub async fn locate(&self, name: &str, version: Option<u64>) -> Result<VersionInfo, SdfsError> {
        match self
            .rpc(&SdfsRequest::Locate {
                name: name.into(),
                version,
            })
            .await?
        {
            SdfsReply::Located { version, .. } => Ok(version),
            other => Err(SdfsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The file `name` and the files under directory `name/` (all files if empty), page after
    /// page.
    pub async fn ls(&self, name: &str) -> Result<Vec<FileInfo>, SdfsError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (files, next) = self.ls_page(name, None, after).await?;
            all.extend(files);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of [`SdfsClient::ls`]: at most `limit` files (at most
    /// [`bus_schemas::jobs::MAX_PAGE`]) after the name `after`, and where the next page starts
    /// if there is one.
    pub async fn ls_page(
        &self,
        name: &str,
        limit: Option<u32>,
        after: Option<String>,
    ) -> Result<(Vec<FileInfo>, Option<String>), SdfsError> {
        let req = SdfsRequest::Ls {
            name: name.into(),
            limit,
            after,
        };
        match self.rpc(&req).await? {
            SdfsReply::Listing { files, next } => Ok((files, next)),
            other => Err(SdfsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deletes a file with all its versions.
    pub async fn delete(&self, name: &str) -> Result<(), SdfsError> {
        self.rpc(&SdfsRequest::Delete { name: name.into() })
            .await
            .map(|_| ())
    }

    /// Pins versions of a file (never pruned) and unpins others (nodes only); returns the
    /// versions pinned after.
    pub async fn pin(
        &self,
        name: &str,
        pin: Vec<u64>,
        unpin: Vec<u64>,
    ) -> Result<Vec<u64>, SdfsError> {
        let req = SdfsRequest::Pin {
            name: name.into(),
            pin,
            unpin,
        };
        match self.rpc(&req).await? {
            SdfsReply::Pinned { versions, .. } => Ok(versions),
            other => Err(SdfsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deletes every file under a directory; returns how many.
    pub async fn deldir(&self, dir: &str) -> Result<u64, SdfsError> {
        match self.rpc(&SdfsRequest::DelDir { dir: dir.into() }).await? {
            SdfsReply::Deleted { count } => Ok(count),
            other => Err(SdfsError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// How long a replica may take to store a blob of `size` bytes once asked: the metadata
/// timeout plus 10 s, plus the bytes at a slow disk's 5 MB/s.
pub fn store_timeout(timeout: Duration, size: u64) -> Duration {
    timeout + Duration::from_secs(size / 5_000_000 + 10)
}

/// Asks every replica to store the blob of `req`, each within `timeout`; returns each one's
/// error, if any. Once `quorum` stored it, the others get a little longer, then are left to
/// the keepers' repair (a dead replica would otherwise hold the put until its timeout).
pub async fn store_on(
    client: &async_nats::Client,
    replicas: &[String],
    req: &StoreRequest,
    timeout: Duration,
    quorum: usize,
) -> Vec<(String, Option<String>)> {
    let asks = replicas.iter().map(|node| async move {
        let reply = ask_store(client, node, req, timeout).await;
        let error = match reply {
            Ok(r) => r.error,
            Err(e) => Some(e.to_string()),
        };
        (node.clone(), error)
    });
    let started = std::time::Instant::now();
    let mut pending: futures::stream::FuturesUnordered<_> = asks.collect();
    let mut done = Vec::new();
    while let Some(result) = pending.next().await {
        done.push(result);
        let stored = done.iter().filter(|(_, e)| e.is_none()).count();
        if stored >= quorum && !pending.is_empty() {
            let grace = started.elapsed() / 4 + Duration::from_secs(1);
            let rest = tokio::time::timeout(grace, pending.by_ref().collect::<Vec<_>>()).await;
            done.extend(rest.unwrap_or_default());
            break;
        }
    }
    done
}

/// One line saying what each replica did.
pub fn describe(stored: &[(String, Option<String>)]) -> String {
    stored
        .iter()
        .map(|(n, e)| format!("{n}: {}", e.as_deref().unwrap_or("stored")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Size and sha256 of a local file, read off the async runtime.
async fn hash_file(path: &Path) -> Result<(u64, String), SdfsError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(local(path))
}

/// Bytes `offset..offset+len` of a local file, read off the async runtime.
async fn read_range(path: PathBuf, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut data = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut data)?;
        Ok(data)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}
