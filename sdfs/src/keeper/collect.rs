//! The keeper's index of the metadata and its garbage collection: which blobs this node may
//! delete, which it keeps in quarantine because the metadata cannot be trusted to name them,
//! and the labels it keeps true to the committed versions.

use super::Keeper;
use crate::blobs::BlobMeta;
use crate::meta::{Change, MetaError};
use crate::trust::{decide, Decision, LocalEpoch, TrustState};
use bus_schemas::fsck::BlobLabel;
use bus_schemas::sdfs::{FileInfo, VersionInfo};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Unreferenced blobs younger than this may belong to a put still in flight.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(600);

/// The keeper's state: the index of the metadata and what it decided of it.
pub(super) struct State {
    pub(super) index: HashMap<String, FileInfo>,
    /// The index changed since the last pass.
    pub(super) changed: bool,
    /// Names whose entries do not decode: the blobs they may name are never collected.
    pub(super) corrupt: HashSet<String>,
    /// Blobs some version held until a change dropped it (delete or prune): delete at once.
    dropped: HashSet<String>,
    started: SystemTime,
    local: LocalEpoch,
    /// The version each held blob's label was last checked against.
    labelled: HashMap<String, u64>,
    trust: std::sync::Arc<watch::Sender<TrustState>>,
    last: Option<Decision>,
    /// Repairs this keeper recorded that the index may not show yet: blob → (the replicas
    /// written, when). See [`State::repairing`].
    pub(super) repaired: HashMap<String, (Vec<String>, std::time::Instant)>,
}

impl State {
    pub(super) fn new(
        local: LocalEpoch,
        trust: std::sync::Arc<watch::Sender<TrustState>>,
    ) -> State {
        State {
            index: HashMap::new(),
            changed: true,
            corrupt: HashSet::new(),
            dropped: HashSet::new(),
            started: SystemTime::now(),
            local,
            labelled: HashMap::new(),
            repaired: HashMap::new(),
            trust,
            last: None,
        }
    }

    pub(super) fn apply(&mut self, name: String, change: Change) {
        self.changed = true;
        let before: HashSet<String> = self.index.get(&name).map(blobs_of).unwrap_or_default();
        let file = match change {
            Change::Put(f) => Some(f),
            Change::Deleted => None,
            Change::Corrupt(_) => {
                // Nothing is known of the entry now: keep its blobs, drop none.
                self.index.remove(&name);
                self.corrupt.insert(name);
                return;
            }
        };
        self.corrupt.remove(&name);
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

impl Keeper {
    /// Deletes unwanted blobs (only while the metadata is trusted, but for blobs a watched
    /// change dropped); re-announces wanted ones the metadata forgot; keeps labels true.
    pub(super) async fn collect(
        &self,
        state: &mut State,
        held: &HashMap<String, BlobMeta>,
        gone: &HashSet<String>,
        alive: usize,
    ) -> Result<(), MetaError> {
        // The versions of the blobs held here (not a copy of the whole index).
        let mut wanted: HashMap<String, (String, VersionInfo)> = HashMap::new();
        for file in state.index.values() {
            for v in file.versions.iter().filter(|v| held.contains_key(&v.blob)) {
                wanted.insert(v.blob.clone(), (file.name.clone(), v.clone()));
            }
        }
        let unnamed = held.keys().filter(|b| !wanted.contains_key(*b)).count();
        let trusted = self.judge_trust(state, unnamed).await?;
        let now = SystemTime::now();
        let mut quarantined = 0;
        for (blob, meta) in held {
            match wanted.get(blob) {
                Some((name, v)) => {
                    self.keep_label(state, name, v, blob).await;
                    if !v.replicas.contains(&self.id) {
                        self.unlisted(name, v, blob, gone, alive, trusted).await;
                    }
                }
                None if state.dropped.remove(blob) => self.delete(blob).await,
                None => {
                    let old =
                        now.duration_since(meta.modified).unwrap_or_default() > IN_FLIGHT_GRACE;
                    if meta.modified >= state.started && !old {
                        continue; // a put in flight
                    }
                    if !trusted || self.owner_is_corrupt(state, blob).await {
                        quarantined += 1;
                        continue;
                    }
                    state.labelled.remove(blob);
                    self.delete(blob).await;
                }
            }
        }
        // Forget drops of blobs this node does not hold, so the set cannot grow for ever.
        state.dropped.retain(|b| held.contains_key(b));
        state.trust.send_replace(TrustState {
            trusted,
            quarantined,
        });
        Ok(())
    }

    /// Reads the bucket's epoch and decides whether this node trusts it, adopting it when
    /// every held blob is named.
    async fn judge_trust(&self, state: &mut State, unnamed: usize) -> Result<bool, MetaError> {
        let bucket = self.meta.epoch().await?;
        let bucket = bucket.map(|e| e.epoch);
        let decision = decide(state.local.get(), bucket.as_deref(), unnamed);
        if decision == Decision::Adopt {
            if let Some(epoch) = &bucket {
                if let Err(e) = state.local.adopt(epoch) {
                    tracing::warn!("cannot record the metadata epoch: {e}");
                    return Ok(false);
                }
                tracing::info!(%epoch, "SDFS metadata trusted: every blob here is named");
            }
        }
        if decision == Decision::Quarantine && state.last != Some(Decision::Quarantine) {
            tracing::warn!(
                unnamed,
                "SDFS metadata not trusted (its epoch is not the one this node recorded): \
                 blobs it does not name are kept in quarantine; see `idunno fsck`"
            );
        }
        state.last = Some(decision);
        Ok(decision != Decision::Quarantine)
    }

    /// Whether the blob may belong to a file whose entry does not decode (or has no label
    /// while some entry does not decode): then it is kept.
    async fn owner_is_corrupt(&self, state: &State, blob: &str) -> bool {
        if state.corrupt.is_empty() {
            return false;
        }
        match self.blobs.label(blob).await {
            Ok(Some(label)) => state.corrupt.contains(&label.name),
            _ => true,
        }
    }

    /// Keeps a held blob's label equal to the committed version it belongs to.
    async fn keep_label(&self, state: &mut State, name: &str, v: &VersionInfo, blob: &str) {
        if state.labelled.get(blob) == Some(&v.version) {
            return;
        }
        let want = BlobLabel::of(name, v);
        let current = self.blobs.label(blob).await;
        if current.as_ref().ok().and_then(|l| l.as_ref()) != Some(&want) {
            if let Err(e) = self.blobs.write_label(blob, &want).await {
                return tracing::warn!(%blob, "cannot write the blob's label: {e}");
            }
        }
        state.labelled.insert(blob.to_string(), v.version);
    }

    /// A named blob this node holds although the version does not list it: re-announce it
    /// if the version lacks replicas, delete it if the version has them all (and the metadata
    /// is trusted).
    async fn unlisted(
        &self,
        name: &str,
        v: &VersionInfo,
        blob: &str,
        gone: &HashSet<String>,
        alive: usize,
        trusted: bool,
    ) {
        let live = v.replicas.iter().filter(|n| !gone.contains(*n)).count();
        let target = self.target(v, alive);
        if live < target && self.blobs.sha256(blob).await.ok().as_deref() == Some(v.sha256.as_str())
        {
            let mut replicas = v.replicas.clone();
            replicas.push(self.id.clone());
            self.set_replicas(name, blob, replicas).await;
            tracing::info!(%name, version = v.version, "re-announced a kept replica");
        } else if trusted && live >= v.replication.map_or(self.cfg.replication, |r| r as usize) {
            // Fully replicated elsewhere: this copy is surplus.
            self.delete(blob).await;
        }
    }
}
