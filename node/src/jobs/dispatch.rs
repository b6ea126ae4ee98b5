//! The coordinator's dispatcher of inference jobs. While this node holds the lease it tells
//! the free workers (alive, not training) to join every running inference job, cuts batches
//! and sends them to each job's work subject, and counts each answered batch once.
//!
//! Fair time: a free in-flight slot goes to the job whose query rate over the last 10 s,
//! divided by its weight, is lowest, so jobs whose queries cost several times more still get the
//! same rate. Every cut batch is recorded in the job record before it is sent and removed when
//! its answer is counted; a batch that times out or fails is sent again with the same id and
//! contents, and a new coordinator sends the recorded ones again. Workers store results under
//! the batch's id, so the stream keeps each query once.

use super::coordinator::training_workers;
use super::ending::{self, Owner};
use super::serve_ops::{count, cut, deadline, leave, percentiles, Answered, Batch};
use super::{fair, serve_finish, Ctx};
use bus_client::RequestError;
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, QpsPolicy, ServeSpec};
use bus_schemas::membership::MemberState;
use bus_schemas::serve::{AssignReply, AssignRequest, ServeTarget, WorkBatch, WorkReply};
use bus_schemas::subjects;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The window over which query rates are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// In-flight batches per serving worker (one running, one waiting), over all its jobs.
const SLOTS_PER_WORKER: usize = 2;
/// Most batches cut in one write to the job record.
const CUT_AHEAD: usize = 8;
/// Answered batches are counted in one write once this many wait, or every [`COUNT_EVERY`].
const COUNT_GROUP: usize = 16;
/// How often answered batches are counted when fewer than [`COUNT_GROUP`] wait.
const COUNT_EVERY: Duration = Duration::from_millis(100);

/// The dispatcher's state.
#[derive(Default)]
struct State {
    runs: BTreeMap<String, Run>,
    /// Batches in flight per worker.
    load: BTreeMap<String, usize>,
    /// Every batch in flight, by flight number.
    flights: BTreeMap<u64, Flight>,
    next_flight: u64,
    /// Workers alive (not suspected) in the latest view.
    alive: BTreeSet<String>,
    /// The fair-time policy in force.
    policy: QpsPolicy,
    /// Under `qps local`: the workers each job may use, and when they were last divided.
    divided: BTreeMap<String, BTreeSet<String>>,
    divided_at: Option<Instant>,
}

/// How often `qps local` divides the workers again as costs change.
const REDIVIDE: Duration = Duration::from_secs(5);

/// A batch sent to a worker and not answered yet.
struct Flight {
    job: String,
    worker: String,
    batch: Batch,
}

/// Whether `worker` may take a batch of job `id` under `policy` and the division of workers.
fn may_serve(
    policy: QpsPolicy,
    divided: &BTreeMap<String, BTreeSet<String>>,
    id: &str,
    worker: &str,
) -> bool {
    policy == QpsPolicy::Global || divided.get(id).is_none_or(|ws| ws.contains(worker))
}

impl State {
    /// Sends again at once the batches in flight on workers that are no longer in the pool
    /// (suspected, failed, left, or training) instead of waiting for their deadline; a late
    /// answer to an abandoned flight is still counted, once.
    fn abandon_lost(&mut self) {
        let lost: Vec<u64> = self
            .flights
            .iter()
            .filter(|(_, f)| !self.alive.contains(&f.worker))
            .map(|(n, _)| *n)
            .collect();
        for n in lost {
            let f = self.flights.remove(&n).expect("listed above");
            if let Some(l) = self.load.get_mut(&f.worker) {
                *l = l.saturating_sub(1);
            }
            if let Some(run) = self.runs.get_mut(&f.job) {
                tracing::info!(job = %f.job, batch = f.batch.0, worker = %f.worker, "worker lost, sending again");
                run.in_flight = run.in_flight.saturating_sub(1);
                run.resend.push_front(f.batch);
            }
        }
    }

    /// Under `qps local`, divides the pool among the running jobs when the jobs or the pool
    /// changed, or every [`REDIVIDE`] as the measured costs move.
    fn divide(&mut self, pool: &BTreeSet<String>) {
        if self.policy == QpsPolicy::Global {
            self.divided.clear();
            return;
        }
        let now = Instant::now();
        let same_jobs = self.divided.keys().eq(self.runs.keys());
        let covered: BTreeSet<&String> = self.divided.values().flatten().collect();
        let same_pool = covered.len() == pool.len() && pool.iter().all(|w| covered.contains(w));
        if same_jobs && same_pool && self.divided_at.is_some_and(|t| now - t < REDIVIDE) {
            return;
        }
        let claims: Vec<fair::Claim> = self
            .runs
            .iter_mut()
            .map(|(id, r)| fair::Claim {
                job: id.clone(),
                weight: f64::from(r.spec.weight.max(1)),
                cost: r.cost(now),
            })
            .collect();
        let divided = fair::partition(pool, &claims, &self.divided);
        if divided != self.divided {
            tracing::info!(?divided, ?claims, "qps local: workers divided");
        }
        self.divided = divided;
        self.divided_at = Some(now);
    }
}

/// How long a worker that could not join a job is left alone before it is asked again.
const JOIN_RETRY: Duration = Duration::from_secs(5);

/// What the dispatcher knows of one running inference job.
struct Run {
    spec: ServeSpec,
    target: ServeTarget,
    joined: BTreeSet<String>,
    joining: BTreeSet<String>,
    /// Workers that refused to join, and when: asked again only after [`JOIN_RETRY`].
    refused: BTreeMap<String, Instant>,
    /// The last reason a worker gave for not joining.
    refusal: Option<String>,
    in_flight: usize,
    /// Batches recorded as pending and waiting to be sent (again, or cut ahead).
    resend: VecDeque<Batch>,
    /// Answered batches not yet counted in the record (counted in groups).
    uncounted: Vec<Answered>,
    exhausted: bool,
    /// Answered batches in the rate window: when, queries, processing milliseconds.
    answered: VecDeque<(Instant, u32, f64)>,
    proc_ms: VecDeque<f64>,
    saved: Instant,
    /// When the job was last found complete and its finishing started.
    finishing: Option<Instant>,
}

impl Run {
    fn expire(&mut self, now: Instant) {
        while self
            .answered
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.answered.pop_front();
        }
    }

    /// Queries per second over the last [`RATE_WINDOW`].
    fn rate(&mut self, now: Instant) -> f64 {
        self.expire(now);
        let q: u64 = self.answered.iter().map(|(_, n, _)| u64::from(*n)).sum();
        q as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// Worker milliseconds per query over the last [`RATE_WINDOW`], once measured.
    fn cost(&mut self, now: Instant) -> Option<f64> {
        self.expire(now);
        let q: u64 = self.answered.iter().map(|(_, n, _)| u64::from(*n)).sum();
        let ms: f64 = self.answered.iter().map(|(_, _, ms)| ms).sum();
        (q > 0).then(|| ms / q as f64)
    }
}

enum Done {
    Joined(String, String, Result<AssignReply, RequestError>),
    Answered(u64, String, String, Batch, Result<WorkReply, RequestError>),
}

/// Runs the dispatcher while this node holds the lease, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut st = State::default();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut refresh = tokio::time::interval(Duration::from_millis(250));
    let mut counting = tokio::time::interval(COUNT_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = counting.tick() => {
                let ids: Vec<String> = st.runs.keys().cloned().collect();
                for id in ids {
                    settle(&ctx, &mut st, &id).await;
                }
            }
            _ = refresh.tick() => {
                if !ctx.coordinator.borrow().me {
                    st = State::default();
                    tasks.abort_all();
                    continue;
                }
                if let Err(e) = reconcile(&ctx, &mut st, &mut tasks).await {
                    tracing::debug!("dispatcher: {e:#}");
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok(done) = done else { continue };
                handle(&ctx, &mut st, done).await;
            }
        }
        fill(&ctx, &mut st, &mut tasks).await;
    }
}

/// Follows the records: new and ended jobs, the worker pool, joins; saves statistics.
async fn reconcile(
    ctx: &Arc<Ctx>,
    st: &mut State,
    tasks: &mut JoinSet<Done>,
) -> anyhow::Result<()> {
    match ctx.settings.get().await {
        Ok(settings) => st.policy = settings.qps,
        Err(e) => tracing::debug!("cannot read the settings, keeping {:?}: {e:#}", st.policy),
    }
    let (view, jobs) = ctx.snapshot().await?;
    let training = training_workers(&jobs, &view);
    let pool: BTreeSet<String> = view
        .iter()
        .filter(|m| m.state == MemberState::Alive && !training.contains(&m.id))
        .map(|m| m.id.clone())
        .collect();
    st.alive = pool.clone();
    st.abandon_lost();
    let runs = &mut st.runs;
    let live: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| !j.state.is_final() && matches!(j.spec, JobSpec::Serve(_)))
        .map(|j| j.id.as_str())
        .collect();
    let ended: Vec<String> = runs
        .keys()
        .filter(|id| !live.contains(id.as_str()))
        .cloned()
        .collect();
    for id in ended {
        if let Some(run) = runs.remove(&id) {
            leave(ctx, &id, &run.joined);
        }
    }
    st.divide(&pool);
    let runs = &mut st.runs;
    for job in jobs.iter().filter(|j| live.contains(j.id.as_str())) {
        let run = match runs.get_mut(&job.id) {
            Some(run) => run,
            None => match start(ctx, job).await {
                Some(run) => runs.entry(job.id.clone()).or_insert(run),
                None => continue,
            },
        };
        run.joined.retain(|w| pool.contains(w));
        if let Some(s) = &job.serve {
            run.exhausted = s.total.is_some_and(|t| s.next_query >= t);
            let complete = s.total.is_some_and(|t| s.done >= t) && s.pending.is_empty();
            // Finishing failed or this coordinator took over a complete job: finish (again).
            if complete
                && run
                    .finishing
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
            {
                run.finishing = Some(Instant::now());
                serve_finish::finish(ctx.clone(), job.id.clone(), run.joined.clone());
            }
        }
        let hopeless = run.joined.is_empty()
            && !pool.is_empty()
            && pool.iter().all(|w| run.refused.contains_key(w));
        if let (true, Some(reason)) = (hopeless, run.refusal.clone()) {
            let reason = format!("no worker can serve it: {reason}");
            ending::fail(ctx, &job.id, Owner::Coordinator, reason).await;
            continue;
        }
        let wanted: Vec<String> = pool
            .iter()
            .filter(|w| !run.joined.contains(*w) && !run.joining.contains(*w))
            .filter(|w| run.refused.get(*w).is_none_or(|t| t.elapsed() > JOIN_RETRY))
            .cloned()
            .collect();
        for worker in wanted {
            run.joining.insert(worker.clone());
            let (client, target, worker, id) = (
                ctx.client.clone(),
                run.target.clone(),
                worker.clone(),
                job.id.clone(),
            );
            tasks.spawn(async move {
                let req = AssignRequest::Join { target };
                let reply = bus_client::request(
                    &client,
                    subjects::node_assign(&worker),
                    &req,
                    Duration::from_secs(60),
                )
                .await;
                Done::Joined(id, worker, reply)
            });
        }
        let serving = |w: &&String| may_serve(st.policy, &st.divided, &job.id, w);
        let workers: Vec<String> = run.joined.iter().filter(serving).cloned().collect();
        let stale = job.serve.as_ref().is_some_and(|s| s.workers != workers);
        if stale || run.saved.elapsed() >= Duration::from_secs(1) {
            run.saved = Instant::now();
            let rate = run.rate(Instant::now());
            let proc_ms = percentiles(&run.proc_ms);
            let saved = ctx
                .store
                .modify(&job.id, |j| {
                    let Some(s) = j.serve.as_mut().filter(|_| !j.state.is_final()) else {
                        return false;
                    };
                    s.workers = workers.clone();
                    s.rate = rate;
                    if !proc_ms.is_empty() {
                        s.proc_ms = proc_ms.clone();
                    }
                    true
                })
                .await?;
            if let Some(s) = saved.as_ref().and_then(|j| j.serve.as_ref()) {
                let progress = bus_schemas::jobs::Progress {
                    job_id: job.id.clone(),
                    worker: workers.join(","),
                    queries: s.done,
                    total: s.total,
                    query_rate: rate,
                    ..Default::default()
                };
                let subject = subjects::job_progress(&job.id);
                let _ = bus_client::publish(&ctx.client, subject, &progress).await;
            }
        }
    }
    Ok(())
}

/// Takes up a running or queued inference job: marks it running and queues its recorded
/// batches to be sent again.
async fn start(ctx: &Ctx, job: &JobRecord) -> Option<Run> {
    let JobSpec::Serve(spec) = &job.spec else {
        return None;
    };
    let state = job.serve.clone()?;
    if job.state == JobState::Queued {
        let started = ctx
            .store
            .modify(&job.id, |j| {
                let queued = j.state == JobState::Queued;
                if queued {
                    j.state = JobState::Running;
                }
                queued
            })
            .await;
        if let Ok(Some(_)) = started {
            ctx.event(
                &job.id,
                bus_schemas::jobs::JobEventKind::Started,
                None,
                None,
            )
            .await;
        }
    }
    tracing::info!(job = %job.id, pending = state.pending.len(), "dispatching");
    Some(Run {
        target: ServeTarget {
            job_id: job.id.clone(),
            model_file: super::outputs::model_file(&spec.model),
            model_version: state.model_version,
            dataset: spec.dataset.clone(),
            split: spec.split.clone(),
        },
        spec: spec.clone(),
        joined: BTreeSet::new(),
        joining: BTreeSet::new(),
        refused: BTreeMap::new(),
        refusal: None,
        in_flight: 0,
        resend: state.pending.iter().copied().collect(),
        uncounted: Vec::new(),
        exhausted: false,
        answered: VecDeque::new(),
        proc_ms: VecDeque::new(),
        saved: Instant::now(),
        finishing: None,
    })
}

/// Fills free in-flight slots, lowest weighted rate first; each batch goes to the least
/// loaded alive worker of its job.
async fn fill(ctx: &Arc<Ctx>, st: &mut State, tasks: &mut JoinSet<Done>) {
    if !ctx.coordinator.borrow().me {
        return;
    }
    let now = Instant::now();
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    loop {
        let (load, alive) = (&st.load, &st.alive);
        let (policy, divided) = (st.policy, &st.divided);
        let free_worker = |id: &str, r: &Run| {
            r.joined
                .iter()
                .filter(|w| alive.contains(*w) && may_serve(policy, divided, id, w))
                .map(|w| (load.get(w).copied().unwrap_or(0), w.clone()))
                .filter(|(l, _)| *l < SLOTS_PER_WORKER)
                .min()
                .map(|(_, w)| w)
        };
        let free_slots = |id: &str, r: &Run| -> usize {
            r.joined
                .iter()
                .filter(|w| alive.contains(*w) && may_serve(policy, divided, id, w))
                .map(|w| SLOTS_PER_WORKER.saturating_sub(load.get(w).copied().unwrap_or(0)))
                .sum()
        };
        let next = st
            .runs
            .iter_mut()
            .filter(|(id, r)| !blocked.contains(*id) && (!r.resend.is_empty() || !r.exhausted))
            .map(|(id, r)| {
                let share = r.rate(now) / f64::from(r.spec.weight.max(1));
                (share, r.in_flight, id.clone())
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, _, id)) = next else {
            return;
        };
        let run = st.runs.get_mut(&id).expect("chosen from runs");
        let Some(worker) = free_worker(&id, run) else {
            blocked.insert(id);
            continue;
        };
        let batch = match run.resend.pop_front() {
            Some(b) => b,
            None => match cut(ctx, &id, free_slots(&id, run).clamp(1, CUT_AHEAD)).await {
                Ok(cut) if cut.is_empty() => {
                    run.exhausted = true;
                    continue;
                }
                Ok(cut) => {
                    run.resend.extend(cut[1..].iter().copied());
                    cut[0]
                }
                Err(e) => {
                    // The bucket is unreachable for now (a server restart): try again later.
                    tracing::debug!(job = %id, "cannot cut a batch: {e:#}");
                    blocked.insert(id);
                    continue;
                }
            },
        };
        run.in_flight += 1;
        *st.load.entry(worker.clone()).or_default() += 1;
        let flight = st.next_flight;
        st.next_flight += 1;
        let (job, to) = (id.clone(), worker.clone());
        st.flights.insert(
            flight,
            Flight {
                job,
                worker: to,
                batch,
            },
        );
        let deadline = deadline(&run.proc_ms);
        let client = ctx.client.clone();
        tasks.spawn(async move {
            let work = WorkBatch {
                job_id: id.clone(),
                batch_id: batch.0,
                first_query: batch.1,
                len: batch.2,
            };
            let subject = subjects::job_work(&id, &worker);
            let reply = bus_client::request(&client, subject, &work, deadline).await;
            Done::Answered(flight, id, worker, batch, reply)
        });
    }
}

async fn handle(ctx: &Arc<Ctx>, st: &mut State, done: Done) {
    let runs = &mut st.runs;
    match done {
        Done::Joined(id, worker, reply) => {
            let Some(run) = runs.get_mut(&id) else { return };
            run.joining.remove(&worker);
            match reply {
                Ok(AssignReply::Done { .. }) => {
                    run.joined.insert(worker);
                }
                Ok(AssignReply::Error { message, .. }) => {
                    tracing::warn!(job = %id, %worker, "cannot serve: {message}");
                    run.refused.insert(worker, Instant::now());
                    run.refusal = Some(message);
                }
                Err(e) => {
                    tracing::debug!(job = %id, %worker, "join: {e}");
                    run.refused.insert(worker, Instant::now());
                }
            }
        }
        Done::Answered(flight, id, to, batch, reply) => {
            if st.flights.remove(&flight).is_none() {
                // Abandoned and sent again: count a late answer (once), nothing else.
                if let (
                    Ok(WorkReply::Done {
                        queries,
                        correct,
                        worker,
                        ..
                    }),
                    Some(run),
                ) = (reply, runs.get_mut(&id))
                {
                    let answered = Answered {
                        batch,
                        worker,
                        queries,
                        correct,
                    };
                    run.uncounted.push(answered);
                }
                return;
            }
            if let Some(l) = st.load.get_mut(&to) {
                *l = l.saturating_sub(1);
            }
            let Some(run) = runs.get_mut(&id) else { return };
            run.in_flight -= 1;
            match reply {
                Ok(WorkReply::Done {
                    queries,
                    correct,
                    proc_ms,
                    worker,
                    ..
                }) => {
                    run.answered.push_back((Instant::now(), queries, proc_ms));
                    run.proc_ms.push_back(proc_ms);
                    if run.proc_ms.len() > 2000 {
                        run.proc_ms.pop_front();
                    }
                    let answered = Answered {
                        batch,
                        worker,
                        queries,
                        correct,
                    };
                    run.uncounted.push(answered);
                    // The last batch of a job is counted at once; others in groups.
                    let last = run.exhausted && run.in_flight == 0 && run.resend.is_empty();
                    if run.uncounted.len() >= COUNT_GROUP || last {
                        settle(ctx, st, &id).await;
                    }
                }
                Ok(WorkReply::Error {
                    worker, message, ..
                }) => {
                    tracing::warn!(job = %id, batch = batch.0, %worker, "batch failed, sending again: {message}");
                    run.joined.remove(&worker);
                    run.resend.push_back(batch);
                }
                Err(e) => {
                    tracing::info!(job = %id, batch = batch.0, worker = %to, "no answer, sending again: {e}");
                    if matches!(e, RequestError::NoResponders { .. }) {
                        run.joined.remove(&to); // it does not serve the job (any more)
                    }
                    run.resend.push_back(batch);
                }
            }
        }
    }
}

/// Counts the job's answered batches in one write; when that fails they are sent again
/// (their results are stored once anyway). Finishes the job when every query is answered.
async fn settle(ctx: &Arc<Ctx>, st: &mut State, id: &str) {
    let Some(run) = st.runs.get_mut(id) else {
        return;
    };
    if run.uncounted.is_empty() {
        return;
    }
    let answered = std::mem::take(&mut run.uncounted);
    match count(ctx, id, &answered).await {
        Ok(true) => {
            run.finishing = Some(Instant::now());
            serve_finish::finish(ctx.clone(), id.to_string(), run.joined.clone());
        }
        Ok(false) => {}
        Err(e) => {
            tracing::debug!(job = %id, "cannot count {} batches: {e:#}", answered.len());
            run.resend.extend(answered.iter().map(|a| a.batch));
        }
    }
}
