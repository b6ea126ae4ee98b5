//! The sync phase of a generation: hellos, the choice of the source, the state it gives.

use super::{Config, Out, Snapshot};
use crate::assembler::Assembler;
use crate::digest;
use bus_schemas::dp::{parts, DpMessage, Hello, Part, PartKind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// Contributions to the first step kept while this member still syncs: parts of at most
/// this many (members × parts per contribution).
const MAX_EARLY: usize = 4096;

/// What every member decided alike once all hellos were in.
#[derive(Debug, Clone)]
struct Decision {
    source: String,
    applied: u64,
    digest: u64,
    /// This member holds another state and adopts the source's.
    adopt: bool,
    /// This member is the source and another member adopts its state.
    give: bool,
}

/// What the steps phase starts from.
#[derive(Debug)]
pub(super) struct Ready {
    pub rank: usize,
    pub step: u64,
    pub hello: Hello,
    pub given: Option<Arc<Vec<f32>>>,
}

/// A generation being synced.
#[derive(Debug)]
pub(super) struct Sync {
    me: String,
    pub generation: u32,
    pub members: Vec<String>,
    /// Since when this member waits for what it lacks (hellos, then the state).
    waiting: Instant,
    reported: Option<Instant>,
    mine: Option<Snapshot>,
    hellos: BTreeMap<String, Hello>,
    answered: BTreeSet<String>,
    hello_at: Option<Instant>,
    state_at: Option<Instant>,
    decision: Option<Decision>,
    incoming: Option<Assembler>,
    adopted: bool,
    /// Contributions to the first step that came before this member went on.
    pub early: Vec<Part>,
}

impl Sync {
    pub fn new(me: &str, generation: u32, members: Vec<String>, now: Instant) -> Sync {
        Sync {
            me: me.to_string(),
            generation,
            members,
            waiting: now,
            reported: None,
            mine: None,
            hellos: BTreeMap::new(),
            answered: BTreeSet::new(),
            hello_at: None,
            state_at: None,
            decision: None,
            incoming: None,
            adopted: false,
            early: Vec::new(),
        }
    }

    /// This member's hello.
    fn my_hello(&self) -> Option<Hello> {
        let mine = self.mine.as_ref()?;
        Some(Hello {
            generation: self.generation,
            worker: self.me.clone(),
            applied: mine.applied,
            digest: mine.digest,
            needs_state: self.decision.as_ref().is_some_and(|d| d.adopt) && !self.adopted,
        })
    }

    fn say_hello(&mut self, now: Instant, out: &mut Vec<Out>) {
        if let Some(h) = self.my_hello() {
            self.hello_at = Some(now);
            out.push(Out::Publish(DpMessage::Hello(h)));
        }
    }

    /// The trainer's snapshot: say hello to everyone heard from so far.
    pub fn mine(&mut self, now: Instant, snap: Snapshot, cfg: &Config, out: &mut Vec<Out>) {
        if self.mine.is_some() {
            return;
        }
        self.mine = Some(snap);
        self.answered = self.hellos.keys().cloned().collect();
        self.say_hello(now, out);
        self.decide(now, cfg, out);
    }

    /// Another member's hello.
    pub fn hello(&mut self, now: Instant, h: Hello, cfg: &Config, out: &mut Vec<Out>) {
        if !self.members.contains(&h.worker) {
            return;
        }
        let (worker, needs) = (h.worker.clone(), h.needs_state);
        self.hellos.insert(worker.clone(), h);
        if self.mine.is_some() && self.answered.insert(worker) {
            self.say_hello(now, out);
        }
        let giving = self.decision.as_ref().is_some_and(|d| d.give);
        if needs && giving && self.state_at.is_none_or(|t| now >= t + cfg.hello_every) {
            self.give(now, cfg, out);
        }
        self.decide(now, cfg, out);
    }

    /// Once every member's hello is in: the source, and whether this member gives or adopts.
    fn decide(&mut self, now: Instant, cfg: &Config, out: &mut Vec<Out>) {
        let Some(mine) = &self.mine else {
            return;
        };
        if self.decision.is_some() {
            return;
        }
        let mut held = Vec::with_capacity(self.members.len());
        for m in &self.members {
            match (m == &self.me, self.hellos.get(m)) {
                (true, _) => held.push((m, mine.applied, mine.digest)),
                (false, Some(h)) => held.push((m, h.applied, h.digest)),
                (false, None) => return,
            }
        }
        // The most steps applied; the first (lowest rank) among equals.
        let Some(&(source, applied, digest)) = held.iter().rev().max_by_key(|(_, a, _)| *a) else {
            return;
        };
        let anyone_differs = held.iter().any(|(_, a, d)| (*a, *d) != (applied, digest));
        let decision = Decision {
            source: source.clone(),
            applied,
            digest,
            adopt: (mine.applied, mine.digest) != (applied, digest),
            give: *source == self.me && anyone_differs,
        };
        self.decision = Some(decision.clone());
        self.waiting = now;
        self.reported = None;
        if decision.give {
            self.give(now, cfg, out);
        }
        if decision.adopt {
            self.say_hello(now, out); // says it needs the state
        }
    }

    /// Publishes this member's state for the members that adopt it.
    fn give(&mut self, now: Instant, cfg: &Config, out: &mut Vec<Out>) {
        let Some(mine) = &self.mine else {
            return;
        };
        self.state_at = Some(now);
        let split = parts(
            PartKind::State,
            self.generation,
            mine.applied,
            &self.me,
            &mine.state,
            cfg.part_values,
        );
        out.extend(split.into_iter().map(|p| Out::Publish(DpMessage::Part(p))));
    }

    /// A part of the source's state; the state to adopt once it is whole and matches the
    /// source's digest.
    pub fn state_part(&mut self, p: &Part) -> Option<Out> {
        let d = self.decision.as_ref()?;
        if !d.adopt || self.adopted || p.worker != d.source || p.step != d.applied {
            return None;
        }
        let a = match &mut self.incoming {
            Some(a) => a,
            slot @ None => slot.insert(Assembler::for_part(p)?),
        };
        if !a.put(p) || !a.done() {
            return None;
        }
        let state = self.incoming.take()?.into_values();
        if digest(&state) != d.digest {
            return None; // parts of two sends mixed up; the next send is whole
        }
        self.adopted = true;
        Some(Out::Adopt {
            generation: self.generation,
            applied: d.applied,
            state: Arc::new(state),
        })
    }

    /// Keeps a contribution to the first step until this member goes on.
    pub fn keep_early(&mut self, p: Part, dropped: &mut u64) {
        if self.early.len() < MAX_EARLY && self.members.contains(&p.worker) {
            self.early.push(p);
        } else {
            *dropped += 1;
        }
    }

    /// Where the steps phase starts, once the sync is over.
    pub fn ready(&mut self) -> Option<Ready> {
        let d = self.decision.as_ref()?;
        if d.adopt && !self.adopted {
            return None;
        }
        let rank = self.members.iter().position(|m| *m == self.me)?;
        let hello = Hello {
            needs_state: false,
            ..self.my_hello()?
        };
        let given = match d.give {
            true => self.mine.as_ref().map(|m| m.state.clone()),
            false => None,
        };
        Some(Ready {
            rank,
            step: d.applied,
            hello,
            given,
        })
    }

    /// Repeats the hello and reports who keeps this member waiting.
    pub fn tick(&mut self, now: Instant, cfg: &Config, out: &mut Vec<Out>) {
        let lacking = self.decision.is_none() || (!self.adopted && self.adopting());
        if self.hello_at.is_some_and(|t| now >= t + cfg.hello_every) && lacking {
            self.say_hello(now, out);
        }
        let stalled = now >= self.waiting + cfg.stall_after;
        if !stalled || self.reported.is_some_and(|t| now < t + cfg.stall_after) {
            return;
        }
        let (missing, what) = match &self.decision {
            None if self.mine.is_some() => {
                let silent = self
                    .members
                    .iter()
                    .filter(|m| **m != self.me && !self.hellos.contains_key(*m));
                (silent.cloned().collect(), "a hello".to_string())
            }
            Some(d) if d.adopt && !self.adopted => (vec![d.source.clone()], "its state".into()),
            _ => return,
        };
        self.reported = Some(now);
        out.push(Out::Stalled {
            generation: self.generation,
            missing,
            what,
        });
    }

    fn adopting(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| d.adopt)
    }
}
