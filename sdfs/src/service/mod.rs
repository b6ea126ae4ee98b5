//! The SDFS tasks of a node: metadata requests from clients (any node answers), replica
//! stores (this node fetches and keeps a blob) and chunk reads of the blobs it holds.

mod peer;
mod request;
mod write;

use super::blobs::Blobs;
use super::error::SdfsNodeError;
use super::listing;
use super::meta::Meta;
use super::now_ms;
use super::placement;
use super::trust::TrustState;
use super::SdfsConfig;
use async_nats::{Client, Message};
use bus_client::transfer;
use bus_schemas::membership::Placed;
use bus_schemas::sdfs::{SdfsErrorKind, SdfsReply, SdfsRequest, VersionInfo};
use bus_schemas::{decode, encode, subjects, validate_dir_name, validate_file_name};
use futures::StreamExt;
use idunno_cluster::kv_index;
use idunno_membership::MembershipHandle;
use rand::Rng;
use request::committed_version;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The slowest a replica store may pull its bytes before it is given up (bytes per second),
/// so that a slow or stalled source cannot hold a store slot for ever.
pub(super) const MIN_STORE_RATE: u64 = 1_000_000;
/// Time every replica store may take on top of its bytes at [`MIN_STORE_RATE`].
pub(super) const STORE_SLACK: Duration = Duration::from_secs(30);

/// What the SDFS tasks share. Cloned into each task; it holds handles only.
#[derive(Clone)]
pub struct Sdfs {
    pub(super) id: String,
    pub(super) client: Client,
    pub(super) cfg: SdfsConfig,
    pub(super) meta: Meta,
    pub(super) blobs: Blobs,
    pub(super) membership: MembershipHandle,
    pub(super) metrics: Arc<idunno_metrics::Metrics>,
    pub(super) trust: watch::Receiver<TrustState>,
    pub(super) trust_tx: Arc<watch::Sender<TrustState>>,
    pub(super) stores: Arc<Semaphore>,
    /// What `ls` reads.
    pub(super) listing: listing::Handle,
    /// What keeps the listing, until [`Sdfs::spawn`] runs it.
    listing_runner: Arc<std::sync::Mutex<Option<kv_index::Runner<listing::Listing>>>>,
}

/// Concurrent requests (metadata, chunk reads, inventories) per node; replica stores have
/// their own slots ([`SdfsConfig::store_slots`]).
const CONCURRENCY: usize = 16;

impl Sdfs {
    /// Opens the metadata bucket and the blob store.
    pub async fn open(
        id: &str,
        client: Client,
        cfg: SdfsConfig,
        data_dir: &std::path::Path,
        membership: MembershipHandle,
        metrics: Arc<idunno_metrics::Metrics>,
    ) -> Result<Self, SdfsNodeError> {
        let js = async_nats::jetstream::new(client.clone());
        let meta = Meta::open(&js, idunno_cluster::replication::automatic(&client)).await?;
        let blobs = Blobs::open(&data_dir.join("sdfs"))?;
        let (trust_tx, trust) = watch::channel(TrustState::default());
        let stores = Arc::new(Semaphore::new(cfg.store_slots));
        let (listing, runner) = kv_index::new(meta.kv().clone(), "the SDFS metadata");
        Ok(Self {
            listing,
            listing_runner: Arc::new(std::sync::Mutex::new(Some(runner))),
            id: id.into(),
            client,
            cfg,
            meta,
            blobs,
            membership,
            metrics,
            trust,
            trust_tx: Arc::new(trust_tx),
            stores,
        })
    }

    /// Subscribes and serves until `shutdown`.
    pub async fn spawn(
        self,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, SdfsNodeError> {
        let client = &self.client;
        let sub = |subject: String| async move {
            (client.subscribe(subject.clone()).await)
                .map_err(|source| SdfsNodeError::Subscribe { subject, source })
        };
        let queue = subjects::SDFS_QUEUE.to_string();
        let rpc = (client
            .queue_subscribe(subjects::sdfs_rpc_all(), queue)
            .await)
            .map_err(|source| SdfsNodeError::Subscribe {
                subject: subjects::sdfs_rpc_all(),
                source,
            })?;
        let store = sub(subjects::sdfs_store(&self.id)).await?;
        let read = sub(subjects::sdfs_read(&self.id)).await?;
        let inventory = sub(subjects::sdfs_inventory(&self.id)).await?;
        let keeper = self.spawn_keeper(&shutdown);
        let listing = self.spawn_listing(&shutdown);
        Ok(tokio::spawn(async move {
            let mut subs = futures::stream::select_all([rpc, read, inventory]);
            let mut store = store;
            let mut running = JoinSet::new();
            let mut storing = JoinSet::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(msg) = store.next() => {
                        // Never queued: a store waits for bytes, so a full node says so at once.
                        let this = self.clone();
                        match Arc::clone(&self.stores).try_acquire_owned() {
                            Ok(slot) => {
                                storing.spawn(async move { this.handle(msg).await; drop(slot) });
                            }
                            Err(_) => this.refuse_store(msg).await,
                        }
                    }
                    Some(_) = storing.join_next(), if !storing.is_empty() => {}
                    Some(msg) = subs.next() => {
                        while running.len() >= CONCURRENCY {
                            running.join_next().await;
                        }
                        let this = self.clone();
                        running.spawn(async move { this.handle(msg).await });
                    }
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
            running.shutdown().await;
            storing.shutdown().await;
            let _ = keeper.await;
            if let Some(listing) = listing {
                let _ = listing.await;
            }
        }))
    }

    /// Starts the keeper.
    fn spawn_keeper(&self, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let keeper = super::keeper::Keeper {
            id: self.id.clone(),
            client: self.client.clone(),
            cfg: self.cfg.clone(),
            meta: self.meta.clone(),
            blobs: self.blobs.clone(),
            membership: self.membership.clone(),
        };
        tokio::spawn(keeper.run(shutdown.clone(), Arc::clone(&self.trust_tx)))
    }

    /// Starts the task that keeps the listing (once: the first spawn takes it).
    fn spawn_listing(&self, shutdown: &CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        let runner = self.listing_runner.lock().ok()?.take()?;
        let metrics = self.metrics.clone();
        let garbage = move || metrics.garbage();
        let run = kv_index::run(runner, listing::Listing::default, garbage, shutdown.clone());
        Some(tokio::spawn(run))
    }

    async fn handle(&self, msg: Message) {
        self.metrics
            .received(idunno_metrics::Traffic::Other, msg.payload.len());
        let subject = msg.subject.as_str();
        let reply = if subject.starts_with(&subjects::sdfs_rpc("")) {
            self.rpc(&msg).await
        } else if subject == subjects::sdfs_store(&self.id) {
            self.store(&msg).await
        } else if subject == subjects::sdfs_inventory(&self.id) {
            self.inventory(&msg).await
        } else {
            self.read(&msg).await
        };
        let (Some(to), Some(bytes)) = (msg.reply, reply) else {
            return;
        };
        self.metrics
            .sent(idunno_metrics::Traffic::Other, bytes.len());
        if let Err(e) = self.client.publish(to, bytes.into()).await {
            tracing::warn!("could not answer an SDFS request: {e}");
        }
    }

    fn garbage(&self, subject: &str, e: bus_schemas::DecodeError) {
        self.metrics.garbage();
        tracing::warn!(%subject, "dropped a malformed SDFS payload: {e}");
    }

    /// Decodes a peer's request, counting and dropping it if malformed.
    pub(super) fn decode<T: bus_schemas::Message>(&self, msg: &Message) -> Option<T> {
        decode::<T>(&msg.payload)
            .map_err(|e| self.garbage(&msg.subject, e))
            .ok()
    }

    async fn rpc(&self, msg: &Message) -> Option<Vec<u8>> {
        let reply = match decode::<SdfsRequest>(&msg.payload) {
            Ok(req) => match subjects::check_op(&msg.subject, req.op(), subjects::sdfs_rpc) {
                Ok(()) => self.answer(req).await,
                Err(why) => {
                    self.metrics.garbage();
                    tracing::warn!("dropped an SDFS request: {why}");
                    error(SdfsErrorKind::BadRequest, why)
                }
            },
            Err(e) => {
                self.garbage(&msg.subject, e.clone());
                error(SdfsErrorKind::BadRequest, format!("malformed request: {e}"))
            }
        };
        encode(&reply).ok()
    }

    async fn answer(&self, req: SdfsRequest) -> SdfsReply {
        if let Err(e) = check_name(&req) {
            return error(SdfsErrorKind::BadName, e.to_string());
        }
        if let Err(e) = self.check_limits(&req) {
            return error(SdfsErrorKind::Limit, e.to_string());
        }
        let result = match req {
            SdfsRequest::Prepare {
                name, replication, ..
            } => self.prepare(&name, replication).await,
            SdfsRequest::Write {
                ref name,
                chunk_size,
                created_ms,
                ..
            } => match committed_version(&req, now_ms()) {
                Some(version) => self.write(name, version, chunk_size, created_ms).await,
                None => Err(internal("not a write")),
            },
            SdfsRequest::Commit { ref name, .. } => match committed_version(&req, now_ms()) {
                Some(version) => self.commit(name, version).await,
                None => Err(internal("not a commit")),
            },
            SdfsRequest::Locate { name, version } => self.locate(&name, version).await,
            SdfsRequest::Ls { name, limit, after } => self.ls(name, limit, after).await,
            SdfsRequest::Delete { name } => self.delete(&name).await,
            SdfsRequest::DelDir { dir } => self.deldir(&dir).await,
            SdfsRequest::Restore { name, versions } => self.restore(name, &versions).await,
            SdfsRequest::ReportCorrupt { name, blob, node } => {
                self.drop_replica(&name, &blob, &node).await
            }
            SdfsRequest::Pin { name, pin, unpin } => self.pin(name, &pin, &unpin).await,
        };
        result.unwrap_or_else(|(kind, message)| error(kind, message))
    }

    /// A page of the listing (from memory, once it holds what the bucket holds now).
    async fn ls(
        &self,
        name: String,
        limit: Option<u32>,
        after: Option<String>,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let max = bus_schemas::jobs::MAX_PAGE;
        let limit = limit.unwrap_or(max).clamp(1, max) as usize;
        let read = move |l: &mut listing::Listing| l.page(&name, limit, after.as_deref());
        match self.listing.fresh(read).await {
            Ok((files, next)) => Ok(SdfsReply::Listing { files, next }),
            Err(e) => Err((SdfsErrorKind::Internal, e.to_string())),
        }
    }

    async fn delete(&self, name: &str) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        match self.meta.delete(name).await {
            Ok(true) => Ok(SdfsReply::Deleted { count: 1 }),
            Ok(false) => Err((SdfsErrorKind::NotFound, format!("no file {name:?}"))),
            Err(e) => Err(meta_error(e)),
        }
    }

    async fn pin(
        &self,
        name: String,
        pin: &[u64],
        unpin: &[u64],
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let versions = self.meta.pin(&name, pin, unpin).await.map_err(meta_error)?;
        tracing::info!(%name, ?versions, "pinned versions");
        Ok(SdfsReply::Pinned { name, versions })
    }

    async fn restore(
        &self,
        name: String,
        versions: &[VersionInfo],
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let added = self.meta.restore(&name, versions).await.map_err(internal)?;
        tracing::warn!(%name, added, "versions restored by fsck");
        Ok(SdfsReply::Restored { name, added })
    }

    /// Alive members with where they run, this node included.
    pub(super) async fn live(&self) -> Vec<Placed> {
        match self.membership.view().await {
            Ok(view) => view.alive_places(),
            Err(_) => vec![Placed {
                id: self.id.clone(),
                host: self.id.clone(),
                zone: String::new(),
            }],
        }
    }

    /// The replication of a put: the asked-for one (at least 1) or the cluster's.
    pub(super) fn wanted(&self, asked: Option<u32>) -> usize {
        asked.map_or(self.cfg.replication, |r| (r as usize).max(1))
    }

    async fn prepare(
        &self,
        name: &str,
        asked: Option<u32>,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let live = self.live().await;
        let wanted = self.wanted(asked);
        let replicas = placement::replicas(name, &live, wanted);
        if replicas.is_empty() {
            return Err((
                SdfsErrorKind::NoReplicas,
                "no live node can store the file".into(),
            ));
        }
        let blob = format!(
            "{:016x}{:016x}",
            rand::rng().random::<u64>(),
            rand::rng().random::<u64>()
        );
        let write_quorum = self.cfg.write_quorum.min(replicas.len()) as u32;
        let chunk_size = transfer::chunk_size(self.client.server_info().max_payload);
        Ok(SdfsReply::Prepared {
            blob,
            replicas,
            write_quorum,
            chunk_size,
        })
    }

    pub(super) async fn commit(
        &self,
        name: &str,
        version: VersionInfo,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let effective = self
            .wanted(version.replication)
            .min(self.live().await.len())
            .max(1);
        let quorum = self.cfg.write_quorum.min(effective);
        if version.replicas.len() < quorum {
            let message = format!(
                "only {} of {quorum} replicas stored {name:?}; nothing was committed",
                version.replicas.len()
            );
            return Err((SdfsErrorKind::QuorumNotMet, message));
        }
        let blob = version.blob.clone();
        let file = self
            .meta
            .add_version(name, version, self.cfg.keep_versions)
            .await
            .map_err(internal)?;
        // The number this blob got (a commit sent again after a lost answer gets the same
        // one, even when a later put added another version meanwhile).
        let version = (file.versions.iter().find(|v| v.blob == blob))
            .or(file.latest())
            .map_or(0, |v| v.version);
        tracing::info!(%name, version, "committed");
        Ok(SdfsReply::Committed {
            name: name.into(),
            version,
        })
    }

    async fn locate(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let not_found = || (SdfsErrorKind::NotFound, format!("no file {name:?}"));
        let (file, _) = self
            .meta
            .get(name)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let found = match version {
            None => file.latest().cloned(),
            Some(v) => file.versions.iter().find(|x| x.version == v).cloned(),
        };
        match found {
            Some(version) => Ok(SdfsReply::Located {
                name: name.into(),
                version,
            }),
            None => Err((
                SdfsErrorKind::NotFound,
                format!("{name:?} has no version {}", version.unwrap_or(0)),
            )),
        }
    }

    async fn deldir(&self, dir: &str) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let prefix = format!("{}/", dir.strip_suffix('/').unwrap_or(dir));
        let mut count = 0;
        for name in self.meta.names().await.map_err(internal)? {
            if name.starts_with(&prefix) && self.meta.delete(&name).await.map_err(meta_error)? {
                count += 1;
            }
        }
        Ok(SdfsReply::Deleted { count })
    }

    async fn drop_replica(
        &self,
        name: &str,
        blob: &str,
        node: &str,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        tracing::warn!(%name, %blob, %node, "a reader reported a corrupt replica");
        self.meta
            .modify(name, |current| {
                let mut file = current?;
                let v = file.versions.iter_mut().find(|v| v.blob == blob)?;
                v.replicas.retain(|n| n != node);
                Some(file)
            })
            .await
            .map_err(internal)?;
        Ok(SdfsReply::Deleted { count: 0 })
    }
}

pub(super) fn error(kind: SdfsErrorKind, message: String) -> SdfsReply {
    SdfsReply::Error { kind, message }
}

pub(super) fn internal(e: impl std::fmt::Display) -> (SdfsErrorKind, String) {
    (SdfsErrorKind::Internal, e.to_string())
}

/// Checks the file or directory name a request carries.
fn check_name(req: &SdfsRequest) -> Result<(), bus_schemas::NameError> {
    match req {
        SdfsRequest::DelDir { dir } => validate_dir_name(dir),
        SdfsRequest::Ls { name, .. } if name.is_empty() => Ok(()),
        SdfsRequest::Ls { name, .. } => validate_dir_name(name),
        SdfsRequest::Prepare { name, .. }
        | SdfsRequest::Write { name, .. }
        | SdfsRequest::Commit { name, .. }
        | SdfsRequest::Restore { name, .. }
        | SdfsRequest::Locate { name, .. }
        | SdfsRequest::Delete { name }
        | SdfsRequest::Pin { name, .. }
        | SdfsRequest::ReportCorrupt { name, .. } => validate_file_name(name),
    }
}

/// A metadata failure as an SDFS error: a pinned file or a missing version is the caller's.
fn meta_error(e: crate::meta::MetaError) -> (SdfsErrorKind, String) {
    use crate::meta::MetaError;
    match e {
        MetaError::Pinned { .. } => (SdfsErrorKind::Pinned, e.to_string()),
        MetaError::NoVersion { .. } => (SdfsErrorKind::NotFound, e.to_string()),
        e => internal(e),
    }
}
