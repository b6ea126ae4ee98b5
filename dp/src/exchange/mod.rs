//! One worker's side of a data-parallel job's exchange: regrouping and the all-reduce.
//!
//! Fed [`In`]puts with the current time, it returns [`Out`]puts for its shell to carry out:
//! messages to publish on the attempt's subject, and what the trainer must do. The trainer
//! runs on its own thread and answers [`Out::Regroup`] with a [`Snapshot`] of its state and
//! [`Out::Go`] / [`Out::Reduced`] with its contribution to the next step.
//!
//! A generation of the group goes through two phases:
//! - **sync**: each member publishes a [`Hello`] (steps applied, state digest) and answers each
//!   new member's hello with its own (a member that subscribed late still hears everyone).
//!   Once every member's hello is in, each decides alike: the source is the member that
//!   applied the most steps (lowest rank among equals); the source publishes its state if
//!   anyone holds another, which those adopt; then all go on from the source's step.
//! - **steps**: each member publishes its contribution to the step; once every member's is
//!   in, the sum in rank order goes to the trainer, and the next step begins. A member waits
//!   at most one step ahead of another, so contributions to the next step are kept and
//!   anything older or further ahead is dropped.
//!
//! A member that waits longer than [`Config::stall_after`] for another's hello, state or
//! contribution reports it ([`Out::Stalled`]); the shell asks for the group without it.

mod sync;
#[cfg(test)]
mod tests;

use crate::assembler::Assembler;
use bus_schemas::dp::{parts, DpMessage, Hello, Part, PartKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync::Sync;

/// Timing and sizes.
#[derive(Debug, Clone)]
pub struct Config {
    /// The most values one published part holds (under the server's `max_payload`).
    pub part_values: usize,
    /// How long a member waits for another's hello, state or contribution before it reports
    /// it stalled (and again after as long).
    pub stall_after: Duration,
    /// How often a syncing member repeats its hello.
    pub hello_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            part_values: 256 * 1024,
            stall_after: Duration::from_secs(15),
            hello_every: Duration::from_millis(500),
        }
    }
}

/// A trainer's state, handed over when the group changes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The generation it answers.
    pub generation: u32,
    /// Steps applied.
    pub applied: u64,
    /// A digest of `state`.
    pub digest: u64,
    /// The whole state as floats (what another member adopts).
    pub state: Arc<Vec<f32>>,
}

/// What the exchange is fed.
#[derive(Debug, Clone)]
pub enum In {
    /// The group as the job record says: its generation and members in rank order.
    Group {
        /// Generation.
        generation: u32,
        /// Workers in rank order.
        members: Vec<String>,
    },
    /// The trainer's answer to [`Out::Regroup`].
    Snapshot(Snapshot),
    /// The trainer's contribution to `step`.
    Contribution {
        /// The generation it was computed in.
        generation: u32,
        /// The step.
        step: u64,
        /// Its values.
        values: Vec<f32>,
    },
    /// A message from the attempt's subject.
    Message(DpMessage),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Publish on the attempt's subject.
    Publish(DpMessage),
    /// Tell the trainer: drop the step in flight and answer with a snapshot for `generation`.
    Regroup {
        /// The new generation.
        generation: u32,
    },
    /// Tell the trainer: take this state, `applied` steps in.
    Adopt {
        /// Generation.
        generation: u32,
        /// Steps applied to it.
        applied: u64,
        /// The state.
        state: Arc<Vec<f32>>,
    },
    /// Tell the trainer: contribute to `step` as rank `rank` of `workers`.
    Go {
        /// Generation.
        generation: u32,
        /// This member's rank.
        rank: usize,
        /// Members.
        workers: usize,
        /// The step to contribute to.
        step: u64,
    },
    /// Tell the trainer: the sum of every member's contribution to `step`.
    Reduced {
        /// Generation.
        generation: u32,
        /// The step.
        step: u64,
        /// The sum, in rank order.
        sum: Vec<f32>,
        /// From this member's contribution to the sum.
        waited: Duration,
    },
    /// These members sent nothing for [`Config::stall_after`].
    Stalled {
        /// Generation.
        generation: u32,
        /// The silent members.
        missing: Vec<String>,
        /// What they did not send (`a contribution to step 812`).
        what: String,
    },
    /// This worker is no longer in the group: stop.
    Left,
}

/// The steps phase of a generation.
#[derive(Debug)]
struct Steps {
    generation: u32,
    members: Vec<String>,
    rank: usize,
    /// The step being reduced.
    step: u64,
    /// Contributions to `step` and to the step after, by rank.
    now: Vec<Option<Assembler>>,
    next: Vec<Option<Assembler>>,
    /// When this member's contribution to `step` went out.
    sent: Option<Instant>,
    /// When a stall was last reported.
    reported: Option<Instant>,
    /// This member's hello of the generation, to answer late hellos with, and the state it
    /// gave (if it was the source), for late adopters.
    hello: Hello,
    given: Option<Arc<Vec<f32>>>,
    answered: Option<Instant>,
}

#[derive(Debug)]
enum Phase {
    /// No group with this worker yet.
    Idle,
    Sync(Box<Sync>),
    Steps(Box<Steps>),
    /// Out of the group.
    Left,
}

/// One worker's exchange.
#[derive(Debug)]
pub struct Exchange {
    me: String,
    cfg: Config,
    grad_len: usize,
    generation: u32,
    phase: Phase,
    out: Vec<Out>,
    dropped: u64,
}

impl Exchange {
    /// The exchange of worker `me`, whose contributions hold `grad_len` values.
    pub fn new(me: &str, grad_len: usize, cfg: Config) -> Exchange {
        Exchange {
            me: me.to_string(),
            cfg,
            grad_len,
            generation: 0,
            phase: Phase::Idle,
            out: Vec::new(),
            dropped: 0,
        }
    }

    /// Messages dropped so far (another generation, out of range, malformed).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Its timing and sizes.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether this worker is out of the group.
    pub fn is_left(&self) -> bool {
        matches!(self.phase, Phase::Left)
    }

    /// The generation this worker follows (0 before the first group).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, now: Instant, input: In) -> Vec<Out> {
        match input {
            In::Group {
                generation,
                members,
            } => self.group(now, generation, members),
            In::Snapshot(s) => self.snapshot(now, s),
            In::Contribution {
                generation,
                step,
                values,
            } => self.contribution(now, generation, step, values),
            In::Message(DpMessage::Hello(h)) => self.hello(now, h),
            In::Message(DpMessage::Part(p)) => self.part(now, p),
        }
        std::mem::take(&mut self.out)
    }

    /// Lets time pass: repeated hellos, stalls.
    pub fn tick(&mut self, now: Instant) -> Vec<Out> {
        let cfg = self.cfg.clone();
        match &mut self.phase {
            Phase::Sync(s) => s.tick(now, &cfg, &mut self.out),
            Phase::Steps(s) => {
                let missing = s.missing();
                let waited = s.sent.is_some_and(|t| now >= t + cfg.stall_after);
                let again = s.reported.is_none_or(|t| now >= t + cfg.stall_after);
                if waited && again && !missing.is_empty() {
                    s.reported = Some(now);
                    self.out.push(Out::Stalled {
                        generation: s.generation,
                        missing,
                        what: format!("a contribution to step {}", s.step),
                    });
                }
            }
            Phase::Idle | Phase::Left => {}
        }
        std::mem::take(&mut self.out)
    }

    fn group(&mut self, now: Instant, generation: u32, members: Vec<String>) {
        if generation <= self.generation || matches!(self.phase, Phase::Left) {
            return;
        }
        self.generation = generation;
        if !members.contains(&self.me) {
            self.phase = Phase::Left;
            self.out.push(Out::Left);
            return;
        }
        self.phase = Phase::Sync(Box::new(Sync::new(&self.me, generation, members, now)));
        self.out.push(Out::Regroup { generation });
    }

    fn snapshot(&mut self, now: Instant, snap: Snapshot) {
        let Phase::Sync(s) = &mut self.phase else {
            return;
        };
        if snap.generation != s.generation {
            return;
        }
        let cfg = self.cfg.clone();
        s.mine(now, snap, &cfg, &mut self.out);
        self.advance(now);
    }

    /// Moves from sync to steps once the sync is over.
    fn advance(&mut self, now: Instant) {
        let Phase::Sync(s) = &mut self.phase else {
            return;
        };
        let Some(ready) = s.ready() else {
            return;
        };
        let early = std::mem::take(&mut s.early);
        let n = s.members.len();
        self.out.push(Out::Go {
            generation: s.generation,
            rank: ready.rank,
            workers: n,
            step: ready.step,
        });
        self.phase = Phase::Steps(Box::new(Steps {
            generation: s.generation,
            members: s.members.clone(),
            rank: ready.rank,
            step: ready.step,
            now: vec![None; n],
            next: vec![None; n],
            sent: None,
            reported: None,
            hello: ready.hello,
            given: ready.given,
            answered: None,
        }));
        for p in early {
            self.part(now, p);
        }
    }

    fn contribution(&mut self, now: Instant, generation: u32, step: u64, values: Vec<f32>) {
        let Phase::Steps(s) = &mut self.phase else {
            return;
        };
        if generation != s.generation || step != s.step || s.sent.is_some() {
            return;
        }
        if values.len() != self.grad_len {
            self.dropped += 1;
            return;
        }
        for p in parts(
            PartKind::Grad,
            generation,
            step,
            &self.me,
            &values,
            self.cfg.part_values,
        ) {
            self.out.push(Out::Publish(DpMessage::Part(p)));
        }
        s.now[s.rank] = Some(Assembler::whole(values));
        s.sent = Some(now);
        self.reduce(now);
    }

    fn hello(&mut self, now: Instant, h: Hello) {
        if h.worker == self.me || h.generation != self.generation {
            self.dropped += u64::from(h.worker != self.me);
            return;
        }
        let cfg = self.cfg.clone();
        match &mut self.phase {
            Phase::Sync(s) => {
                s.hello(now, h, &cfg, &mut self.out);
                self.advance(now);
            }
            Phase::Steps(s) if s.members.contains(&h.worker) => {
                // A member that subscribed late, or lost the state: answer once a period.
                if s.answered.is_some_and(|t| now < t + cfg.hello_every) {
                    return;
                }
                s.answered = Some(now);
                self.out
                    .push(Out::Publish(DpMessage::Hello(s.hello.clone())));
                if let (true, Some(state)) = (h.needs_state, &s.given) {
                    let step = s.hello.applied;
                    for p in parts(
                        PartKind::State,
                        s.generation,
                        step,
                        &self.me,
                        state,
                        cfg.part_values,
                    ) {
                        self.out.push(Out::Publish(DpMessage::Part(p)));
                    }
                }
            }
            _ => self.dropped += 1,
        }
    }

    fn part(&mut self, now: Instant, p: Part) {
        if p.worker == self.me {
            return; // our own, echoed by the server
        }
        if p.generation != self.generation {
            self.dropped += 1;
            return;
        }
        match (&mut self.phase, p.kind) {
            (Phase::Sync(s), PartKind::State) => {
                if let Some(adopt) = s.state_part(&p) {
                    self.out.push(adopt);
                    self.advance(now);
                }
            }
            (Phase::Sync(s), PartKind::Grad) => s.keep_early(p, &mut self.dropped),
            (Phase::Steps(s), PartKind::Grad) => {
                if s.place(&p, self.grad_len) {
                    self.reduce(now);
                } else {
                    self.dropped += 1;
                }
            }
            _ => self.dropped += 1,
        }
    }

    /// Once every contribution to the step is in: the sum, and on to the next step.
    fn reduce(&mut self, now: Instant) {
        let Phase::Steps(s) = &mut self.phase else {
            return;
        };
        if s.now
            .iter()
            .any(|a| !a.as_ref().is_some_and(Assembler::done))
        {
            return;
        }
        let Some(sent) = s.sent else {
            return;
        };
        let n = s.members.len();
        let done = std::mem::replace(&mut s.now, std::mem::replace(&mut s.next, vec![None; n]));
        let mut sum: Vec<f32> = Vec::new();
        for a in done.into_iter().flatten() {
            if sum.is_empty() {
                sum = a.into_values();
            } else {
                for (t, v) in sum.iter_mut().zip(a.values()) {
                    *t += v;
                }
            }
        }
        self.out.push(Out::Reduced {
            generation: s.generation,
            step: s.step,
            sum,
            waited: now.saturating_duration_since(sent),
        });
        s.step += 1;
        s.sent = None;
        s.reported = None;
        s.given = None; // everyone has stepped from it
    }
}

impl Steps {
    /// Places a contribution's part; false when it belongs to no step waited for.
    fn place(&mut self, p: &Part, grad_len: usize) -> bool {
        let Some(rank) = self.members.iter().position(|m| *m == p.worker) else {
            return false;
        };
        if p.len != grad_len as u64 {
            return false;
        }
        let slots = if p.step == self.step {
            &mut self.now
        } else if p.step == self.step + 1 {
            &mut self.next
        } else {
            return false;
        };
        match &mut slots[rank] {
            Some(a) => a.put(p),
            slot @ None => match Assembler::for_part(p) {
                Some(mut a) => {
                    let placed = a.put(p);
                    *slot = Some(a);
                    placed
                }
                None => false,
            },
        }
    }

    /// The members whose contribution to the step is not complete.
    fn missing(&self) -> Vec<String> {
        self.members
            .iter()
            .zip(&self.now)
            .filter(|(_, a)| !a.as_ref().is_some_and(Assembler::done))
            .map(|(m, _)| m.clone())
            .collect()
    }
}
