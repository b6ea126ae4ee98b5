//! Seeded simulations of a group: messages delivered late and out of order, group changes
//! seen by each member at its own time, members lost mid-step and joining. Each member's
//! "trainer" adds the step's sum to its state; the sum of a step is exact (each value comes
//! from one rank), so any step lost or applied twice changes the final state.

use super::*;
use crate::digest;
use bus_schemas::dp::{DpMessage, PartKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const LEN: usize = 40;

/// The step's whole update for a state: depends on the state, so a wrong state shows.
fn update(state: &[f32], step: u64) -> Vec<f32> {
    (0..LEN)
        .map(|i| ((step as usize + 1) * (i + 1) % 97) as f32 + (state[i] as u64 % 5) as f32)
        .collect()
}

/// Rank `rank` of `n`'s share: the values whose index it owns, zero elsewhere.
fn share(state: &[f32], step: u64, rank: usize, n: usize) -> Vec<f32> {
    let mut v = update(state, step);
    for (i, x) in v.iter_mut().enumerate() {
        if i % n != rank {
            *x = 0.0;
        }
    }
    v
}

fn reference(total: u64) -> Vec<f32> {
    let mut state = vec![0.0f32; LEN];
    for s in 0..total {
        let u = update(&state, s);
        for (x, d) in state.iter_mut().zip(u) {
            *x += d;
        }
    }
    state
}

struct Node {
    ex: Exchange,
    state: Vec<f32>,
    applied: u64,
    plan: Option<(u32, usize, usize)>,
    alive: bool,
    stalls: Vec<Vec<String>>,
}

/// Events: (time in ms, sequence, to, input).
struct Sim {
    rng: StdRng,
    now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), (String, In)>,
    nodes: BTreeMap<String, Node>,
    total: u64,
    base: Instant,
    /// States adopted (a member behind took the source's).
    adopts: u64,
}

impl Sim {
    fn new(seed: u64, names: &[&str], total: u64) -> Sim {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now_ms: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: BTreeMap::new(),
            total,
            base: Instant::now(),
            adopts: 0,
        };
        for n in names {
            sim.add(n);
        }
        sim
    }

    fn add(&mut self, name: &str) {
        let cfg = Config {
            part_values: 7,
            stall_after: Duration::from_secs(5),
            hello_every: Duration::from_millis(300),
        };
        let node = Node {
            ex: Exchange::new(name, LEN, cfg),
            state: vec![0.0; LEN],
            applied: 0,
            plan: None,
            alive: true,
            stalls: Vec::new(),
        };
        self.nodes.insert(name.to_string(), node);
    }

    fn at(&mut self, delay_ms: u64, to: &str, input: In) {
        self.seq += 1;
        self.queue
            .insert((self.now_ms + delay_ms, self.seq), (to.to_string(), input));
    }

    /// The group change as each member sees it: at its own time.
    fn group(&mut self, generation: u32, members: &[&str], after_ms: u64) {
        let members: Vec<String> = members.iter().map(|s| s.to_string()).collect();
        for n in self.nodes.keys().cloned().collect::<Vec<_>>() {
            let d = after_ms + self.rng.random_range(0..40);
            let input = In::Group {
                generation,
                members: members.clone(),
            };
            self.at(d, &n, input);
        }
    }

    fn run_until(&mut self, until_ms: u64) {
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > until_ms {
                break;
            }
            let (to, input) = self.queue.remove(&(t, s)).expect("just seen");
            self.now_ms = t;
            let now = self.base + Duration::from_millis(t);
            let Some(node) = self.nodes.get_mut(&to) else {
                continue;
            };
            if !node.alive {
                continue;
            }
            let mut outs = node.ex.handle(now, input);
            if t % 50 == 0 {
                outs.extend(node.ex.tick(now));
            }
            self.carry_out(&to, outs);
        }
        // Ticks for everyone at the end of the stretch.
        self.now_ms = until_ms;
        let now = self.base + Duration::from_millis(until_ms);
        for name in self.nodes.keys().cloned().collect::<Vec<_>>() {
            let node = self.nodes.get_mut(&name).expect("a node");
            if node.alive {
                let outs = node.ex.tick(now);
                self.carry_out(&name, outs);
            }
        }
    }

    fn run(&mut self, until_ms: u64) {
        let mut t = self.now_ms;
        while t < until_ms {
            t += 100;
            self.run_until(t);
        }
    }

    fn carry_out(&mut self, from: &str, outs: Vec<Out>) {
        for out in outs {
            self.carry(from, out);
        }
    }

    fn carry(&mut self, from: &str, out: Out) {
        let total = self.total;
        match out {
            Out::Publish(m) => {
                for to in self.nodes.keys().cloned().collect::<Vec<_>>() {
                    let d = self.rng.random_range(1..30);
                    self.at(d, &to, In::Message(m.clone()));
                    if self.rng.random_bool(0.05) {
                        self.at(d + 5, &to, In::Message(m.clone())); // a duplicate
                    }
                }
            }
            Out::Regroup { generation } => {
                let node = &self.nodes[from];
                let snap = Snapshot {
                    generation,
                    applied: node.applied,
                    digest: digest(&node.state),
                    state: Arc::new(node.state.clone()),
                };
                let d = self.rng.random_range(0..80);
                self.at(d, from, In::Snapshot(snap));
            }
            Out::Adopt { applied, state, .. } => {
                self.adopts += 1;
                let node = self.nodes.get_mut(from).expect("a node");
                node.state = state.as_ref().clone();
                node.applied = applied;
            }
            Out::Go {
                generation,
                rank,
                workers,
                step,
            } => {
                let node = self.nodes.get_mut(from).expect("a node");
                assert_eq!(step, node.applied, "{from} goes on from its own step");
                node.plan = Some((generation, rank, workers));
                self.contribute(from, total);
            }
            Out::Reduced { step, sum, .. } => {
                let node = self.nodes.get_mut(from).expect("a node");
                assert_eq!(step, node.applied, "{from}: the sum of the step it is at");
                for (x, d) in node.state.iter_mut().zip(sum) {
                    *x += d;
                }
                node.applied += 1;
                self.contribute(from, total);
            }
            Out::Stalled { missing, .. } => {
                let node = self.nodes.get_mut(from).expect("a node");
                node.stalls.push(missing);
            }
            Out::Left => self.nodes.get_mut(from).expect("a node").plan = None,
        }
    }

    fn contribute(&mut self, from: &str, total: u64) {
        let node = &self.nodes[from];
        let Some((generation, rank, n)) = node.plan else {
            return;
        };
        if node.applied >= total {
            return;
        }
        let values = share(&node.state, node.applied, rank, n);
        let input = In::Contribution {
            generation,
            step: node.applied,
            values,
        };
        let d = self.rng.random_range(5..60);
        self.at(d, from, input);
    }

    fn assert_done(&self, names: &[&str]) {
        let want = reference(self.total);
        for n in names {
            let node = &self.nodes[*n];
            assert_eq!(node.applied, self.total, "{n} applied every step");
            assert_eq!(node.state, want, "{n}: no step lost or applied twice");
        }
    }
}

#[test]
fn three_members_apply_every_step_once_and_alike() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, &["a", "b", "c"], 60);
        sim.group(1, &["a", "b", "c"], 0);
        sim.run(60_000);
        sim.assert_done(&["a", "b", "c"]);
    }
}

#[test]
fn a_member_lost_mid_step_leaves_no_step_lost_or_doubled() {
    let mut adopts = 0;
    for seed in 0..40 {
        let mut sim = Sim::new(seed, &["a", "b", "c"], 80);
        sim.group(1, &["a", "b", "c"], 0);
        let lose_at = 300 + seed * 37;
        sim.run(lose_at);
        let lost = ["a", "b", "c"][seed as usize % 3];
        sim.nodes.get_mut(lost).expect("a node").alive = false;
        let rest: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != lost).collect();
        // Seen soon (while the lost member's last parts are still on their way) or late.
        let seen_after = [0, 5, 15, 40, 500][seed as usize % 5];
        sim.group(2, &rest, seen_after);
        sim.run(lose_at + 60_000);
        sim.assert_done(&rest);
        adopts += sim.adopts;
    }
    // Some losses came while one survivor had applied a step the other had not.
    assert!(adopts > 0);
}

#[test]
fn a_member_that_joins_adopts_the_state_and_helps() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, &["a", "b"], 70);
        sim.group(1, &["a", "b"], 0);
        sim.run(400 + seed * 20);
        sim.add("c");
        sim.group(2, &["a", "b", "c"], 0);
        sim.run(60_000);
        sim.assert_done(&["a", "b", "c"]);
        assert!(sim.adopts >= 1, "the joiner adopted the state");
    }
}

#[test]
fn a_silent_member_is_reported_stalled() {
    let mut sim = Sim::new(7, &["a", "b", "c"], 1000);
    sim.group(1, &["a", "b", "c"], 0);
    sim.run(500);
    // c freezes: still a member, says nothing.
    sim.nodes.get_mut("c").expect("a node").alive = false;
    sim.run(8_000);
    for n in ["a", "b"] {
        let stalls = &sim.nodes[n].stalls;
        assert!(
            stalls.iter().any(|m| m == &vec!["c".to_string()]),
            "{n}: {stalls:?}"
        );
    }
    // Dropping it lets the others go on to the end.
    sim.group(2, &["a", "b"], 0);
    sim.run(200_000);
    sim.assert_done(&["a", "b"]);
}

#[test]
fn hostile_or_stale_messages_change_nothing() {
    let mut sim = Sim::new(3, &["a", "b"], 40);
    sim.group(1, &["a", "b"], 0);
    let mut rng = StdRng::seed_from_u64(99);
    for i in 0..400u64 {
        // Another worker's, or a member's of a past generation or of another length.
        let worker = ["a", "b", "x"][i as usize % 3].to_string();
        let stale = worker != "x" && rng.random_bool(0.5);
        let part = Part {
            kind: if rng.random_bool(0.5) {
                PartKind::Grad
            } else {
                PartKind::State
            },
            generation: if stale { 0 } else { rng.random_range(0..3) },
            step: rng.random_range(0..50),
            index: rng.random_range(0..9),
            count: rng.random_range(0..9),
            len: match (worker.as_str(), stale) {
                ("x", _) | (_, true) => rng.random_range(0..100),
                _ => LEN as u64 + rng.random_range(1..60),
            },
            worker,
            data: serde_bytes::ByteBuf::from(vec![0xff; rng.random_range(0..64)]),
        };
        let to = ["a", "b"][i as usize % 2];
        sim.at(i * 3, to, In::Message(DpMessage::Part(part)));
        let hello = Hello {
            generation: rng.random_range(0..3),
            worker: "x".into(),
            applied: 999,
            digest: 1,
            needs_state: true,
        };
        sim.at(i * 3 + 1, to, In::Message(DpMessage::Hello(hello)));
    }
    sim.run(100_000);
    sim.assert_done(&["a", "b"]);
    assert!(sim.nodes["a"].ex.dropped() > 0);
}
