//! A simulated cluster on injected time and seeded randomness, for the detector's tests.

use super::*;
use bus_schemas::membership::MemberEventKind;
use bus_schemas::membership::MemberRecord;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashMap, HashSet, VecDeque};

pub(super) const STEP: Duration = Duration::from_millis(10);

pub(super) struct Sim {
    pub(super) nodes: Vec<Detector<StdRng>>,
    pub(super) now: Now,
    pub(super) down: HashSet<usize>,
    /// Nodes cut off from the others: messages cross only between nodes on the same side.
    pub(super) cut: HashSet<usize>,
    pub(super) paused: HashSet<usize>,
    pub(super) held: Vec<(usize, Delivery)>,
    /// Slow links: whatever `from` sends `to` arrives this much later.
    pub(super) lag: HashMap<(usize, usize), Duration>,
    /// Deliveries on slow links, with when they arrive.
    late: Vec<(Instant, usize, Delivery)>,
    pub(super) loss: f64,
    pub(super) rng: StdRng,
    pub(super) events: Vec<MemberEvent>,
    pub(super) fd_sent: Vec<u64>,
    pub(super) refused: u64,
}

#[derive(Clone)]
pub(super) enum Delivery {
    Fd(FdMessage),
    Event(MemberEvent),
    View(String, Vec<MemberRecord>),
}

impl Sim {
    pub(super) fn new(n: usize, seed: u64) -> Sim {
        Sim::with_config(n, seed, DetectorConfig::default())
    }

    pub(super) fn with_config(n: usize, seed: u64, cfg: DetectorConfig) -> Sim {
        let start = Now {
            mono: Instant::now(),
            wall_ms: 1_000_000,
        };
        let mut sim = Sim {
            nodes: Vec::new(),
            now: start,
            down: HashSet::new(),
            cut: HashSet::new(),
            paused: HashSet::new(),
            held: Vec::new(),
            lag: HashMap::new(),
            late: Vec::new(),
            loss: 0.0,
            rng: StdRng::seed_from_u64(seed),
            events: Vec::new(),
            fd_sent: vec![0; n],
            refused: 0,
        };
        for i in 0..n {
            let rng = StdRng::seed_from_u64(seed * 1000 + i as u64);
            let d = Detector::new(cfg.clone(), &format!("n{i}"), "h", None, None, rng, start);
            let join = d.join_event(start);
            sim.nodes.push(d);
            // A starting node fetches the view, then announces itself.
            if i > 0 {
                let records = sim.nodes[0].view().records(start.mono);
                let out = sim.nodes[i].merge_records("n0", &records, start);
                sim.route(i, out);
            }
            sim.route(i, vec![Output::Broadcast(join)]);
        }
        sim
    }

    /// The node with this id; `None` for ids no simulated node has (forged members).
    pub(super) fn index(&self, id: &str) -> Option<usize> {
        let i: usize = id.strip_prefix('n')?.parse().ok()?;
        (i < self.nodes.len()).then_some(i)
    }

    pub(super) fn deliver(&mut self, to: usize, d: Delivery) -> Vec<Output> {
        if self.down.contains(&to) {
            return Vec::new();
        }
        if self.paused.contains(&to) {
            self.held.push((to, d));
            return Vec::new();
        }
        let now = self.now;
        match d {
            Delivery::Fd(msg) => {
                if self.rng.random::<f64>() < self.loss {
                    return Vec::new();
                }
                self.nodes[to].handle_fd(msg, now)
            }
            Delivery::Event(ev) => self.nodes[to].handle_event(&ev, now),
            Delivery::View(from, records) => self.nodes[to].merge_records(&from, &records, now),
        }
    }

    /// Whether `a` and `b` are on different sides of a cut.
    fn apart(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&a) != self.cut.contains(&b)
    }

    pub(super) fn route(&mut self, from: usize, out: Vec<Output>) {
        let mut queue: VecDeque<(usize, Output)> = out.into_iter().map(|o| (from, o)).collect();
        while let Some((src, o)) = queue.pop_front() {
            if self.down.contains(&src) {
                continue;
            }
            let results: Vec<(usize, Vec<Output>)> = match o {
                Output::Send { to, msg } => {
                    self.fd_sent[src] += 1;
                    let Some(to) = self.index(&to) else { continue };
                    if self.apart(src, to) {
                        continue;
                    }
                    vec![(to, self.send(src, to, Delivery::Fd(msg)))]
                }
                Output::Broadcast(ev) => {
                    self.events.push(ev.clone());
                    (0..self.nodes.len())
                        .filter(|i| !self.apart(src, *i))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|i| (i, self.send(src, i, Delivery::Event(ev.clone()))))
                        .collect()
                }
                Output::SyncAny => continue,
                Output::Refused(_) => {
                    self.refused += 1;
                    continue;
                }
                Output::SyncWith(peer) => {
                    let Some(peer) = self.index(&peer) else {
                        continue;
                    };
                    let away = self.down.contains(&peer) || self.paused.contains(&peer);
                    if away || self.apart(src, peer) {
                        continue;
                    }
                    let records = self.nodes[peer].view().records(self.now.mono);
                    let view = Delivery::View(format!("n{peer}"), records);
                    vec![(src, self.send(peer, src, view))]
                }
            };
            for (i, outs) in results {
                queue.extend(outs.into_iter().map(|o| (i, o)));
            }
        }
    }

    /// Delivers now, or later on a slow link.
    fn send(&mut self, from: usize, to: usize, d: Delivery) -> Vec<Output> {
        match self.lag.get(&(from, to)) {
            Some(lag) => {
                self.late.push((self.now.mono + *lag, to, d));
                Vec::new()
            }
            None => self.deliver(to, d),
        }
    }

    /// Publishes an event from outside the cluster (a forger): every node gets it.
    pub(super) fn inject(&mut self, ev: MemberEvent) {
        for i in 0..self.nodes.len() {
            let out = self.deliver(i, Delivery::Event(ev.clone()));
            self.route(i, out);
        }
    }

    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now.mono + d;
        while self.now.mono < end {
            self.now.mono += STEP;
            self.now.wall_ms += STEP.as_millis() as u64;
            let (due, late): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late)
                .into_iter()
                .partition(|(t, _, _)| *t <= self.now.mono);
            self.late = late;
            for (_, to, d) in due {
                let out = self.deliver(to, d);
                self.route(to, out);
            }
            for i in 0..self.nodes.len() {
                if self.down.contains(&i) || self.paused.contains(&i) {
                    continue;
                }
                let now = self.now;
                let out = self.nodes[i].tick(now);
                self.route(i, out);
            }
        }
    }

    /// Runs until every live node sees `target` in `state`; returns the time it took.
    pub(super) fn until_all_see(
        &mut self,
        target: usize,
        state: MemberState,
        limit: Duration,
    ) -> Duration {
        let start = self.now.mono;
        let id = format!("n{target}");
        loop {
            let done = (0..self.nodes.len())
                .filter(|i| *i != target && !self.down.contains(i))
                .all(|i| self.nodes[i].view().get(&id).map(|m| m.state) == Some(state));
            let took = self.now.mono - start;
            if done {
                return took;
            }
            assert!(
                took < limit,
                "n{target} not {state:?} everywhere after {took:?}"
            );
            self.run_for(STEP);
        }
    }

    pub(super) fn count(&self, kind: MemberEventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}
