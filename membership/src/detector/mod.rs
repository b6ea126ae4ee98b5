//! SWIM-style failure detector as a sans-IO state machine.
//!
//! Fed ticks, failure-detector messages and member events (each with the current time),
//! it returns what to send. Each node probes one peer per period (round-robin over a shuffled
//! list), asks `indirect_probes` helpers to probe it when the direct ping gets no ack in
//! time, suspects it when the period ends without an ack, and declares it failed when the
//! suspicion is not refuted in time: `suspect_timeout_max` for one reporter, falling to
//! `suspect_timeout` as others confirm it (see [`suspicion`]). The cost per node per period
//! is constant.
//! While cut off from the bus, during a grace period after reconnecting and after the process
//! was paused, it declares nobody suspect or failed.

use super::view::{Member, View};
use bus_schemas::membership::{plausible, FdMessage, MemberEvent, MemberEventKind, MemberState};
use rand::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Timing of the detector.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// One probe per period.
    pub period: Duration,
    /// Time for a direct ack before indirect probes go out.
    pub ping_timeout: Duration,
    /// Helpers asked to probe indirectly.
    pub indirect_probes: usize,
    /// Time a suspect has to refute before the node that suspected it declares it failed,
    /// once `confirmations` other nodes confirmed the suspicion.
    pub suspect_timeout: Duration,
    /// The same for a suspicion nobody confirmed: a single node's failed probe is weak
    /// evidence on a slow or loaded bus.
    pub suspect_timeout_max: Duration,
    /// Confirmations by other nodes that bring the timeout down to `suspect_timeout`.
    pub confirmations: usize,
    /// Quiet time after (re)connecting or a pause: nobody is suspected or failed meanwhile.
    pub grace: Duration,
    /// A gap between ticks longer than this means the process was paused.
    pub pause_threshold: Duration,
    /// Minimum time between two view syncs triggered by digest mismatches.
    pub sync_interval: Duration,
    /// How long a peer's digests must have differed from this node's before a sync with it.
    pub sync_settle: Duration,
    /// How often a failed member (not yet forgotten) is asked for its view: a member cut off
    /// and healed answers again, and the two sides' views are reconciled.
    pub reclaim_interval: Duration,
    /// How far ahead of this node's wall clock a generation may be; further is refused.
    pub max_clock_skew: Duration,
    /// Failed and left members are forgotten this long after they failed or left.
    pub forget_after: Duration,
    /// The most members the view holds; new ids beyond it are refused. Also bounds the
    /// tombstones of forgotten members and the indirect probes relayed at a time.
    pub max_members: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_millis(200),
            ping_timeout: Duration::from_millis(80),
            indirect_probes: 3,
            suspect_timeout: Duration::from_millis(500),
            suspect_timeout_max: Duration::from_millis(2000),
            confirmations: 2,
            grace: Duration::from_secs(2),
            pause_threshold: Duration::from_millis(1000),
            sync_interval: Duration::from_secs(2),
            sync_settle: Duration::from_millis(400),
            reclaim_interval: Duration::from_secs(1),
            max_clock_skew: Duration::from_millis(plausible::DEFAULT_MAX_CLOCK_SKEW_MS),
            forget_after: Duration::from_secs(600),
            max_members: plausible::DEFAULT_MAX_MEMBERS,
        }
    }
}

impl DetectorConfig {
    /// Timing scaled to a protocol period (the default period is 200 ms).
    pub fn with_period(period: Duration) -> Self {
        let default = Self::default();
        let scale = |d: Duration| d.mul_f64(period.as_secs_f64() / default.period.as_secs_f64());
        Self {
            period,
            ping_timeout: scale(default.ping_timeout),
            suspect_timeout: scale(default.suspect_timeout),
            suspect_timeout_max: scale(default.suspect_timeout_max),
            ..default
        }
    }
}

/// The current time, monotonic and wall-clock (milliseconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time for timers.
    pub mono: Instant,
    /// Wall-clock time for generations and event timestamps.
    pub wall_ms: u64,
}

/// Something the detector wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a failure-detector message to one node.
    Send {
        /// The node.
        to: String,
        /// The message.
        msg: FdMessage,
    },
    /// Publish an event on the member events subject.
    Broadcast(MemberEvent),
    /// Views differ: fetch this peer's whole view and merge it.
    SyncWith(String),
    /// Fetch the view of any member (this node knows no peer yet).
    SyncAny,
    /// A message (or one record of a view) was refused; nothing changed. Count and log it.
    Refused(Refused),
}

#[derive(Debug)]
struct Probe {
    target: String,
    seq: u64,
    started: Instant,
    indirect_sent: bool,
}

#[derive(Debug)]
struct Relay {
    requester: String,
    requester_seq: u64,
    target: String,
    expires: Instant,
}

/// Counters kept by the detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Direct probes sent.
    pub probes_sent: u64,
    /// Members this node declared failed.
    pub failures_detected: u64,
    /// Failed and left members this node forgot.
    pub forgotten: u64,
}

/// The failure detector of one node.
pub struct Detector<R> {
    cfg: DetectorConfig,
    me: Member,
    active: bool,
    connected: bool,
    view: View,
    rng: R,
    order: Vec<String>,
    seq: u64,
    probe: Option<Probe>,
    next_probe: Instant,
    relays: HashMap<u64, Relay>,
    suspicions: HashMap<String, Suspicion>,
    quiet_until: Instant,
    last_tick: Instant,
    last_sync: Option<Instant>,
    next_reclaim: Instant,
    /// Since when each peer's digests have differed from this node's (at most `max_members`).
    mismatches: HashMap<String, Instant>,
    /// When ended members are next looked for to forget (a pass over the view, so not at
    /// every tick).
    next_forget: Instant,
    stats: DetectorStats,
}

impl<R: Rng> Detector<R> {
    /// A detector for node `id` on `host` (in `zone`), a member from `now` on, with a new
    /// generation.
    pub fn new(
        cfg: DetectorConfig,
        id: &str,
        host: &str,
        zone: Option<String>,
        http: Option<String>,
        rng: R,
        now: Now,
    ) -> Self {
        let me = Member {
            id: id.to_string(),
            generation: now.wall_ms,
            incarnation: 0,
            state: MemberState::Alive,
            host: host.to_string(),
            zone,
            http,
            started_ms: Some(now.wall_ms),
        };
        let mut view = View::new(id, cfg.max_members);
        view.apply(me.clone(), now.mono);
        Self {
            quiet_until: now.mono,
            cfg,
            me,
            active: true,
            connected: true,
            view,
            rng,
            order: Vec::new(),
            seq: 0,
            probe: None,
            next_probe: now.mono,
            relays: HashMap::new(),
            suspicions: HashMap::new(),
            last_tick: now.mono,
            last_sync: None,
            next_reclaim: now.mono,
            mismatches: HashMap::new(),
            next_forget: now.mono,
            stats: DetectorStats::default(),
        }
    }

    /// This node as the view holds it.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Whether this node is a member (false after `leave`).
    pub fn is_member(&self) -> bool {
        self.active
    }

    /// The whole view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Counters.
    pub fn stats(&self) -> DetectorStats {
        self.stats
    }

    /// The event announcing this node's current generation.
    pub fn join_event(&self, now: Now) -> MemberEvent {
        self.event(MemberEventKind::Join, &self.me.clone(), now)
    }

    fn event(&self, kind: MemberEventKind, m: &Member, now: Now) -> MemberEvent {
        MemberEvent {
            kind,
            node: m.id.clone(),
            generation: m.generation,
            incarnation: m.incarnation,
            host: m.host.clone(),
            zone: m.zone.clone(),
            http: m.http.clone(),
            started_ms: m.started_ms,
            reporter: self.me.id.clone(),
            at_ms: now.wall_ms,
        }
    }

    fn quiet(&self, now: Instant) -> bool {
        !self.connected || now < self.quiet_until
    }

    fn enter_grace(&mut self, now: Instant) {
        self.quiet_until = now + self.cfg.grace;
        self.probe = None;
        self.relays.clear();
        let deadline = self.quiet_until + self.cfg.suspect_timeout;
        for s in self.suspicions.values_mut() {
            s.hold_until(deadline);
        }
    }

    /// The bus connection was lost: declare nobody failed until it is back.
    pub fn disconnected(&mut self) {
        self.connected = false;
    }

    /// The bus connection is back: a grace period starts; returns a sync with a random peer
    /// and, while a member, an `alive` event at a higher incarnation, which refutes at once any
    /// suspicion raised while this node could not hear it.
    pub fn reconnected(&mut self, now: Now) -> Vec<Output> {
        self.connected = true;
        self.enter_grace(now.mono);
        let mut out = self.announce_alive(now);
        let peers = self.view.live_peers(&self.me.id);
        out.push(
            match peers.get(self.rng.random_range(0..peers.len().max(1))) {
                Some(peer) => Output::SyncWith(peer.clone()),
                None => Output::SyncAny,
            },
        );
        out
    }

    /// An `alive` event at a higher incarnation, if this node is a member.
    fn announce_alive(&mut self, now: Now) -> Vec<Output> {
        match self.active {
            true => self.refute(self.me.incarnation, now),
            false => Vec::new(),
        }
    }

    /// Leaves the cluster: stops probing and answering, announces `leave`.
    pub fn leave(&mut self, now: Now) -> Vec<Output> {
        if !self.active {
            return Vec::new();
        }
        self.active = false;
        self.probe = None;
        self.relays.clear();
        self.suspicions.clear();
        self.me.state = MemberState::Left;
        self.view.apply(self.me.clone(), now.mono);
        vec![Output::Broadcast(self.event(
            MemberEventKind::Leave,
            &self.me.clone(),
            now,
        ))]
    }

    /// Joins again with a new generation (after a leave, or after being declared failed):
    /// the later of the wall clock and the current generation + 1.
    pub fn rejoin(&mut self, now: Now) -> Vec<Output> {
        self.active = true;
        self.me.generation = now.wall_ms.max(self.me.generation.saturating_add(1));
        self.me.incarnation = 0;
        self.me.state = MemberState::Alive;
        self.view.apply(self.me.clone(), now.mono);
        self.enter_grace(now.mono);
        vec![Output::Broadcast(self.join_event(now))]
    }

    /// Advances timers: starts probes, sends indirect probes, raises suspicions, declares
    /// failures.
    pub fn tick(&mut self, now: Now) -> Vec<Output> {
        let gap = now.mono.saturating_duration_since(self.last_tick);
        self.last_tick = now.mono;
        let mut out = Vec::new();
        if gap > self.cfg.pause_threshold {
            self.enter_grace(now.mono);
            if self.connected {
                // Suspected while paused, perhaps: refute before anyone's suspicion runs out.
                out = self.announce_alive(now);
            }
        }
        if now.mono >= self.next_forget {
            let every = (self.cfg.forget_after / 10).min(Duration::from_secs(1));
            self.next_forget = now.mono + every;
            let forgotten = self.view.forget_ended(now.mono, self.cfg.forget_after);
            self.stats.forgotten = self.stats.forgotten.saturating_add(forgotten.len() as u64);
        }
        if !self.active || !self.connected {
            // Cut off, probes could not be answered, and queued pings would only pile up.
            return out;
        }
        self.relays.retain(|_, r| r.expires > now.mono);
        self.reclaim(now.mono, &mut out);
        self.expire_suspicions(now, &mut out);
        self.advance_probe(now, &mut out);
        if self.probe.is_none() && now.mono >= self.next_probe {
            self.start_probe(now.mono, &mut out);
        }
        out
    }
}

mod handle;
mod heal;
mod probe;
mod refused;
mod suspicion;

pub use refused::Refused;
use suspicion::Suspicion;
#[cfg(test)]
mod heal_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod suspicion_tests;
#[cfg(test)]
mod tests;
