//! The keeper: keeps this node's share of SDFS true to the metadata.
//!
//! It follows the metadata bucket (a KV watch feeds an in-memory index) and, every half
//! second when something moved (the metadata, the membership view, this node's blobs, or
//! repairs still to do) and at least every [`FULL_PASS`], (1) re-replicates versions whose holders failed or left, when this node is the
//! version's repair leader (its best-ranked live holder); (2) deletes blobs no version wants
//! any more; (3) re-announces blobs it still holds for under-replicated versions (a node
//! restarted with its data serves it again without copying it).

mod collect;

use super::blobs::Blobs;
use super::meta::{Meta, MetaError};
use super::now_ms;
use super::placement;
use super::trust::{LocalEpoch, TrustState};
use super::SdfsConfig;
use async_nats::Client;
use bus_schemas::membership::{MemberRecord, MemberState, Placed};
use bus_schemas::sdfs::{StoreReply, StoreRequest, VersionInfo};
use bus_schemas::subjects;
use collect::State;
use futures::StreamExt;
use idunno_cluster::error::KvError;
use idunno_membership::MembershipHandle;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Time between passes.
const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// A node that joined less than this ago is not yet a re-replication target.
const NEWCOMER_SETTLE: Duration = Duration::from_secs(5);
/// How long a recorded repair stands in for an index that does not show it yet (the watch
/// feeding the index stalls while JetStream replaces a consumer on a server that died).
const REPAIR_MEMO: Duration = Duration::from_secs(30);
/// A full pass (the blobs listed from disk, not from memory) runs this often, whatever moved
/// (puts in flight age, the epoch changes, a blob changed behind the store).
const FULL_PASS: Duration = Duration::from_secs(300);
/// Pause before the keeper starts over after the metadata failed it.
const RETRY: Duration = Duration::from_secs(2);

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

impl Keeper {
    /// Runs until `shutdown`. If the metadata cannot be read or its watch ends, it starts over
    /// (after a pause) with a fresh index: it never stops for the life of the process.
    pub async fn run(
        self,
        shutdown: CancellationToken,
        trust: std::sync::Arc<watch::Sender<TrustState>>,
    ) {
        let mut state = State::new(LocalEpoch::load(self.blobs.dir()), trust);
        self.clean_labels().await;
        loop {
            if let Err(e) = self.follow(&mut state, &shutdown).await {
                tracing::warn!("SDFS keeper: {e}; starting over");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Loads the index, then follows the watch and runs passes until the watch ends.
    async fn follow(
        &self,
        state: &mut State,
        shutdown: &CancellationToken,
    ) -> Result<(), MetaError> {
        let watch = self.meta.watch().await?;
        let mut watch = std::pin::pin!(watch);
        // No pass may judge blobs before the index holds every file: load it first (the
        // watch replays the same values afterwards, which changes nothing).
        state.index.clear();
        state.corrupt.clear();
        self.load(state).await?;
        let mut tick = tokio::time::interval(PASS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                change = watch.next() => match change {
                    Some((name, change)) => state.apply(name, change),
                    None => return Err(KvError::ended("the metadata watch").into()),
                },
                _ = tick.tick() => self.maybe_pass(state, &mut seen).await,
            }
        }
    }

    /// Reads every entry; an undecodable one is remembered (its blobs are kept), not fatal.
    async fn load(&self, state: &mut State) -> Result<(), MetaError> {
        for name in self.meta.names().await? {
            match self.meta.get(&name).await {
                Ok(Some((file, _))) => {
                    state.index.insert(name, file);
                }
                Ok(None) => {}
                Err(MetaError::Corrupt { key, reason }) => {
                    tracing::warn!(%key, "corrupt metadata entry, skipped: {reason}");
                    state.corrupt.insert(name);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes labels whose blob is gone (a store that failed after its label was written),
    /// written before this keeper started, so no label of a store in progress is removed.
    async fn clean_labels(&self) {
        let started = std::time::SystemTime::now() - Duration::from_secs(1);
        let (Ok(held), Ok(labelled)) = (self.blobs.list().await, self.blobs.labelled().await)
        else {
            return;
        };
        let held: HashSet<String> = held.into_iter().map(|b| b.blob).collect();
        for (blob, written) in labelled {
            if written < started && !held.contains(&blob) {
                let _ = self.blobs.delete_label(&blob).await;
            }
        }
    }

    /// Runs a pass if anything moved since the last one (or it is due anyway).
    async fn maybe_pass(&self, state: &mut State, seen: &mut Seen) {
        let Ok(view) = self.membership.view().await else {
            return;
        };
        let blobs = self.blobs.generation();
        let full = seen.full.is_none_or(|t| t.elapsed() >= FULL_PASS);
        let due = full
            || state.changed
            || seen.busy
            || seen.view != Some(view.version)
            || seen.blobs != blobs;
        if !due {
            return;
        }
        state.changed = false;
        let now = std::time::Instant::now();
        *seen = Seen {
            view: Some(view.version),
            blobs,
            full: if full { Some(now) } else { seen.full },
            busy: true,
        };
        match self.pass(state, (view, full)).await {
            Ok(busy) => seen.busy = busy,
            Err(e) => tracing::warn!("SDFS keeper pass: {e:#}"),
        }
    }

    /// One pass; whether repairs this node leads remain to do.
    async fn pass(
        &self,
        state: &mut State,
        (view, full): (bus_schemas::membership::ViewSnapshot, bool),
    ) -> Result<bool, crate::SdfsNodeError> {
        let mut busy = false;
        let alive = view.alive_ids().len();
        let (settled, gone) = settled_and_gone(&view.members, &self.id);
        // From memory; from disk again at every full pass (a blob changed behind the store).
        let held = if full {
            self.blobs.relist().await?
        } else {
            self.blobs.held().await?
        };
        let now = std::time::Instant::now();
        state
            .repaired
            .retain(|_, (_, at)| now.duration_since(*at) < REPAIR_MEMO);
        // Only the versions this node holds, and leads, that lack replicas are copied.
        let mut work = Vec::new();
        for file in state.index.values() {
            for v in file.versions.iter().filter(|v| held.contains_key(&v.blob)) {
                // Cheap checks first: most versions have every copy they want.
                let target = self.target(v, alive);
                let lost = v.replicas.iter().filter(|n| gone.contains(*n)).count();
                let live_n = v.replicas.len() - lost;
                if live_n >= target && lost == 0 {
                    continue;
                }
                // A repair recorded moments ago whose holders all still live is done, even if
                // the index does not show it yet.
                let done = (state.repaired.get(&v.blob))
                    .is_some_and(|(r, _)| r.len() >= target && r.iter().all(|n| !gone.contains(n)));
                let live: Vec<String> = (v.replicas.iter())
                    .filter(|n| !gone.contains(*n))
                    .cloned()
                    .collect();
                let ranked = placement::rank(&file.name, live.iter().map(String::as_str));
                if !done && ranked.first().map(|s| s.as_ref()) == Some(self.id.as_str()) {
                    work.push((file.name.clone(), v.clone(), live, target));
                }
            }
        }
        for (name, v, live, target) in work {
            busy = true;
            if let Some(r) = self.repair(&name, &v, &live, &settled, target).await {
                state.repaired.insert(v.blob.clone(), (r, now));
            }
        }
        self.collect(state, &held, &gone, alive).await?;
        Ok(busy)
    }

    /// Copies a version to new nodes until it has `target` live holders, then records the
    /// new replica set (dropping holders that failed or left); returns it once recorded.
    async fn repair(
        &self,
        name: &str,
        v: &VersionInfo,
        live: &[String],
        alive: &[Placed],
        target: usize,
    ) -> Option<Vec<String>> {
        let need = target.saturating_sub(live.len());
        // New copies go to hosts (then zones) that hold none first.
        let held: Vec<&str> = live.iter().map(String::as_str).collect();
        let new = placement::spread(name, alive, &held, need);
        let req = StoreRequest {
            blob: v.blob.clone(),
            size: v.size,
            sha256: v.sha256.clone(),
            source: subjects::sdfs_read(&self.id),
            chunk_size: bus_client::transfer::chunk_size(self.client.server_info().max_payload),
            label: Some(bus_schemas::fsck::BlobLabel::of(name, v)),
        };
        let timeout = Duration::from_secs(v.size / 5_000_000 + 15);
        let asks = new.iter().map(|node| {
            let req = req.clone();
            async move {
                let reply = bus_client::sdfs::ask_store(&self.client, node, &req, timeout).await;
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
        if replicas == v.replicas || !self.set_replicas(name, &v.blob, replicas.clone()).await {
            return None;
        }
        tracing::info!(%name, version = v.version, copied = ?copied, "re-replicated");
        Some(replicas)
    }

    pub(super) async fn set_replicas(&self, name: &str, blob: &str, replicas: Vec<String>) -> bool {
        let result = self
            .meta
            .modify(name, |current| {
                let mut file = current?;
                let v = file.versions.iter_mut().find(|v| v.blob == blob)?;
                v.replicas = replicas.clone();
                Some(file)
            })
            .await;
        match result {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%name, "could not record replicas: {e}");
                false
            }
        }
    }

    /// The replicas a version wants: its own replication, or the cluster's, at most `alive`.
    pub(super) fn target(&self, v: &VersionInfo, alive: usize) -> usize {
        let wanted = v
            .replication
            .map_or(self.cfg.replication, |r| (r as usize).max(1));
        wanted.min(alive).max(1)
    }

    pub(super) async fn delete(&self, blob: &str) {
        match self.blobs.delete(blob).await {
            Ok(()) => tracing::info!(%blob, "deleted an unwanted blob"),
            Err(e) => tracing::warn!(%blob, "could not delete: {e}"),
        }
    }
}

/// What the last pass saw.
#[derive(Default)]
struct Seen {
    view: Option<u64>,
    blobs: u64,
    /// When the last full pass (with the blobs listed from disk) ran.
    full: Option<std::time::Instant>,
    /// It left repairs to do (or failed): the next tick passes again.
    busy: bool,
}

/// The members that may take copies (alive, and settled: nodes that (re)started moments ago
/// first re-announce what they still hold; this node always) and the members gone.
fn settled_and_gone(members: &[MemberRecord], me: &str) -> (Vec<Placed>, HashSet<String>) {
    let settle_ms = now_ms().saturating_sub(NEWCOMER_SETTLE.as_millis() as u64);
    let settled = members
        .iter()
        .filter(|m| m.state == MemberState::Alive && (m.generation < settle_ms || m.id == me))
        .map(MemberRecord::placed)
        .collect();
    let gone = members
        .iter()
        .filter(|m| matches!(m.state, MemberState::Failed | MemberState::Left))
        .map(|m| m.id.clone())
        .collect();
    (settled, gone)
}
