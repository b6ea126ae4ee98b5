//! The membership task: owns a [`Detector`] and drives it with the bus and the clock.

use super::detector::{Detector, DetectorConfig, Now, Output, Refused};
use super::handle::Command;
pub use super::handle::{Identity, MembershipHandle, Stopped};
use super::refusal_log::RefusalLog;
use async_nats::{Client, Message, Subscriber};
use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::membership::{
    FdMessage, MemberChange, MemberEvent, MemberRecord, ViewRequest, ViewSnapshot,
};
use bus_schemas::{decode, encode, subjects};
use futures::{FutureExt, StreamExt};
use idunno_metrics::{Metrics, Traffic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// At most one warning per this interval about refused membership messages; the rest are
/// counted (`membership_refused`) and summed up in the next warning.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The most queued failure-detector messages and member events handled before a tick: a
/// node that was slow to run reads the acks and refutations already delivered to it before
/// its timers judge anyone, yet a flood cannot hold its ticks back.
const DRAIN_BEFORE_TICK: usize = 256;

/// Member changes kept for a slow receiver of [`MembershipHandle::changes`].
const CHANGES_BUFFERED: usize = 256;

/// Settings of the membership service.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node's id.
    pub id: String,
    /// The host name reported to peers.
    pub host: String,
    /// The zone reported to peers, if any.
    pub zone: Option<String>,
    /// The dashboard address reported to peers.
    pub http: Option<String>,
    /// Detector timing.
    pub detector: DetectorConfig,
    /// Bound on every request to a peer.
    pub request_timeout: Duration,
    /// Who coordinates, reported in view snapshots.
    pub coordinator: Option<WhoCoordinates>,
}

/// Tells who coordinates now (a node id, or nobody): the jobs' lease, seen by membership
/// as a plain value.
#[derive(Clone)]
pub struct WhoCoordinates(pub Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl std::fmt::Debug for WhoCoordinates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WhoCoordinates({:?})", (self.0)())
    }
}

/// A change of the bus connection, fed from async-nats's event callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Connected (again).
    Up,
    /// Lost.
    Down,
}

fn now() -> Now {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        mono: Instant::now(),
        wall_ms,
    }
}

/// Starts the membership task: fetches the current view, announces this node, then probes.
/// On `shutdown` the node announces that it leaves and the task ends.
pub async fn spawn(
    client: Client,
    cfg: MembershipConfig,
    metrics: Arc<Metrics>,
    connection: mpsc::Receiver<Connection>,
    shutdown: CancellationToken,
) -> Result<(MembershipHandle, JoinHandle<()>), async_nats::SubscribeError> {
    let fd = client.subscribe(subjects::member_fd(&cfg.id)).await?;
    let events = client.subscribe(subjects::member_events()).await?;
    let rng = StdRng::from_os_rng();
    let detector = Detector::new(
        cfg.detector.clone(),
        &cfg.id,
        &cfg.host,
        cfg.zone.clone(),
        cfg.http.clone(),
        rng,
        now(),
    );
    let (tx, commands) = mpsc::channel(64);
    let (changes, _) = broadcast::channel(CHANGES_BUFFERED);
    let mut task = Task {
        client,
        cfg,
        metrics,
        detector,
        drop_rate: 0.0,
        loss_rng: StdRng::from_os_rng(),
        was_down: false,
        syncs: JoinSet::new(),
        refusals: RefusalLog::new(REFUSAL_LOG_EVERY),
        changes: changes.clone(),
        published: Published::default(),
    };
    task.initial_sync().await;
    let list = task
        .client
        .queue_subscribe(subjects::members_list(), subjects::MEMBERS_QUEUE.into())
        .await?;
    let join = task.detector.join_event(now());
    task.perform(vec![Output::Broadcast(join)]).await;
    let subs = Subs { fd, events, list };
    let handle = tokio::spawn(task.run(subs, commands, connection, shutdown));
    Ok((MembershipHandle { tx, changes }, handle))
}

struct Subs {
    fd: Subscriber,
    events: Subscriber,
    list: Subscriber,
}

struct Task {
    client: Client,
    cfg: MembershipConfig,
    metrics: Arc<Metrics>,
    detector: Detector<StdRng>,
    drop_rate: f64,
    loss_rng: StdRng,
    was_down: bool,
    syncs: JoinSet<Option<(String, Vec<MemberRecord>)>>,
    refusals: RefusalLog,
    changes: broadcast::Sender<MemberChange>,
    published: Published,
}

/// What the task last told of its view: the view's digest and version, and each member's
/// record as it was then.
#[derive(Default)]
struct Published {
    digest: u64,
    version: u64,
    records: HashMap<String, MemberRecord>,
}

impl Task {
    async fn run(
        mut self,
        mut subs: Subs,
        mut commands: mpsc::Receiver<Command>,
        mut connection: mpsc::Receiver<Connection>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.cfg.detector.period / 10);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let mut out = self.drain(&mut subs);
                    out.extend(self.on_tick());
                    out
                }
                Some(msg) = subs.fd.next() => self.on_fd(msg),
                Some(msg) = subs.events.next() => self.on_event(msg),
                Some(msg) = subs.list.next() => { self.on_list(msg).await; Vec::new() }
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(Ok(Some((from, records)))) = self.syncs.join_next() => {
                    self.detector.merge_records(&from, &records, now())
                }
                Some(change) = connection.recv() => self.on_connection(change),
            };
            self.perform(out).await;
            self.publish_changes();
        }
        let out = self.detector.leave(now());
        self.perform(out).await;
        if tokio::time::timeout(self.cfg.request_timeout, self.client.flush())
            .await
            .is_err()
        {
            tracing::warn!("could not flush the leave announcement in time");
        }
        self.syncs.shutdown().await;
    }

    /// Handles the failure-detector messages and member events already delivered, at most
    /// [`DRAIN_BEFORE_TICK`] of them.
    fn drain(&mut self, subs: &mut Subs) -> Vec<Output> {
        let mut out = Vec::new();
        let mut handled = 0;
        while handled < DRAIN_BEFORE_TICK {
            let before = handled;
            if let Some(Some(msg)) = subs.events.next().now_or_never() {
                out.extend(self.on_event(msg));
                handled += 1;
            }
            if let Some(Some(msg)) = subs.fd.next().now_or_never() {
                out.extend(self.on_fd(msg));
                handled += 1;
            }
            if handled == before {
                break;
            }
        }
        out
    }

    fn on_tick(&mut self) -> Vec<Output> {
        let now = now();
        if let Some(line) = self.refusals.flush(now.mono) {
            tracing::warn!("{line}");
        }
        self.detector.tick(now)
    }

    fn refused(&mut self, refused: Refused) {
        self.metrics.membership_refused();
        if let Some(line) = self.refusals.note(&refused, Instant::now()) {
            tracing::warn!("{line}");
        }
    }

    async fn initial_sync(&mut self) {
        let req = ViewRequest {
            from: self.cfg.id.clone(),
        };
        let subject = subjects::members_list();
        let timeout = self.cfg.request_timeout;
        match bus_client::request::<_, ViewSnapshot>(&self.client, subject, &req, timeout).await {
            Ok(view) => {
                let out = self
                    .detector
                    .merge_records(&view.node, &view.members, now());
                tracing::info!(from = %view.node, members = view.members.len(), "fetched the view");
                self.perform(out).await;
            }
            Err(e) => tracing::info!("no view fetched ({e}); starting a new cluster view"),
        }
    }

    fn on_fd(&mut self, msg: Message) -> Vec<Output> {
        self.metrics
            .received(Traffic::Membership, msg.payload.len());
        if self.drop_rate > 0.0 && self.loss_rng.random::<f64>() < self.drop_rate {
            self.metrics.fd_dropped();
            return Vec::new();
        }
        match decode::<FdMessage>(&msg.payload) {
            Ok(fd) => self.detector.handle_fd(fd, now()),
            Err(e) => self.garbage(&msg.subject, e),
        }
    }

    fn on_event(&mut self, msg: Message) -> Vec<Output> {
        self.metrics
            .received(Traffic::Membership, msg.payload.len());
        match decode::<MemberEvent>(&msg.payload) {
            Ok(ev) => {
                let out = self.detector.handle_event(&ev, now());
                let refused = matches!(out.as_slice(), [Output::Refused(_)]);
                if ev.reporter != self.cfg.id && !refused {
                    tracing::info!(kind = ?ev.kind, node = %ev.node, generation = ev.generation, reporter = %ev.reporter, "member event");
                }
                out
            }
            Err(e) => self.garbage(&msg.subject, e),
        }
    }

    fn garbage(&self, subject: &str, e: bus_schemas::DecodeError) -> Vec<Output> {
        self.metrics.garbage();
        tracing::warn!(%subject, "dropped a malformed payload: {e}");
        Vec::new()
    }

    async fn on_list(&mut self, msg: Message) {
        self.metrics
            .received(Traffic::Membership, msg.payload.len());
        if let Err(e) = decode::<ViewRequest>(&msg.payload) {
            self.garbage(&msg.subject, e);
            return;
        }
        let Some(reply) = msg.reply else { return };
        let snapshot = self.snapshot();
        self.reply(reply, &snapshot).await;
    }

    async fn reply<M: bus_schemas::Message>(&self, to: async_nats::Subject, msg: &M) {
        match encode(msg) {
            Ok(bytes) => {
                self.metrics.sent(Traffic::Membership, bytes.len());
                if let Err(e) = self.client.publish(to, bytes.into()).await {
                    tracing::warn!("could not reply: {e}");
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
    }

    fn snapshot(&self) -> ViewSnapshot {
        ViewSnapshot {
            node: self.cfg.id.clone(),
            coordinator: self.cfg.coordinator.as_ref().and_then(|c| (c.0)()),
            members: self.detector.view().records(Instant::now()),
            version: self.published.version,
        }
    }

    /// When the view changed (its digest did), raises its version and tells each member
    /// whose record changed to [`MembershipHandle::changes`].
    fn publish_changes(&mut self) {
        let digest = self.detector.view().digest();
        if digest == self.published.digest {
            return;
        }
        self.published.digest = digest;
        self.published.version += 1;
        let records = self.detector.view().records(Instant::now());
        let known = &mut self.published.records;
        known.retain(|id, _| records.iter().any(|r| r.id == *id));
        for member in records {
            let same = known.get(&member.id).is_some_and(|k| {
                (k.generation, k.incarnation, k.state)
                    == (member.generation, member.incarnation, member.state)
            });
            if !same {
                known.insert(member.id.clone(), member.clone());
                let version = self.published.version;
                let _ = self.changes.send(MemberChange { version, member });
            }
        }
    }

    fn on_command(&mut self, cmd: Command) -> Vec<Output> {
        match cmd {
            Command::View(tx) => {
                let _ = tx.send(self.snapshot());
                Vec::new()
            }
            Command::Identity(tx) => {
                let me = self.detector.me();
                let _ = tx.send(Identity {
                    generation: me.generation,
                    incarnation: me.incarnation,
                    member: self.detector.is_member(),
                    stats: self.detector.stats(),
                    drop_rate: self.drop_rate,
                });
                Vec::new()
            }
            Command::Leave(tx) => {
                let was_member = self.detector.is_member();
                let _ = tx.send(was_member);
                self.detector.leave(now())
            }
            Command::Join(tx) => {
                let was_member = self.detector.is_member();
                let _ = tx.send(!was_member);
                if was_member {
                    return Vec::new();
                }
                self.detector.rejoin(now())
            }
            Command::DropRate(rate) => {
                self.drop_rate = rate;
                Vec::new()
            }
        }
    }

    fn on_connection(&mut self, change: Connection) -> Vec<Output> {
        tracing::info!(?change, "bus connection changed");
        match change {
            Connection::Down => {
                self.was_down = true;
                self.detector.disconnected();
                Vec::new()
            }
            // The first connection needs no grace: this node has no stale view yet.
            Connection::Up if !self.was_down => Vec::new(),
            Connection::Up => self.detector.reconnected(now()),
        }
    }

    async fn perform(&mut self, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Send { to, msg } => self.publish(subjects::member_fd(&to), &msg).await,
                Output::Broadcast(ev) => {
                    tracing::info!(kind = ?ev.kind, node = %ev.node, generation = ev.generation, "announcing");
                    self.publish(subjects::member_events(), &ev).await
                }
                Output::SyncWith(peer) => self.start_sync(Some(peer)),
                Output::SyncAny => self.start_sync(None),
                Output::Refused(refused) => self.refused(refused),
            }
        }
    }

    async fn publish<M: bus_schemas::Message>(&self, subject: String, msg: &M) {
        match bus_client::publish(&self.client, subject, msg).await {
            Ok(len) => self.metrics.sent(Traffic::Membership, len),
            Err(e) => tracing::debug!("publish failed: {e}"),
        }
    }

    /// Fetches a peer's view (or any member's) in the background; the answer comes back
    /// through `syncs`.
    fn start_sync(&mut self, peer: Option<String>) {
        if self.syncs.len() >= 2 {
            return;
        }
        let client = self.client.clone();
        let metrics = self.metrics.clone();
        let timeout = self.cfg.request_timeout;
        let from = self.cfg.id.clone();
        self.syncs.spawn(async move {
            metrics.sent(Traffic::Membership, 0);
            let members = match peer {
                Some(peer) => {
                    let req = ControlRequest::Members;
                    let subject = subjects::node_control(&peer, req.op());
                    match bus_client::request(&client, subject, &req, timeout).await {
                        Ok(ControlReply::Members { node, members, .. }) => Ok((node, members)),
                        Ok(_) => return None,
                        Err(e) => Err(e),
                    }
                }
                None => {
                    let req = ViewRequest { from };
                    bus_client::request::<_, ViewSnapshot>(
                        &client,
                        subjects::members_list(),
                        &req,
                        timeout,
                    )
                    .await
                    .map(|v| (v.node, v.members))
                }
            };
            match members {
                Ok(view) => {
                    metrics.received(Traffic::Membership, 0);
                    Some(view)
                }
                Err(e) => {
                    tracing::debug!("view sync failed: {e}");
                    None
                }
            }
        });
    }
}
