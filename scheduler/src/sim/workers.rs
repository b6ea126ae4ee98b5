//! The simulated workers: lanes that run batches one after another at a model cost per query,
//! and the answers (or silences) their requests get.

use super::Sim;
use crate::dispatcher::{Action, Failure, Reply};
use bus_schemas::membership::{MemberRecord, MemberState};
use bus_schemas::serve::{AssignReply, WorkReply};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the bus takes to answer (a round trip, or no responders).
const HOP: Duration = Duration::from_millis(1);
/// A probe of a hung process is unanswered for this long.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a worker takes to join a job (loading its model); each join takes a random part.
const LOAD: Duration = Duration::from_millis(300);
/// A join to a hung process is unanswered for this long.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a simulated worker refuses to join a job.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The worker's sentence.
    pub message: String,
    /// The job itself is at fault: every worker would refuse it.
    pub bad_input: bool,
    /// The trouble may pass by itself.
    pub transient: bool,
}

impl Refusal {
    /// This worker's own lasting trouble.
    pub fn lasting(message: &str) -> Option<Refusal> {
        Some(Refusal {
            message: message.into(),
            bad_input: false,
            transient: false,
        })
    }

    /// The job's input is at fault.
    pub fn bad_input(message: &str) -> Option<Refusal> {
        Some(Refusal {
            bad_input: true,
            ..Refusal::lasting(message)?
        })
    }

    /// Trouble that may pass.
    pub fn transient(message: &str) -> Option<Refusal> {
        Some(Refusal {
            transient: true,
            ..Refusal::lasting(message)?
        })
    }
}

/// A simulated worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Lane milliseconds per query, by job.
    pub cost: BTreeMap<String, f64>,
    /// How many times slower than its cost it runs (1: as it should).
    pub slow: f64,
    /// It refuses to join jobs, and why.
    pub refuse: Option<Refusal>,
    lanes: Vec<Instant>,
    /// Bumped when the process dies or starts again: answers of an earlier process never come.
    process: u64,
    alive: bool,
    hung: bool,
}

/// A request's answer on its way.
pub(super) struct Pending {
    reply: Reply,
    worker: String,
    process: u64,
    sent: Instant,
    deadline: Duration,
}

impl Worker {
    pub(super) fn new(lanes: u32, now: Instant) -> Worker {
        Worker {
            cost: BTreeMap::new(),
            slow: 1.0,
            refuse: None,
            lanes: vec![now; lanes.max(1) as usize],
            process: 0,
            alive: true,
            hung: false,
        }
    }

    /// `kill -9`: answers on their way never come; later requests find no responders.
    pub fn kill(&mut self) {
        self.alive = false;
        self.process += 1;
    }

    /// `SIGSTOP` (true) or `SIGCONT` (false): nothing answers while hung.
    pub fn hang(&mut self, hung: bool) {
        self.hung = hung;
        if hung {
            self.process += 1;
        }
    }

    pub(super) fn restart(&mut self, now: Instant) {
        self.alive = true;
        self.hung = false;
        self.process += 1;
        self.lanes.iter_mut().for_each(|l| *l = now);
    }

    /// Runs `queries` of job `job` on the first free lane from `now`: when it ends, and the
    /// model time it took.
    fn run(&mut self, job: &str, queries: u32, now: Instant) -> (Instant, Duration) {
        let per_query = self.cost.get(job).copied().unwrap_or(1.0) * self.slow;
        let took = Duration::from_secs_f64(per_query * f64::from(queries) / 1000.0);
        let Some(lane) = self.lanes.iter_mut().min() else {
            return (now + took, took);
        };
        let end = (*lane).max(now) + took;
        *lane = end;
        (end, took)
    }
}

/// A member record of a worker alive at `generation`.
pub(super) fn member(id: &str, host: &str, generation: u64) -> MemberRecord {
    MemberRecord {
        id: id.into(),
        generation,
        incarnation: 0,
        state: MemberState::Alive,
        host: host.into(),
        zone: None,
        http: None,
        last_heard_ms: None,
        started_ms: Some(generation),
    }
}

impl Sim {
    /// Sends a request to a worker: its answer is scheduled.
    pub(super) fn request(&mut self, action: Action) {
        let now = self.now;
        let (worker, reply, at, deadline) = match action {
            Action::Join {
                job,
                worker,
                generation,
                ..
            } => {
                let (result, at) = self.join_answer(&worker, now);
                let reply = Reply::Joined {
                    job,
                    worker: worker.clone(),
                    generation,
                    result,
                };
                (worker, reply, at, JOIN_TIMEOUT)
            }
            Action::Send {
                flight,
                job,
                worker,
                batch,
                deadline,
                again,
            } => {
                let (result, at) = self.work_answer(&job, &worker, batch, deadline);
                let sent = (job.clone(), batch.batch_id, worker.clone(), again);
                self.log.sends.push(sent);
                let (w, job) = (worker.clone(), job);
                let reply = Reply::Work {
                    flight,
                    job,
                    worker,
                    batch,
                    result,
                };
                (w, reply, at, deadline)
            }
            Action::Probe { worker } => {
                let (reply, at) = self.probe_answer(worker.clone(), now);
                (worker, reply, at, PROBE_TIMEOUT)
            }
            _ => return,
        };
        let process = self.workers.get(&worker).map_or(0, |w| w.process);
        let pending = Pending {
            reply,
            worker,
            process,
            sent: now,
            deadline,
        };
        self.schedule(at, pending);
    }

    /// A probe's answer: up at once, no responders at once, or silence (a hung process).
    fn probe_answer(&self, worker: String, now: Instant) -> (Reply, Instant) {
        let w = self.workers.get(&worker);
        let up = w.is_some_and(|w| w.alive && !w.hung);
        let silent = w.is_some_and(|w| w.alive && w.hung);
        let at = now + if silent { PROBE_TIMEOUT } else { HOP };
        (Reply::Probed { worker, up }, at)
    }

    fn join_answer(
        &mut self,
        worker: &str,
        now: Instant,
    ) -> (Result<AssignReply, Failure>, Instant) {
        use rand::Rng;
        let load = LOAD.mul_f64(self.rng.random::<f64>());
        let Some(w) = self.workers.get(worker).filter(|w| w.alive) else {
            return (Err(Failure::NoResponders), now + HOP);
        };
        if w.hung {
            return (Err(Sim::timed_out(JOIN_TIMEOUT)), now + JOIN_TIMEOUT);
        }
        let reply = match &w.refuse {
            Some(r) => AssignReply::Error {
                worker: worker.into(),
                message: r.message.clone(),
                bad_input: r.bad_input,
                transient: r.transient,
            },
            None => AssignReply::Done {
                worker: worker.into(),
                serving: Vec::new(),
                lanes: w.lanes.len() as u32,
            },
        };
        (Ok(reply), now + 2 * HOP + load)
    }

    fn work_answer(
        &mut self,
        job: &str,
        worker: &str,
        batch: crate::batches::Batch,
        deadline: Duration,
    ) -> (Result<WorkReply, Failure>, Instant) {
        let now = self.now;
        self.seq += 1;
        let stream_seq = self.seq;
        let Some(w) = self.workers.get_mut(worker).filter(|w| w.alive) else {
            return (Err(Failure::NoResponders), now + HOP);
        };
        if w.hung {
            return (Err(Sim::timed_out(deadline)), now + deadline);
        }
        let (end, took) = w.run(job, batch.len, now);
        if end + HOP > now + deadline {
            return (Err(Sim::timed_out(deadline)), now + deadline);
        }
        let ms = took.as_secs_f64() * 1000.0;
        let done = WorkReply::Done {
            batch_id: batch.batch_id,
            worker: worker.into(),
            queries: batch.len,
            correct: Some(batch.len),
            proc_ms: ms,
            infer_ms: ms,
            duplicate: false,
            stream_seq: Some(stream_seq),
        };
        (Ok(done), end + HOP)
    }

    /// The reply as it arrives: an answer from a process that has since died or hung never
    /// comes (the request times out at its deadline instead).
    pub(super) fn arrived(&mut self, p: Pending) -> Option<Reply> {
        let w = self.workers.get(&p.worker);
        let same = w.is_some_and(|w| w.process == p.process && w.alive && !w.hung);
        let answered = match &p.reply {
            Reply::Work { result, .. } => result.is_ok(),
            Reply::Joined { result, .. } => result.is_ok(),
            Reply::Probed { up, .. } => *up,
            _ => false,
        };
        if same || !answered {
            return Some(p.reply);
        }
        let timeout = p.sent + p.deadline;
        let failed = Sim::timed_out(p.deadline);
        let reply = match p.reply {
            Reply::Work {
                flight,
                job,
                worker,
                batch,
                ..
            } => Reply::Work {
                flight,
                job,
                worker,
                batch,
                result: Err(failed),
            },
            Reply::Joined {
                job,
                worker,
                generation,
                ..
            } => Reply::Joined {
                job,
                worker,
                generation,
                result: Err(failed),
            },
            Reply::Probed { worker, .. } => Reply::Probed { worker, up: false },
            other => other,
        };
        if timeout > self.now {
            let pending = Pending { reply, ..p };
            self.schedule(timeout, pending);
            return None;
        }
        Some(reply)
    }
}
