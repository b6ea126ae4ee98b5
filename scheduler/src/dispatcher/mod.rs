//! The coordinator's dispatcher of inference jobs, sans-IO. While its node holds the lease it
//! tells the free workers (alive, not training) to join every running inference job, cuts
//! batches and sends them to each job's work subject, and counts each answered batch once.
//! [`Dispatcher`] only decides: it is fed the job records, the membership view, the fair-time
//! policy, replies and clock ticks (time is always passed in), and returns [`Action`]s that the
//! node's async shell performs, feeding their outcomes back as [`Reply`]s.
//!
//! Fair time: a free in-flight slot goes to the job that has been sent the fewest queries per
//! unit of weight (its virtual queries, as in a fair-queueing scheduler), so jobs whose
//! queries cost several times more still get the same rate, in every window rather than on
//! average. A new job starts level with the others, and no job falls further behind than a
//! few batches (a job that could not be served for a while is not owed a burst). Every cut
//! batch is recorded in the job record before it is sent and removed when its answer is
//! counted; a batch that times out or fails is sent again with the same id and contents, and a
//! new coordinator sends the recorded ones again. Workers store results under the batch's id,
//! so the stream keeps each query once.
//!
//! Batches are cut several at a time and counted in groups, so the job record is written a few
//! times per second rather than twice per batch. A worker's in-flight batches are sent again as
//! soon as membership suspects it, or as soon as a probe finds its process gone (a worker
//! holding batches is probed once it has been quiet for [`Config::quiet`]), instead of waiting
//! for their deadline. Under `qps local` each job keeps to its share of the workers.
//!
//! Only the worker a batch was sent to can answer it: its `done` names the results stream's
//! message holding its results, which the shell records before it counts the batch. A batch
//! whose workers keep dying fails the job after `--max-worker-deaths` of them (see [`deaths`]).

mod actions;
pub mod deaths;
mod fill;
mod index;
mod pass;
mod replies;
mod run;

#[cfg(test)]
mod tests;

pub use actions::{Action, Failure, Reply};
use bus_schemas::jobs::{JobRecord, QpsPolicy};
use bus_schemas::membership::MemberRecord;
use deaths::Members;
use index::JobView;
use run::{Flight, Pace, Run};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The window over which query rates are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// A worker whose batches take less model time than this (milliseconds, smoothed) holds one
/// batch more: a batch that short may end before the answer to the previous one and the next
/// batch have made their round trip. Longer batches only need the next one waiting, and every
/// batch held beyond that is one more a lost worker's resent batches wait behind elsewhere.
pub const SHORT_BATCH_MS: f64 = 50.0;

/// The dispatcher's timing and sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How often the records and the view are gone through when nothing changed.
    pub refresh: Duration,
    /// Records and views that changed are gone through no more often than this.
    pub earliest_refresh: Duration,
    /// Answered batches are counted in one write once this many wait ...
    pub count_group: usize,
    /// ... or at the next tick; the shell ticks this often.
    pub count_every: Duration,
    /// Most batches cut in one write to the job record.
    pub cut_ahead: usize,
    /// A worker holding batches that answered nothing for this long is probed.
    pub quiet: Duration,
    /// A worker that could not join a job is asked again after this long.
    pub join_retry: Duration,
    /// Under `qps local` the workers are divided again this often as costs move.
    pub redivide: Duration,
    /// A job's workers, rate and processing times are saved in its record this often.
    pub save_every: Duration,
    /// A complete job whose finishing has not ended it is finished again after this long.
    pub refinish: Duration,
    /// How far a job's virtual queries may trail the leader's, in batches of a job of weight 1.
    pub lag_batches: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            refresh: Duration::from_millis(250),
            earliest_refresh: Duration::from_millis(50),
            count_group: 16,
            count_every: Duration::from_millis(100),
            cut_ahead: 8,
            quiet: Duration::from_millis(100),
            join_retry: Duration::from_secs(5),
            redivide: Duration::from_secs(5),
            save_every: Duration::from_secs(1),
            refinish: Duration::from_secs(30),
            lag_batches: 8.0,
        }
    }
}

/// Counters of the dispatcher's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Batches sent (again, too).
    pub sent: u64,
    /// Batches sent again after a loss, a failure or a timeout.
    pub resent: u64,
    /// Answers accepted for counting.
    pub answered: u64,
    /// Inputs handled (ticks, replies, records, views).
    pub inputs: u64,
}

/// The coordinator's dispatcher of inference jobs.
pub struct Dispatcher {
    me: String,
    cfg: Config,
    coordinating: bool,
    /// Every job not ended, by id (the job index as the shell feeds it).
    jobs: BTreeMap<String, JobView>,
    view: Vec<MemberRecord>,
    /// The jobs or the view changed since the last pass.
    dirty: bool,
    passed: Option<Instant>,
    /// Queued jobs asked to be started and not seen running yet.
    starting: BTreeSet<String>,
    runs: BTreeMap<String, Run>,
    /// Batches in flight per worker.
    load: BTreeMap<String, usize>,
    /// How many batches each worker runs at once and how long they take.
    pace: BTreeMap<String, Pace>,
    /// Every batch in flight, by flight number.
    flights: BTreeMap<u64, Flight>,
    next_flight: u64,
    /// Workers alive (not suspected) in the latest view and not training.
    alive: BTreeSet<String>,
    /// Bumped whenever `alive` or `members` change.
    pool_version: u64,
    /// Alive workers with a free slot (kept as loads, paces and the pool change, so that
    /// filling after an answer looks at one worker, not all).
    spare: BTreeSet<String>,
    policy: QpsPolicy,
    /// Under `qps local`: the workers each job may use, and when they were last divided.
    divided: BTreeMap<String, BTreeSet<String>>,
    divided_at: Option<Instant>,
    /// Workers being probed now.
    probing: BTreeSet<String>,
    /// When each worker was last heard from (an answer, a probe answered) or given a batch
    /// while it held none.
    heard: BTreeMap<String, Instant>,
    /// Workers that let a batch time out and have not answered one since: they hold one batch
    /// at a time, and get one only when no other worker of the job has a free slot.
    late: BTreeSet<String>,
    /// Every member's state and generation in the latest view.
    members: Members,
    /// Every member's host in the latest view.
    hosts: BTreeMap<String, String>,
    stats: Stats,
    out: Vec<Action>,
}

impl Dispatcher {
    /// A dispatcher on node `me`, not coordinating yet.
    pub fn new(me: &str, cfg: Config) -> Self {
        Dispatcher {
            me: me.to_string(),
            cfg,
            coordinating: false,
            jobs: BTreeMap::new(),
            view: Vec::new(),
            dirty: true,
            passed: None,
            starting: BTreeSet::new(),
            runs: BTreeMap::new(),
            load: BTreeMap::new(),
            pace: BTreeMap::new(),
            flights: BTreeMap::new(),
            next_flight: 0,
            alive: BTreeSet::new(),
            pool_version: 0,
            spare: BTreeSet::new(),
            policy: QpsPolicy::default(),
            divided: BTreeMap::new(),
            divided_at: None,
            probing: BTreeSet::new(),
            heard: BTreeMap::new(),
            late: BTreeSet::new(),
            members: Members::new(),
            hosts: BTreeMap::new(),
            stats: Stats::default(),
            out: Vec::new(),
        }
    }

    /// Whether this node coordinates. A dispatcher that stops coordinating forgets every
    /// job it ran and every batch in flight (a late answer finds no flight); one that starts
    /// takes the jobs up from their records at the next tick, sending their pending batches
    /// again.
    pub fn set_coordinating(&mut self, me: bool) {
        if me == self.coordinating {
            return;
        }
        let (me_id, cfg) = (self.me.clone(), self.cfg.clone());
        let (jobs, view, policy) = (
            std::mem::take(&mut self.jobs),
            std::mem::take(&mut self.view),
            self.policy,
        );
        *self = Dispatcher::new(&me_id, cfg);
        (self.jobs, self.view, self.policy) = (jobs, view, policy);
        self.coordinating = me;
    }

    /// Whether this node coordinates.
    pub fn coordinating(&self) -> bool {
        self.coordinating
    }

    /// Takes the fair-time policy in force.
    pub fn set_policy(&mut self, policy: QpsPolicy) {
        if policy != self.policy {
            self.policy = policy;
            self.dirty = true;
        }
    }

    /// Takes the membership view.
    pub fn set_view(&mut self, view: Vec<MemberRecord>) {
        self.stats.inputs += 1;
        self.view = view;
        self.dirty = true;
    }

    /// Takes a job's record as it is now (an ended job leaves the index).
    pub fn job(&mut self, record: &JobRecord) {
        self.stats.inputs += 1;
        self.dirty = true;
        if record.state.is_final() {
            self.jobs.remove(&record.id);
        } else {
            self.jobs.insert(record.id.clone(), JobView::of(record));
        }
    }

    /// Forgets a job whose record is gone.
    pub fn job_removed(&mut self, id: &str) {
        self.dirty |= self.jobs.remove(id).is_some();
    }

    /// Takes every job's record at once: jobs not among them are gone.
    pub fn replace_jobs<'a>(&mut self, records: impl IntoIterator<Item = &'a JobRecord>) {
        let old = std::mem::take(&mut self.jobs);
        for r in records {
            self.job(r);
        }
        self.dirty |= old.keys().any(|id| !self.jobs.contains_key(id));
    }

    /// The clock ticked (every [`Config::count_every`]): counts answered batches, probes quiet
    /// workers, and goes through the records and the view when they changed or
    /// [`Config::refresh`] passed.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.stats.inputs += 1;
        if !self.coordinating {
            return Vec::new();
        }
        for run in self.runs.values_mut() {
            run.median_ms = crate::batches::median(&run.proc_ms);
            run.cut_blocked = false;
        }
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        for id in ids {
            self.settle(&id);
        }
        self.probe_stragglers(now);
        let since = self.passed.map(|t| now.saturating_duration_since(t));
        let due = since.is_none_or(|s| {
            s >= self.cfg.refresh || (self.dirty && s >= self.cfg.earliest_refresh)
        });
        if due {
            self.pass(now);
        }
        self.fill(now);
        std::mem::take(&mut self.out)
    }

    /// Takes the outcome of an action.
    pub fn reply(&mut self, reply: Reply, now: Instant) -> Vec<Action> {
        self.stats.inputs += 1;
        if !self.coordinating {
            return Vec::new();
        }
        match reply {
            Reply::Started { job, record } => self.started(&job, record, now),
            Reply::Joined {
                job,
                worker,
                generation,
                result,
            } => {
                let w = worker.clone();
                self.join_answered(&job, worker, generation, result, now);
                self.recheck(&w);
            }
            Reply::Work {
                flight,
                job,
                worker,
                batch,
                result,
            } => {
                self.work_answered(flight, &job, &worker, batch, result, now);
                self.recheck(&worker);
            }
            Reply::Probed { worker, up } => self.probed(&worker, up, now),
            Reply::Cut { job, batches } => self.cut(&job, batches),
            Reply::Counted {
                job,
                answered,
                complete,
            } => self.counted(&job, &answered, complete, now),
        }
        self.fill(now);
        std::mem::take(&mut self.out)
    }

    /// Counters of the work done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Batches in flight now.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// The workers serving job `id` (joined, and allowed by the policy), if it runs.
    pub fn workers_of(&self, id: &str) -> Option<Vec<String>> {
        let run = self.runs.get(id)?;
        Some(
            run.joined
                .iter()
                .filter(|w| self.may_serve(id, w))
                .cloned()
                .collect(),
        )
    }

    /// Whether `worker` may take a batch of job `id` under the policy and the division.
    fn may_serve(&self, id: &str, worker: &str) -> bool {
        self.policy == QpsPolicy::Global
            || self.divided.get(id).is_none_or(|ws| ws.contains(worker))
    }

    /// Counts the job's answered batches in one write, if any wait.
    fn settle(&mut self, id: &str) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if run.uncounted.is_empty() {
            return;
        }
        let answered = std::mem::take(&mut run.uncounted);
        self.out.push(Action::Count {
            job: id.to_string(),
            answered,
        });
    }
}
