//! The live view behind the dashboard: a task that rebuilds a cluster snapshot every second
//! (members with their work, job records, a statistics sample) and keeps ten minutes of
//! samples, and a bridge that forwards membership and job events from the bus as they come.

use super::model::{self, EventCounts, Sample, Snapshot};
use bus_schemas::codec::decode;
use bus_schemas::jobs::JobEvent;
use bus_schemas::membership::{MemberChange, MemberEvent, MemberEventKind};
use bus_schemas::subjects;
use idunno_cluster::tasks::{ok, Tasks};
use idunno_membership::MembershipHandle;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Samples kept: one a second for ten minutes.
const HISTORY: usize = 600;
/// How often the snapshot is rebuilt.
const PERIOD: Duration = Duration::from_secs(1);
/// How often each node is asked for its figures (models held, resources).
const STATS_PERIOD: Duration = Duration::from_secs(5);
/// How long a node has to say it.
const STAT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the live task publishes each second.
#[derive(Debug, Default)]
pub struct Published {
    /// The latest snapshot.
    pub snapshot: Snapshot,
    /// It as JSON, serialised once for every event-stream client.
    pub json: String,
    /// Samples, oldest first.
    pub history: Vec<Sample>,
    /// Membership events seen since the node started.
    pub counts: EventCounts,
}

/// An event forwarded from the bus: its SSE event name and JSON data.
pub type BusEvent = (&'static str, Arc<str>);

/// The dashboard's handle on the live view.
#[derive(Clone)]
pub struct LiveHandle {
    /// The latest publication.
    pub latest: watch::Receiver<Arc<Published>>,
    /// Membership and job events as they arrive.
    pub events: broadcast::Sender<BusEvent>,
}

/// What the live task reads.
pub struct LiveDeps {
    /// This node's id.
    pub id: String,
    /// The bus.
    pub client: async_nats::Client,
    /// The membership view.
    pub membership: MembershipHandle,
    /// The jobs that have not ended and those that ended last, from the job index.
    pub jobs: idunno_cluster::live_jobs::LiveJobs,
}

/// Starts the live task and the event bridge as tasks of `tasks`.
pub fn spawn(deps: LiveDeps, tasks: &mut Tasks) -> LiveHandle {
    let (tx, latest) = watch::channel(Arc::new(Published::default()));
    let (events, _) = broadcast::channel(256);
    let (counts_tx, counts_rx) = watch::channel(EventCounts::default());
    let changes = deps.membership.changes();
    let (client, stop) = (deps.client.clone(), tasks.token());
    let bridge = bridge(client, changes, events.clone(), counts_tx, stop);
    tasks.service("dashboard events", ok(bridge));
    let snapshots = snapshots(deps, tx, counts_rx, tasks.token());
    tasks.service("dashboard snapshots", ok(snapshots));
    LiveHandle { latest, events }
}

/// Rebuilds the snapshot every second until `shutdown`.
async fn snapshots(
    deps: LiveDeps,
    tx: watch::Sender<Arc<Published>>,
    counts: watch::Receiver<EventCounts>,
    shutdown: CancellationToken,
) {
    let mut history: VecDeque<Sample> = VecDeque::with_capacity(HISTORY);
    let mut stats = BTreeMap::new();
    let mut stats_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(view) = deps.membership.view().await else {
            return;
        };
        // The running jobs and the last ones that ended, from memory; while the index
        // loads, the last list stays (the members still refresh).
        let live = deps.jobs.borrow().clone();
        let jobs = if live.loaded {
            let running = live.jobs.values().cloned();
            running.chain(live.recent.iter().cloned()).collect()
        } else {
            tx.borrow().snapshot.jobs.clone()
        };
        if stats_at.is_none_or(|t| t.elapsed() >= STATS_PERIOD) {
            stats =
                bus_client::workers::node_stats(&deps.client, &view.members, STAT_TIMEOUT).await;
            stats_at = Some(Instant::now());
        }
        let counts = counts.borrow().clone();
        let at_ms = model::now_ms();
        let sample = model::sample(at_ms, &view, &jobs, counts.failures);
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(sample.clone());
        let snapshot = Snapshot {
            node: deps.id.clone(),
            coordinator: view.coordinator.clone(),
            at_ms,
            view_version: view.version,
            workers: model::workers(&view, &jobs, &stats),
            jobs,
            sample,
        };
        let json = serde_json::to_string(&snapshot).unwrap_or_default();
        let published = Published {
            snapshot,
            json,
            history: history.iter().cloned().collect(),
            counts,
        };
        tx.send_replace(Arc::new(published));
    }
}

/// Forwards membership and job events from the bus, and this node's view changes
/// (`member_state`), to the event streams, and counts the membership events.
async fn bridge(
    client: async_nats::Client,
    mut changes: broadcast::Receiver<MemberChange>,
    events: broadcast::Sender<BusEvent>,
    counts_tx: watch::Sender<EventCounts>,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    let what = "dashboard member events";
    let sub = idunno_cluster::subscribe::retrying(
        &client,
        subjects::member_events(),
        None,
        what,
        &shutdown,
    );
    let Some(mut members) = sub.await else { return };
    let what = "dashboard job events";
    let sub =
        idunno_cluster::subscribe::retrying(&client, subjects::job_events(), None, what, &shutdown);
    let Some(mut jobs) = sub.await else { return };
    let mut counts = EventCounts::default();
    let mut failed: BTreeSet<(String, u64)> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(msg) = members.next() => {
                let Ok(event) = decode::<MemberEvent>(&msg.payload) else { continue };
                counts.count(event.kind);
                if event.kind == MemberEventKind::Fail
                    && failed.insert((event.node.clone(), event.generation))
                {
                    counts.failures += 1;
                }
                counts_tx.send_replace(counts.clone());
                forward(&events, "member", &event);
            }
            Some(msg) = jobs.next() => {
                let Ok(event) = decode::<JobEvent>(&msg.payload) else { continue };
                forward(&events, "job", &event);
            }
            change = changes.recv() => match change {
                Ok(change) => forward(&events, "member_state", &change),
                // Missed ones reach the page with the next snapshot.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            else => return,
        }
    }
}

fn forward<T: serde::Serialize>(events: &broadcast::Sender<BusEvent>, name: &'static str, e: &T) {
    if let Ok(json) = serde_json::to_string(e) {
        // No receivers is fine: nobody has the page open.
        let _ = events.send((name, json.into()));
    }
}
