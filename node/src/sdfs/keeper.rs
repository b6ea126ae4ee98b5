//! The keeper: keeps this node's share of SDFS true to the metadata.
//!
//! It follows the metadata bucket (a KV watch feeds an in-memory index) and, every half
//! second, (1) re-replicates versions whose holders failed or left, when this node is the
//! version's repair leader (its best-ranked live holder); (2) deletes blobs no version wants
//! any more; (3) re-announces blobs it still holds for under-replicated versions (a node
//! restarted with its data serves it again without copying it).

use super::blobs::{BlobMeta, Blobs};
use super::meta::Meta;
use super::placement;
use super::service::SdfsConfig;
use crate::membership::MembershipHandle;
use async_nats::Client;
use bus_schemas::membership::MemberState;
use bus_schemas::sdfs::{FileInfo, StoreReply, StoreRequest, VersionInfo};
use bus_schemas::subjects;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Unreferenced blobs younger than this may belong to a put still in flight.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(600);
/// Time between passes.
const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// A node that joined less than this ago is not yet a re-replication target.
const NEWCOMER_SETTLE: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the keeper needs.
pub struct Keeper {
    /// This node.
    pub id: String,
    /// The bus.
    pub client: Client,
    /// SDFS settings.
    pub cfg: SdfsConfig,
    /// The metadata bucket.
    pub meta: Meta,
    /// This node's blobs.
    pub blobs: Blobs,
    /// Membership, for who is alive.
    pub membership: MembershipHandle,
}

struct State {
    index: HashMap<String, FileInfo>,
    /// Blobs some version held until a change dropped it (delete or prune): delete at once.
    dropped: HashSet<String>,
    started: SystemTime,
}

impl Keeper {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let watch = match self.meta.watch().await {
            Ok(w) => w,
            Err(e) => return tracing::error!("SDFS keeper cannot watch the metadata: {e}"),
        };
        let mut watch = std::pin::pin!(watch);
        let mut state = State {
            index: HashMap::new(),
            dropped: HashSet::new(),
            started: SystemTime::now(),
        };
        // No pass may judge blobs before the index holds every file: load it first (the
        // watch replays the same values afterwards, which changes nothing).
        if let Err(e) = self.load(&mut state).await {
            return tracing::error!("SDFS keeper cannot read the metadata: {e}");
        }
        let mut tick = tokio::time::interval(PASS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((name, file)) = watch.next() => state.apply(name, file),
                _ = tick.tick() => {
                    if let Err(e) = self.pass(&mut state).await {
                        tracing::warn!("SDFS keeper pass: {e:#}");
                    }
                }
            }
        }
    }

    async fn load(&self, state: &mut State) -> Result<(), super::meta::MetaError> {
        for name in self.meta.names().await? {
            if let Some((file, _)) = self.meta.get(&name).await? {
                state.index.insert(name, file);
            }
        }
        Ok(())
    }

    async fn pass(&self, state: &mut State) -> anyhow::Result<()> {
        let view = self.membership.view().await?;
        let alive: Vec<String> = view
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.id.clone())
            .collect();
        // Nodes that (re)started moments ago first re-announce what they still hold.
        let settle_ms = now_ms().saturating_sub(NEWCOMER_SETTLE.as_millis() as u64);
        let settled: Vec<String> = view
            .members
            .iter()
            .filter(|m| {
                m.state == MemberState::Alive && (m.generation < settle_ms || m.id == self.id)
            })
            .map(|m| m.id.clone())
            .collect();
        let gone: HashSet<String> = view
            .members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Failed | MemberState::Left))
            .map(|m| m.id.clone())
            .collect();
        let target_of = |v: &VersionInfo| self.target(v, alive.len());
        let held: HashMap<String, BlobMeta> = self
            .blobs
            .list()
            .await?
            .into_iter()
            .map(|b| (b.blob.clone(), b))
            .collect();
        let files: Vec<FileInfo> = state.index.values().cloned().collect();
        for file in &files {
            for v in &file.versions {
                let live: Vec<String> = v
                    .replicas
                    .iter()
                    .filter(|n| !gone.contains(*n))
                    .cloned()
                    .collect();
                let leader = placement::rank(&file.name, live.iter().map(String::as_str))
                    .first()
                    .map(|s| s.to_string());
                let target = target_of(v);
                let needs_work = live.len() < target || live.len() < v.replicas.len();
                if needs_work
                    && leader.as_deref() == Some(self.id.as_str())
                    && held.contains_key(&v.blob)
                {
                    self.repair(&file.name, v, &live, &settled, target).await;
                }
            }
        }
        self.collect(state, &held, &gone, alive.len()).await;
        Ok(())
    }

    /// Copies a version to new nodes until it has `target` live holders, then records the
    /// new replica set (dropping holders that failed or left).
    async fn repair(
        &self,
        name: &str,
        v: &VersionInfo,
        live: &[String],
        alive: &[String],
        target: usize,
    ) {
        let need = target.saturating_sub(live.len());
        let candidates = placement::rank(name, alive.iter().map(String::as_str));
        let new: Vec<&str> = candidates
            .into_iter()
            .filter(|n| !live.iter().any(|l| l == n))
            .take(need)
            .collect();
        let req = StoreRequest {
            blob: v.blob.clone(),
            size: v.size,
            sha256: v.sha256.clone(),
            source: subjects::sdfs_read(&self.id),
            chunk_size: bus_client::transfer::chunk_size(self.client.server_info().max_payload),
        };
        let timeout = Duration::from_secs(v.size / 5_000_000 + 15);
        let asks = new.iter().map(|node| {
            let req = req.clone();
            async move {
                let reply = bus_client::request::<_, StoreReply>(
                    &self.client,
                    subjects::sdfs_store(node),
                    &req,
                    timeout,
                )
                .await;
                match reply {
                    Ok(StoreReply { error: None, .. }) => Some(node.to_string()),
                    Ok(StoreReply { error: Some(e), .. }) => {
                        tracing::warn!(%name, %node, "re-replication refused: {e}");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(%name, %node, "re-replication failed: {e}");
                        None
                    }
                }
            }
        });
        let copied: Vec<String> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut replicas: Vec<String> = live.to_vec();
        replicas.extend(copied.iter().cloned());
        if replicas != v.replicas {
            self.set_replicas(name, &v.blob, replicas).await;
            tracing::info!(%name, version = v.version, copied = ?copied, "re-replicated");
        }
    }

    async fn set_replicas(&self, name: &str, blob: &str, replicas: Vec<String>) {
        let result = self
            .meta
            .modify(name, |current| {
                let mut file = current?;
                let v = file.versions.iter_mut().find(|v| v.blob == blob)?;
                v.replicas = replicas.clone();
                Some(file)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(%name, "could not record replicas: {e}");
        }
    }

    /// Deletes unwanted blobs; re-announces wanted ones that the metadata forgot.
    async fn collect(
        &self,
        state: &mut State,
        held: &HashMap<String, BlobMeta>,
        gone: &HashSet<String>,
        alive: usize,
    ) {
        let mut wanted: HashMap<&str, (&FileInfo, &VersionInfo)> = HashMap::new();
        for file in state.index.values() {
            for v in &file.versions {
                wanted.insert(v.blob.as_str(), (file, v));
            }
        }
        let now = SystemTime::now();
        for (blob, meta) in held {
            match wanted.get(blob.as_str()) {
                Some((_, v)) if v.replicas.contains(&self.id) => {}
                Some((file, v)) => {
                    let live = v.replicas.iter().filter(|n| !gone.contains(*n)).count();
                    let target = self.target(v, alive);
                    if live < target
                        && self.blobs.sha256(blob).await.ok().as_deref() == Some(v.sha256.as_str())
                    {
                        let mut replicas = v.replicas.clone();
                        replicas.push(self.id.clone());
                        self.set_replicas(&file.name, blob, replicas).await;
                        tracing::info!(name = %file.name, version = v.version, "re-announced a kept replica");
                    } else if live >= v.replication.map_or(self.cfg.replication, |r| r as usize) {
                        // Fully replicated elsewhere: this copy is surplus.
                        self.delete(blob).await;
                    }
                }
                None => {
                    let old =
                        now.duration_since(meta.modified).unwrap_or_default() > IN_FLIGHT_GRACE;
                    if state.dropped.contains(blob) || meta.modified < state.started || old {
                        self.delete(blob).await;
                        state.dropped.remove(blob);
                    }
                }
            }
        }
    }

    /// The replicas a version wants: its own replication, or the cluster's, at most `alive`.
    fn target(&self, v: &VersionInfo, alive: usize) -> usize {
        let wanted = v
            .replication
            .map_or(self.cfg.replication, |r| (r as usize).max(1));
        wanted.min(alive).max(1)
    }

    async fn delete(&self, blob: &str) {
        match self.blobs.delete(blob).await {
            Ok(()) => tracing::info!(%blob, "deleted an unwanted blob"),
            Err(e) => tracing::warn!(%blob, "could not delete: {e}"),
        }
    }
}

impl State {
    fn apply(&mut self, name: String, file: Option<FileInfo>) {
        let before: HashSet<String> = self.index.get(&name).map(blobs_of).unwrap_or_default();
        let after: HashSet<String> = file.as_ref().map(blobs_of).unwrap_or_default();
        self.dropped.extend(before.difference(&after).cloned());
        match file {
            Some(f) => self.index.insert(name, f),
            None => self.index.remove(&name),
        };
    }
}

fn blobs_of(file: &FileInfo) -> HashSet<String> {
    file.versions.iter().map(|v| v.blob.clone()).collect()
}
