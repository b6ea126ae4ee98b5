//! A deterministic simulated cluster for the dispatcher: job records held in memory (each
//! write fed back to the dispatcher at once, as a watched job index would), workers with
//! inference lanes and a model cost per query, a membership view the test sets, and requests
//! answered after simulated time. Time is a discrete-event clock: nothing sleeps, so a minute
//! of cluster time takes milliseconds. Workers can be killed (`kill -9`: no answer, then no
//! responders), hung (`SIGSTOP`: no answer, probes unanswered), slowed, or restarted.

mod workers;

use crate::batches::{self, Batch};
use crate::dispatcher::{deaths, Action, Config, Dispatcher, Failure, Reply};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, QpsPolicy};
use bus_schemas::membership::{MemberRecord, MemberState};
use bus_schemas::serve::{ServeSpec, ServeState};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};
pub use workers::{Refusal, Worker};

/// How many workers' deaths fail a job in the simulation (`--max-worker-deaths`).
pub const MAX_WORKER_DEATHS: u32 = 3;

/// What the simulation saw happen.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Each answered batch as counted: `(time, job, queries)`.
    pub counted: Vec<(Instant, String, u32)>,
    /// How many times each `(job, batch)` was counted in its record (a count of a batch no
    /// longer pending changes nothing and is not logged).
    pub counts: BTreeMap<(String, u64), u32>,
    /// Every batch sent: `(job, batch id, worker, sent again after a loss)`.
    pub sends: Vec<(String, u64, String, bool)>,
    /// Time spent inside the dispatcher (its inputs), wall clock.
    pub core_time: Duration,
    /// Inputs given to the dispatcher.
    pub inputs: u64,
}

/// A simulated cluster around one dispatcher.
pub struct Sim {
    /// The dispatcher under test.
    pub dispatcher: Dispatcher,
    /// The simulated time now.
    pub now: Instant,
    /// When the simulation started.
    pub start: Instant,
    /// Every job record, by id (the store).
    pub records: BTreeMap<String, JobRecord>,
    /// What happened.
    pub log: Log,
    workers: BTreeMap<String, Worker>,
    view: BTreeMap<String, MemberRecord>,
    /// Replies due, by time (then by order of scheduling).
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: BTreeMap<u64, workers::Pending>,
    seq: u64,
    next_tick: Instant,
    cfg: Config,
    /// Seeded: how long joins take (a worker loads the model first).
    rng: rand::rngs::StdRng,
}

impl Sim {
    /// A cluster of `n` workers with `lanes` lanes each, spread over `hosts` hosts; the
    /// dispatcher runs on the first worker and coordinates.
    pub fn new(n: usize, hosts: usize, lanes: u32) -> Sim {
        let cfg = Config::default();
        let start = Instant::now();
        let ids: Vec<String> = (0..n).map(|i| format!("w{i:03}")).collect();
        let me = ids.first().cloned().unwrap_or_else(|| "w000".into());
        let mut dispatcher = Dispatcher::new(&me, cfg.clone());
        dispatcher.set_coordinating(true);
        let mut sim = Sim {
            dispatcher,
            now: start,
            start,
            records: BTreeMap::new(),
            log: Log::default(),
            workers: BTreeMap::new(),
            view: BTreeMap::new(),
            due: BinaryHeap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            next_tick: start,
            cfg,
            rng: rand::SeedableRng::seed_from_u64(n as u64),
        };
        for (i, id) in ids.iter().enumerate() {
            let host = format!("h{}", i % hosts.max(1));
            sim.workers.insert(id.clone(), Worker::new(lanes, start));
            sim.view.insert(id.clone(), workers::member(id, &host, 1));
        }
        sim.feed_view();
        sim
    }

    /// Submits a queued inference job of `total` queries (`None`: continuous) whose model costs
    /// `ms_per_query` of a lane's time per query.
    pub fn submit(
        &mut self,
        id: &str,
        weight: u32,
        batch: u32,
        total: Option<u64>,
        ms_per_query: f64,
    ) {
        let spec = ServeSpec {
            model: format!("m-{id}"),
            model_version: Some(1),
            dataset: "d".into(),
            split: "test".into(),
            batch,
            passes: None,
            weight,
        };
        let serve = ServeState {
            model_version: 1,
            count: total.unwrap_or(0),
            total,
            batch,
            correct: Some(0),
            ..Default::default()
        };
        let record = JobRecord::queued(id.into(), JobSpec::Serve(spec), 0, Some(serve));
        for w in self.workers.values_mut() {
            w.cost.insert(id.to_string(), ms_per_query);
        }
        self.write(record);
    }

    /// The record of job `id`.
    pub fn record(&self, id: &str) -> Option<&JobRecord> {
        self.records.get(id)
    }

    /// The serve state of job `id`.
    pub fn serve(&self, id: &str) -> Option<&ServeState> {
        self.records.get(id).and_then(|r| r.serve.as_ref())
    }

    /// Changes job `id`'s record as the API would (a new batch size, a cancellation).
    pub fn change(&mut self, id: &str, f: impl FnOnce(&mut JobRecord)) {
        if let Some(mut r) = self.records.get(id).cloned() {
            f(&mut r);
            self.write(r);
        }
    }

    /// Sets the fair-time policy.
    pub fn set_policy(&mut self, policy: QpsPolicy) {
        self.dispatcher.set_policy(policy);
    }

    /// Sets what membership says of `worker`.
    pub fn set_member(&mut self, worker: &str, state: MemberState) {
        if let Some(m) = self.view.get_mut(worker) {
            m.state = state;
        }
        self.feed_view();
    }

    /// Adds a worker on `host` to the cluster and the view.
    pub fn add_worker(&mut self, id: &str, host: &str, lanes: u32, costs: BTreeMap<String, f64>) {
        let mut w = Worker::new(lanes, self.now);
        w.cost = costs;
        self.workers.insert(id.to_string(), w);
        self.view
            .insert(id.to_string(), workers::member(id, host, 1));
        self.feed_view();
    }

    /// The worker `id`, to kill, hang, slow or restart it.
    pub fn worker(&mut self, id: &str) -> Option<&mut Worker> {
        self.workers.get_mut(id)
    }

    /// Restarts worker `id`'s process: a new generation, alive in the view.
    pub fn restart(&mut self, id: &str) {
        let now = self.now;
        if let Some(w) = self.workers.get_mut(id) {
            w.restart(now);
        }
        if let Some(m) = self.view.get_mut(id) {
            m.generation += 1;
            m.started_ms = Some(m.generation);
            m.state = MemberState::Alive;
        }
        self.feed_view();
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(|_| false, end);
    }

    /// Runs until `done` holds (checked after every event) or simulated time `end`; whether
    /// `done` held.
    pub fn run_until(&mut self, done: impl Fn(&Sim) -> bool, end: Instant) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let next_reply = self.due.peek().map(|Reverse((t, _))| *t);
            let next = next_reply.map_or(self.next_tick, |t| t.min(self.next_tick));
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = next.max(self.now);
            if next_reply == Some(next) {
                self.deliver();
            } else {
                self.next_tick = self.now + self.cfg.count_every;
                let actions = self.timed(|d, now| d.tick(now));
                self.perform(actions);
            }
        }
    }

    /// Runs until every job in `ids` ended, or `limit` of simulated time; whether they did.
    pub fn run_to_end(&mut self, ids: &[&str], limit: Duration) -> bool {
        let end = self.now + limit;
        let ended = |s: &Sim| {
            ids.iter()
                .all(|id| s.records.get(*id).is_some_and(|r| r.state.is_final()))
        };
        self.run_until(ended, end)
    }

    /// Queries counted for job `id` between `from` and `to` (simulated time).
    pub fn counted_between(&self, id: &str, from: Instant, to: Instant) -> u64 {
        (self.log.counted.iter())
            .filter(|(t, j, _)| j == id && *t >= from && *t < to)
            .map(|(_, _, q)| u64::from(*q))
            .sum()
    }

    /// The batches counted more than once (none, if counting is right).
    pub fn counted_twice(&self) -> Vec<(String, u64)> {
        (self.log.counts.iter())
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn timed(&mut self, f: impl FnOnce(&mut Dispatcher, Instant) -> Vec<Action>) -> Vec<Action> {
        let began = Instant::now();
        let actions = f(&mut self.dispatcher, self.now);
        self.log.core_time += began.elapsed();
        self.log.inputs += 1;
        actions
    }

    fn feed_view(&mut self) {
        let view: Vec<MemberRecord> = self.view.values().cloned().collect();
        self.dispatcher.set_view(view);
    }

    /// Stores a record and feeds it to the dispatcher, as a watch would.
    fn write(&mut self, record: JobRecord) {
        let began = Instant::now();
        self.dispatcher.job(&record);
        self.log.core_time += began.elapsed();
        self.records.insert(record.id.clone(), record);
    }

    /// Performs the dispatcher's actions: record writes at once, requests after their time.
    fn perform(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if let Some(reply) = self.act(action) {
                let more = self.timed(|d, now| d.reply(reply, now));
                queue.extend(more);
            }
        }
    }

    fn act(&mut self, action: Action) -> Option<Reply> {
        match action {
            Action::Start { job } => Some(self.start(job)),
            Action::Cut { job, n } => Some(self.cut(job, n)),
            Action::Count { job, answered } => Some(self.count(job, answered)),
            Action::Save {
                job, workers, rate, ..
            } => {
                self.running(&job, |_, s| {
                    s.workers = workers;
                    s.rate = rate;
                });
                None
            }
            Action::RecordDeath {
                job,
                batch,
                worker,
                what,
            } => {
                self.record_death(&job, batch, &worker, &what);
                None
            }
            Action::Fail { job, reason } => {
                self.end(&job, JobState::Failed, Some(reason));
                None
            }
            Action::Finish { job, .. } => {
                self.end(&job, JobState::Succeeded, None);
                None
            }
            Action::Leave { .. } => None,
            request => {
                self.request(request);
                None
            }
        }
    }

    fn start(&mut self, job: String) -> Reply {
        let queued = self
            .records
            .get(&job)
            .is_some_and(|r| r.state == JobState::Queued);
        let record = queued.then(|| {
            self.change(&job, |r| r.state = JobState::Running);
            self.records.get(&job).cloned().map(Box::new)
        });
        Reply::Started {
            job,
            record: record.flatten(),
        }
    }

    /// Applies `f` to a running job's serve state and stores the record; whether it ran.
    fn running(&mut self, job: &str, f: impl FnOnce(&mut JobRecord, &mut ServeState)) -> bool {
        let running = |r: &JobRecord| r.state == JobState::Running && r.serve.is_some();
        if !self.records.get(job).is_some_and(running) {
            return false;
        }
        let Some(mut r) = self.records.remove(job) else {
            return false;
        };
        let Some(mut s) = r.serve.take() else {
            return false;
        };
        f(&mut r, &mut s);
        r.serve = Some(s);
        self.write(r);
        true
    }

    fn cut(&mut self, job: String, n: usize) -> Reply {
        let mut cut = Vec::new();
        self.running(&job, |_, s| cut = batches::cut(s, n));
        Reply::Cut {
            job,
            batches: Some(cut),
        }
    }

    fn count(&mut self, job: String, answered: Vec<batches::Answered>) -> Reply {
        let now = self.now;
        let mut complete = false;
        let mut newly = Vec::new();
        self.running(&job, |_, s| {
            for a in &answered {
                if s.pending.iter().any(|b| b.batch_id == a.batch.batch_id) {
                    newly.push((a.batch.batch_id, a.queries));
                }
            }
            complete = batches::count(s, &answered).complete;
        });
        for (batch, queries) in newly {
            *self.log.counts.entry((job.clone(), batch)).or_default() += 1;
            self.log.counted.push((now, job.clone(), queries));
        }
        Reply::Counted {
            job,
            answered,
            complete: Some(complete),
        }
    }

    fn record_death(&mut self, job: &str, batch: Batch, worker: &str, what: &str) {
        self.running(job, |r, s| {
            if let deaths::Outcome::Fatal(reason) =
                deaths::add(s, batch, worker, what, MAX_WORKER_DEATHS)
            {
                r.state = JobState::Failed;
                r.error = Some(reason);
            }
        });
    }

    fn end(&mut self, job: &str, state: JobState, error: Option<String>) {
        self.change(job, |r| {
            if !r.state.is_final() {
                r.state = state;
                r.error = error;
            }
        });
    }

    /// Schedules `reply` at `at`.
    fn schedule(&mut self, at: Instant, pending: workers::Pending) {
        self.seq += 1;
        self.pending.insert(self.seq, pending);
        self.due.push(Reverse((at, self.seq)));
    }

    /// Delivers the earliest reply due.
    fn deliver(&mut self) {
        let Some(Reverse((_, seq))) = self.due.pop() else {
            return;
        };
        let Some(pending) = self.pending.remove(&seq) else {
            return;
        };
        if let Some(reply) = self.arrived(pending) {
            let actions = self.timed(|d, now| d.reply(reply, now));
            self.perform(actions);
        }
    }

    /// A failure after `d`, as a timed-out request.
    fn timed_out(d: Duration) -> Failure {
        Failure::Failed(format!("no answer within {d:?}"))
    }
}
