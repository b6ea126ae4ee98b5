//! Simulated clusters on injected time and seeded randomness.

use super::*;
use bus_schemas::membership::MemberEventKind;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{HashSet, VecDeque};

const STEP: Duration = Duration::from_millis(10);

struct Sim {
    nodes: Vec<Detector<StdRng>>,
    now: Now,
    down: HashSet<usize>,
    paused: HashSet<usize>,
    held: Vec<(usize, Delivery)>,
    loss: f64,
    rng: StdRng,
    events: Vec<MemberEvent>,
    fd_sent: Vec<u64>,
}

#[derive(Clone)]
enum Delivery {
    Fd(FdMessage),
    Event(MemberEvent),
}

impl Sim {
    fn new(n: usize, seed: u64) -> Sim {
        let start = Now {
            mono: Instant::now(),
            wall_ms: 1_000_000,
        };
        let mut sim = Sim {
            nodes: Vec::new(),
            now: start,
            down: HashSet::new(),
            paused: HashSet::new(),
            held: Vec::new(),
            loss: 0.0,
            rng: StdRng::seed_from_u64(seed),
            events: Vec::new(),
            fd_sent: vec![0; n],
        };
        for i in 0..n {
            let rng = StdRng::seed_from_u64(seed * 1000 + i as u64);
            let d = Detector::new(
                DetectorConfig::default(),
                &format!("n{i}"),
                "h",
                None,
                rng,
                start,
            );
            let join = d.join_event(start);
            sim.nodes.push(d);
            // A starting node fetches the view, then announces itself.
            if i > 0 {
                let records = sim.nodes[0].view().records(start.mono);
                let out = sim.nodes[i].merge_records(&records, start);
                sim.route(i, out);
            }
            sim.route(i, vec![Output::Broadcast(join)]);
        }
        sim
    }

    fn index(&self, id: &str) -> usize {
        id[1..].parse().unwrap()
    }

    fn deliver(&mut self, to: usize, d: Delivery) -> Vec<Output> {
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
        }
    }

    fn route(&mut self, from: usize, out: Vec<Output>) {
        let mut queue: VecDeque<(usize, Output)> = out.into_iter().map(|o| (from, o)).collect();
        while let Some((src, o)) = queue.pop_front() {
            if self.down.contains(&src) {
                continue;
            }
            let results: Vec<(usize, Vec<Output>)> = match o {
                Output::Send { to, msg } => {
                    self.fd_sent[src] += 1;
                    let to = self.index(&to);
                    vec![(to, self.deliver(to, Delivery::Fd(msg)))]
                }
                Output::Broadcast(ev) => {
                    self.events.push(ev.clone());
                    (0..self.nodes.len())
                        .map(|i| (i, self.deliver(i, Delivery::Event(ev.clone()))))
                        .collect()
                }
                Output::SyncAny => continue,
                Output::SyncWith(peer) => {
                    let peer = self.index(&peer);
                    if self.down.contains(&peer) || self.paused.contains(&peer) {
                        continue;
                    }
                    let records = self.nodes[peer].view().records(self.now.mono);
                    let now = self.now;
                    vec![(src, self.nodes[src].merge_records(&records, now))]
                }
            };
            for (i, outs) in results {
                queue.extend(outs.into_iter().map(|o| (i, o)));
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now.mono + d;
        while self.now.mono < end {
            self.now.mono += STEP;
            self.now.wall_ms += STEP.as_millis() as u64;
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
    fn until_all_see(&mut self, target: usize, state: MemberState, limit: Duration) -> Duration {
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

    fn count(&self, kind: MemberEventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}

#[test]
fn a_healthy_cluster_stays_alive_and_agrees() {
    let mut sim = Sim::new(5, 1);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.count(MemberEventKind::Suspect), 0);
    let digest = sim.nodes[0].view().digest();
    for node in &sim.nodes {
        assert_eq!(node.view().digest(), digest);
        assert_eq!(
            node.view()
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .count(),
            5
        );
    }
}

#[test]
fn a_crashed_node_is_failed_everywhere_quickly() {
    let mut sim = Sim::new(5, 2);
    sim.run_for(Duration::from_secs(3));
    sim.down.insert(3);
    let took = sim.until_all_see(3, MemberState::Failed, Duration::from_secs(3));
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    assert_eq!(sim.count(MemberEventKind::Fail), 1);
}

#[test]
fn three_simultaneous_crashes_are_all_detected() {
    let mut sim = Sim::new(5, 3);
    sim.run_for(Duration::from_secs(3));
    sim.down.extend([1, 2, 4]);
    for dead in [1, 2, 4] {
        sim.until_all_see(dead, MemberState::Failed, Duration::from_secs(5));
    }
    assert_eq!(
        sim.nodes[0].view().get("n3").unwrap().state,
        MemberState::Alive
    );
}

#[test]
fn a_suspect_refutes_and_stays_alive() {
    let mut sim = Sim::new(5, 4);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let me = sim.nodes[2].me().clone();
    let suspect = sim.nodes[0].event(
        MemberEventKind::Suspect,
        &Member {
            state: MemberState::Suspect,
            ..me
        },
        now,
    );
    sim.route(0, vec![Output::Broadcast(suspect)]);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.count(MemberEventKind::Alive), 1);
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
    let seen = sim.nodes[4].view().get("n2").unwrap();
    assert_eq!((seen.state, seen.incarnation), (MemberState::Alive, 1));
}

#[test]
fn a_paused_node_is_failed_then_rejoins_and_blames_nobody() {
    let mut sim = Sim::new(5, 5);
    sim.run_for(Duration::from_secs(3));
    let old_generation = sim.nodes[1].me().generation;
    sim.paused.insert(1);
    sim.until_all_see(1, MemberState::Failed, Duration::from_secs(4));
    sim.run_for(Duration::from_secs(2));
    sim.paused.clear();
    for (to, d) in std::mem::take(&mut sim.held) {
        let out = sim.deliver(to, d);
        sim.route(to, out);
    }
    sim.until_all_see(1, MemberState::Alive, Duration::from_secs(3));
    assert!(sim.nodes[0].view().get("n1").unwrap().generation > old_generation);
    sim.run_for(Duration::from_secs(5));
    let blamed: Vec<_> = sim
        .events
        .iter()
        .filter(|e| e.kind == MemberEventKind::Fail)
        .collect();
    assert_eq!(blamed.len(), 1, "{blamed:?}");
    assert_eq!(blamed[0].node, "n1");
}

#[test]
fn a_disconnected_node_declares_nobody_failed() {
    let mut sim = Sim::new(5, 6);
    sim.run_for(Duration::from_secs(3));
    sim.nodes[0].disconnected();
    sim.down.insert(0);
    sim.until_all_see(0, MemberState::Failed, Duration::from_secs(3));
    // The cut-off node keeps ticking but neither probes nor declares anything.
    sim.down.remove(&0);
    for _ in 0..300 {
        let now = sim.now;
        let out = sim.nodes[0].tick(now);
        assert!(out.is_empty(), "a cut-off node sent {out:?}");
        sim.now.mono += STEP;
        sim.now.wall_ms += 10;
    }
    let now = sim.now;
    let out = sim.nodes[0].reconnected(now);
    sim.route(0, out);
    sim.until_all_see(0, MemberState::Alive, Duration::from_secs(3));
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.count(MemberEventKind::Fail), 1);
}

#[test]
fn three_percent_loss_gives_no_false_positives() {
    let mut sim = Sim::new(5, 7);
    sim.loss = 0.03;
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
}

#[test]
fn thirty_percent_loss_is_refuted_not_failed() {
    let mut sim = Sim::new(5, 8);
    sim.loss = 0.3;
    sim.run_for(Duration::from_secs(60));
    assert!(sim.count(MemberEventKind::Suspect) > 0);
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
}

#[test]
fn cost_per_node_does_not_grow_with_cluster_size() {
    let per_node = |n: usize| {
        let mut sim = Sim::new(n, 9);
        sim.fd_sent = vec![0; n];
        sim.run_for(Duration::from_secs(20));
        sim.fd_sent.iter().sum::<u64>() as f64 / n as f64
    };
    let (small, large) = (per_node(5), per_node(40));
    assert!(
        large < small * 1.2 && large > small * 0.8,
        "{small} vs {large}"
    );
}

#[test]
fn a_left_node_stops_probing_and_can_rejoin() {
    let mut sim = Sim::new(4, 10);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let out = sim.nodes[3].leave(now);
    sim.route(3, out);
    sim.until_all_see(3, MemberState::Left, Duration::from_millis(10));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
    let now = sim.now;
    let out = sim.nodes[3].rejoin(now);
    sim.route(3, out);
    sim.until_all_see(3, MemberState::Alive, Duration::from_millis(10));
}
