//! The failure detector at scale, deterministic: 10, 100 and 1,000 sans-IO detectors on a
//! simulated network that loses 1% of messages (failure-detector messages and member events
//! alike) and delays each by 1 ms plus up to 20 ms of jitter. Per size: messages per node per
//! second in a quiet minute (flat from 10 to 1,000 nodes: each node probes one peer per period),
//! the time from a `kill -9` to every live node holding the victim as failed (p50, p99), and
//! false positives (live nodes declared failed: none).
//! `cargo test --release -p idunno-membership --test scale -- --nocapture` prints the figures.

use bus_schemas::membership::{FdMessage, MemberEvent, MemberEventKind, MemberState};
use idunno_membership::detector::{Detector, DetectorConfig, Now, Output};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

/// How often each node's timers run (the service ticks ten times per period).
const TICK: Duration = Duration::from_millis(20);
const LOSS: f64 = 0.01;
const LATENCY: Duration = Duration::from_millis(1);
const JITTER_MS: f64 = 20.0;

enum Delivery {
    Fd(FdMessage),
    Event(MemberEvent),
    /// A view sync's answer: the peer's records, merged by the asker.
    Sync(usize),
}

struct Net {
    nodes: Vec<Detector<StdRng>>,
    down: Vec<bool>,
    now: Now,
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    queued: BTreeMap<u64, (usize, usize, Delivery)>,
    seq: u64,
    rng: StdRng,
    /// Messages each node sent and received (failure-detector messages, events, syncs).
    messages: Vec<u64>,
    /// `(target, generation)` of every fail event, and suspicions raised.
    fails: Vec<String>,
    suspicions: u64,
    /// Whole views fetched.
    syncs: u64,
}

impl Net {
    fn new(n: usize, seed: u64) -> Net {
        let now = Now {
            mono: Instant::now(),
            wall_ms: 1_000_000,
        };
        let mut net = Net {
            nodes: Vec::new(),
            down: vec![false; n],
            now,
            due: BinaryHeap::new(),
            queued: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            messages: vec![0; n],
            fails: Vec::new(),
            suspicions: 0,
            syncs: 0,
        };
        let cfg = DetectorConfig {
            max_members: n.max(16) + 16,
            ..DetectorConfig::default()
        };
        for i in 0..n {
            let rng = StdRng::seed_from_u64(seed * 10_000 + i as u64);
            let d = Detector::new(cfg.clone(), &id(i), "h", None, None, rng, now);
            net.nodes.push(d);
        }
        // Every node starts knowing the others, as after the join of a settled cluster.
        let records: Vec<_> = (0..n)
            .flat_map(|i| net.nodes[i].view().records(now.mono))
            .filter(|r| r.state == MemberState::Alive)
            .collect();
        for i in 0..n {
            let out = net.nodes[i].merge_records(&id(0), &records, now);
            net.route(i, out);
        }
        net
    }

    fn latency(&mut self) -> Duration {
        LATENCY + Duration::from_secs_f64(self.rng.random::<f64>() * JITTER_MS / 1000.0)
    }

    fn send(&mut self, from: usize, to: usize, d: Delivery) {
        self.messages[from] += 1;
        if self.rng.random::<f64>() < LOSS {
            return;
        }
        let at = self.now.mono + self.latency();
        self.seq += 1;
        self.queued.insert(self.seq, (from, to, d));
        self.due.push(Reverse((at, self.seq)));
    }

    fn route(&mut self, from: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send { to, msg } => {
                    if let Some(to) = index(&to, self.nodes.len()) {
                        self.send(from, to, Delivery::Fd(msg));
                    }
                }
                Output::Broadcast(ev) => {
                    match ev.kind {
                        MemberEventKind::Fail => self.fails.push(ev.node.clone()),
                        MemberEventKind::Suspect => self.suspicions += 1,
                        _ => {}
                    }
                    // One publish; the bus delivers it to every node (each may lose it).
                    for to in 0..self.nodes.len() {
                        if self.rng.random::<f64>() >= LOSS {
                            let at = self.now.mono + self.latency();
                            self.seq += 1;
                            let d = Delivery::Event(ev.clone());
                            self.queued.insert(self.seq, (from, to, d));
                            self.due.push(Reverse((at, self.seq)));
                        }
                    }
                    self.messages[from] += 1;
                }
                Output::SyncWith(peer) => {
                    let Some(peer) = index(&peer, self.nodes.len()) else {
                        continue;
                    };
                    // A request to the peer (a dead one never answers: members ask failed
                    // ones every second, to heal partitions), and its answer back.
                    self.messages[from] += 1;
                    if !self.down[peer] {
                        self.messages[peer] += 1;
                        self.syncs += 1;
                        self.send(peer, from, Delivery::Sync(peer));
                    }
                }
                Output::SyncAny | Output::Refused(_) => {}
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, d: Delivery) {
        if self.down[to] || (matches!(d, Delivery::Sync(_)) && self.down[from]) {
            return;
        }
        self.messages[to] += 1;
        let now = self.now;
        let out = match d {
            Delivery::Fd(msg) => self.nodes[to].handle_fd(msg, now),
            Delivery::Event(ev) => self.nodes[to].handle_event(&ev, now),
            Delivery::Sync(peer) => {
                let records = self.nodes[peer].view().records(now.mono);
                self.nodes[to].merge_records(&id(peer), &records, now)
            }
        };
        self.route(to, out);
    }

    /// Runs one tick: messages due before it, then every live node's timers.
    fn step(&mut self) {
        let end = self.now.mono + TICK;
        while let Some(Reverse((at, seq))) = self.due.peek().copied() {
            if at > end {
                break;
            }
            self.due.pop();
            let Some((from, to, d)) = self.queued.remove(&seq) else {
                continue;
            };
            self.now.wall_ms += at.saturating_duration_since(self.now.mono).as_millis() as u64;
            self.now.mono = self.now.mono.max(at);
            self.deliver(from, to, d);
        }
        self.now.wall_ms += end.saturating_duration_since(self.now.mono).as_millis() as u64;
        self.now.mono = end;
        for i in 0..self.nodes.len() {
            if !self.down[i] {
                let now = self.now;
                let out = self.nodes[i].tick(now);
                self.route(i, out);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now.mono + d;
        while self.now.mono < end {
            self.step();
        }
    }

    /// Whether every live node holds node `v` as failed.
    fn failed_everywhere(&self, v: usize) -> bool {
        let id = id(v);
        (0..self.nodes.len()).filter(|i| !self.down[*i]).all(|i| {
            self.nodes[i]
                .view()
                .get(&id)
                .is_none_or(|m| m.state == MemberState::Failed)
        })
    }
}

fn id(i: usize) -> String {
    format!("n{i:04}")
}

fn index(id: &str, n: usize) -> Option<usize> {
    let i: usize = id.strip_prefix('n')?.parse().ok()?;
    (i < n).then_some(i)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// One size: quiet messages per node per second, detection times of `kills` kills, false
/// positives.
struct Figures {
    per_node_per_sec: f64,
    detections: Vec<Duration>,
    false_positives: usize,
    suspicions: u64,
    /// Whole views fetched per node per second: in the quiet window, and while nodes die.
    quiet_syncs: f64,
    syncs: f64,
}

fn measure(n: usize, kills: usize, seed: u64) -> Figures {
    let mut net = Net::new(n, seed);
    net.run_for(Duration::from_secs(5)); // the start-up grace, views settled
    let (before, syncs) = (net.messages.iter().sum::<u64>(), net.syncs);
    let quiet = Duration::from_secs(10);
    net.run_for(quiet);
    let sent: u64 = net.messages.iter().sum::<u64>() - before;
    let per_node_per_sec = sent as f64 / n as f64 / quiet.as_secs_f64();
    let quiet_syncs = (net.syncs - syncs) as f64 / n as f64 / quiet.as_secs_f64();
    let (syncs, dying) = (net.syncs, net.now.mono);
    let mut detections = Vec::new();
    let mut killed = Vec::new();
    for k in 0..kills {
        let v = 1 + (k * 7919) % (n - 1);
        if net.down[v] {
            continue;
        }
        net.down[v] = true;
        killed.push(id(v));
        let began = net.now.mono;
        while !net.failed_everywhere(v) {
            assert!(
                net.now.mono - began < Duration::from_secs(10),
                "{} not detected",
                id(v)
            );
            net.step();
        }
        detections.push(net.now.mono - began);
        net.run_for(Duration::from_millis(500));
    }
    net.run_for(Duration::from_secs(5));
    let took = (net.now.mono - dying).as_secs_f64();
    let syncs = (net.syncs - syncs) as f64 / n as f64 / took;
    let false_positives = net.fails.iter().filter(|f| !killed.contains(f)).count();
    detections.sort();
    Figures {
        per_node_per_sec,
        detections,
        false_positives,
        suspicions: net.suspicions,
        quiet_syncs,
        syncs,
    }
}

#[test]
fn a_thousand_detectors_at_one_percent_loss_flat_messages_fast_detection_no_false_positive() {
    let mut rates = Vec::new();
    let mut all = Vec::new();
    for (n, kills) in [(10, 4), (100, 20), (1000, 30)] {
        let began = Instant::now();
        let f = measure(n, kills, 42 + n as u64);
        println!(
            "detector simulation, {n} nodes, {:.0}% loss, {}+{JITTER_MS:.0} ms latency: {:.1} \
             messages per node per second; {} kills detected everywhere in p50 {:?}, p99 {:?}, \
             max {:?}; {} false positives ({} suspicions raised and refuted); whole views \
             fetched per node per second {:.3} quiet, {:.3} while nodes die; {:.1} s to run",
            LOSS * 100.0,
            LATENCY.as_millis(),
            f.per_node_per_sec,
            f.detections.len(),
            percentile(&f.detections, 0.5),
            percentile(&f.detections, 0.99),
            f.detections.last().copied().unwrap_or_default(),
            f.false_positives,
            f.suspicions,
            f.quiet_syncs,
            f.syncs,
            began.elapsed().as_secs_f64(),
        );
        assert_eq!(f.false_positives, 0, "{n} nodes");
        rates.push(f.per_node_per_sec);
        all.extend(f.detections);
    }
    all.sort();
    let p99 = percentile(&all, 0.99);
    println!(
        "detection over every size: p99 {p99:?} of {} kills",
        all.len()
    );
    assert!(p99 < Duration::from_secs(3), "p99 {p99:?}");
    let (low, high) = (rates[0], rates[2]);
    assert!(
        high < 1.5 * low,
        "messages per node per second grew from {low:.1} to {high:.1}"
    );
}
