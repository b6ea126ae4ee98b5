//! The coordinator's dispatcher of inference jobs. While this node holds the lease it tells
//! the free workers (alive, not training) to join every running inference job, cuts batches
//! and sends them to each job's work subject, and counts each answered batch once.
//!
//! Fair time: a free in-flight slot goes to the job that has been sent the fewest queries per
//! unit of weight (its virtual queries, as in a fair-queueing scheduler), so jobs whose
//! queries cost several times more still get the same rate, in every window rather than on
//! average. A new job starts level with the others, and no job falls further behind than a
//! few batches (a job that could not be served for a while is not owed a burst). Every cut batch is recorded in the job record before it is sent and removed when
//! its answer is counted; a batch that times out or fails is sent again with the same id and
//! contents, and a new coordinator sends the recorded ones again. Workers store results under
//! the batch's id, so the stream keeps each query once.
//!
//! Batches are cut several at a time and counted in groups, so the job record is written a few
//! times per second rather than twice per batch. A worker's in-flight batches are sent again as
//! soon as membership suspects it, or as soon as a probe finds its process gone (a worker
//! holding batches is probed once it has been quiet for [`QUIET`]), instead of waiting for
//! their deadline. Under `qps local` each job keeps to its share of the workers.
//!
//! Only the worker a batch was sent to can answer it: its `done` names the results stream's
//! message holding its results, which the dispatcher records on the job's `accepted` subject
//! before it counts the batch (see [`super::accepted`]). A batch whose workers keep dying fails
//! the job after `--max-worker-deaths` of them (see [`deaths`]).

mod deaths;
mod losses;
mod send;
mod state;

use super::coordinator::training_workers;
use super::ending::{self, Owner};
use super::serve_ops::{count, cut, deadline, leave, median, percentiles, Answered, Batch};
use super::{accepted, fair, serve_finish, Ctx};
use crate::stages::Stage;
use bus_client::RequestError;
use bus_schemas::jobs::{JobEventKind, JobRecord, JobSpec, JobState, QpsPolicy, ServeSpec};
use bus_schemas::membership::MemberState;
use bus_schemas::serve::{
    AssignReply, AssignRequest, ServeTarget, WorkBatch, WorkReply, MAX_WORKER_LANES,
};
use bus_schemas::subjects;
use send::{fill, handle, probe_stragglers, settle, Done, Pace};
use state::{may_serve, Run, State, JOIN_RETRY};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The window over which query rates are measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// A worker whose batches take less model time than this (milliseconds, smoothed) holds one
/// batch more: a batch that short may end before the answer to the previous one and the next
/// batch have made their round trip. Longer batches only need the next one waiting, and every
/// batch held beyond that is one more a lost worker's resent batches wait behind elsewhere.
pub(super) const SHORT_BATCH_MS: f64 = 50.0;
/// A worker holding batches that has answered nothing for this long is probed (a request to its
/// control subject, answered by its runtime, not its inference lanes); a worker whose process
/// is gone (no responders, at once) or that does not answer within [`PROBE_TIMEOUT`] is treated
/// as lost, without waiting for membership. A live worker busy with a long batch answers the
/// probe and is probed again after as long.
pub(super) const QUIET: Duration = Duration::from_millis(100);
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most batches cut in one write to the job record.
pub(super) const CUT_AHEAD: usize = 8;
/// Answered batches are counted in one write once this many wait, or every [`COUNT_EVERY`].
pub(super) const COUNT_GROUP: usize = 16;
/// How often answered batches are counted when fewer than [`COUNT_GROUP`] wait.
pub(super) const COUNT_EVERY: Duration = Duration::from_millis(100);

/// How often the dispatcher follows the records (and sooner when a job is submitted, but not
/// more often than every [`EARLIEST_REFRESH`]).
const REFRESH: Duration = Duration::from_millis(250);
const EARLIEST_REFRESH: Duration = Duration::from_millis(50);

/// Runs the dispatcher while this node holds the lease, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut st = State::default();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut refresh = tokio::time::interval(REFRESH);
    let mut refreshed = Instant::now();
    let mut counting = tokio::time::interval(COUNT_EVERY);
    let mut coordinator = ctx.coordinator.clone();
    // A submitted job is served at once rather than at the next tick (any other event, or
    // bytes that are no event, change nothing).
    let mut events = ctx.client.subscribe(subjects::job_events()).await.ok();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(msg) = next_event(&mut events) => {
                let event = bus_schemas::decode::<bus_schemas::jobs::JobEvent>(&msg.payload);
                let submitted = event.is_ok_and(|e| e.event == JobEventKind::Submitted);
                if submitted && refreshed.elapsed() >= EARLIEST_REFRESH {
                    refresh.reset_immediately();
                }
            }
            changed = coordinator.changed() => {
                if changed.is_err() {
                    return;
                }
                // Just became (or stopped being) the coordinator: act now, not at the tick.
                refresh.reset_immediately();
            }
            _ = counting.tick() => {
                for run in st.runs.values_mut() {
                    run.median_ms = median(&run.proc_ms);
                }
                let ids: Vec<String> = st.runs.keys().cloned().collect();
                let settling = Instant::now();
                for id in ids {
                    settle(&ctx, &mut st, &id).await;
                }
                if !st.runs.is_empty() {
                    ctx.metrics.stages.add(Stage::Coordinate, settling.elapsed());
                }
                probe_stragglers(&ctx, &mut st, &mut tasks);
            }
            _ = refresh.tick() => {
                refreshed = Instant::now();
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
                let answered = matches!(done, Done::Answered(..));
                let handling = Instant::now();
                handle(&ctx, &mut st, done).await;
                if answered {
                    ctx.metrics.stages.add(Stage::Coordinate, handling.elapsed());
                }
            }
        }
        fill(&ctx, &mut st, &mut tasks).await;
    }
}

/// The next message on the job events subject, if subscribed (never, otherwise).
async fn next_event(events: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures::StreamExt;
    match events {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
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
    st.members = losses::members(&view);
    st.hosts = view
        .iter()
        .map(|m| (m.id.clone(), m.host.clone()))
        .collect();
    st.abandon_lost();
    let now = Instant::now();
    for (id, run) in st.runs.iter_mut() {
        for (lost, what) in deaths::confirm(&mut run.lost, &st.members, now) {
            run.dead.insert(lost.batch.0); // still suspect until the record is read back
            deaths::record(ctx, id, &lost, &what).await;
        }
        deaths::release(run, now);
    }
    let live: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| !j.state.is_final() && matches!(j.spec, JobSpec::Serve(_)))
        .map(|j| j.id.as_str())
        .collect();
    let ended: Vec<String> = (st.runs.keys())
        .filter(|id| !live.contains(id.as_str()))
        .cloned()
        .collect();
    for id in ended {
        if let Some(run) = st.runs.remove(&id) {
            leave(ctx, &id, &run.joined);
        }
        st.forget_flights(&id);
    }
    st.divide(&pool);
    st.level_virtual_queries();
    let (runs, members) = (&mut st.runs, &st.members);
    for job in jobs.iter().filter(|j| live.contains(j.id.as_str())) {
        let run = match runs.get_mut(&job.id) {
            Some(run) => run,
            None => match start(ctx, job).await {
                Some(mut run) => {
                    // A new job starts level with the others, not owed their past.
                    let level = runs.values().map(|r| r.vq).fold(f64::INFINITY, f64::min);
                    run.vq = if level.is_finite() { level } else { 0.0 };
                    runs.entry(job.id.clone()).or_insert(run)
                }
                None => continue,
            },
        };
        run.joined.retain(|w| pool.contains(w));
        run.joining.retain(|w, g| {
            let same = |m: &losses::Seen| m.generation == *g && m.state != MemberState::Failed;
            members.get(w).is_some_and(same)
        });
        if let Some(s) = &job.serve {
            // Counted batches are no longer suspect; recorded deaths are.
            run.dead.retain(|b| s.pending.iter().any(|p| p.0 == *b));
            run.dead.extend(s.deaths.iter().map(|d| d.batch_id));
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
            .filter(|w| !run.joined.contains(*w) && !run.joining.contains_key(*w))
            .filter(|w| run.refused.get(*w).is_none_or(|t| t.elapsed() > JOIN_RETRY))
            .cloned()
            .collect();
        for worker in wanted {
            let generation = members.get(&worker).map_or(0, |m| m.generation);
            run.joining.insert(worker.clone(), generation);
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
                Done::Joined(id, worker, generation, reply)
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
        match started {
            Ok(Some(_)) => {
                ctx.event(
                    &job.id,
                    bus_schemas::jobs::JobEventKind::Started,
                    None,
                    None,
                )
                .await;
            }
            // No longer queued (cancelled, or marked running by a write whose answer was
            // lost), or the record could not be written (a server restarting): the next pass
            // reads the job again. Dispatching a job still queued would never count a batch.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(job = %job.id, "cannot mark the job running yet: {e:#}");
                return None;
            }
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
        joining: BTreeMap::new(),
        refused: BTreeMap::new(),
        refusal: None,
        in_flight: 0,
        resend: state.pending.iter().copied().collect(),
        lost: VecDeque::new(),
        dead: BTreeSet::new(),
        held: VecDeque::new(),
        uncounted: Vec::new(),
        exhausted: false,
        answered: VecDeque::new(),
        vq: 0.0,
        proc_ms: VecDeque::new(),
        median_ms: 0.0,
        saved: Instant::now(),
        finishing: None,
    })
}
