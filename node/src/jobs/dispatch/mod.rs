//! The async shell of the coordinator's dispatcher of inference jobs. The decisions (fair
//! time, `qps local`, stragglers, lost workers, counting each batch once) are
//! [`idunno_scheduler::Dispatcher`]'s, a sans-IO core; this shell feeds it the records, the
//! view, the policy, replies and clock ticks, and performs its actions: record writes inline (a
//! cut's batches or a count's outcome go straight back to the core), requests to workers as
//! tasks whose answers come back as replies, leaving and finishing as background tasks. Every
//! task belongs to the shell, which stops and awaits them when it ends.

mod perform;

use super::Ctx;
use idunno_scheduler::dispatcher::{Config, Reply};
use idunno_scheduler::{Action, Dispatcher};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long leaving and finishing tasks may take to stop when the dispatcher ends.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Runs the dispatcher while this node holds the lease, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let cfg = Config::default();
    let mut refresh = tokio::time::interval(cfg.refresh);
    let mut ticks = tokio::time::interval(cfg.count_every);
    let mut refreshed = Instant::now();
    let earliest = cfg.earliest_refresh;
    let mut shell = Shell::new(ctx.clone(), cfg, shutdown.child_token());
    let mut coordinator = ctx.coordinator.clone();
    // A job the index has not held before is served at once rather than at the next refresh
    // (at most one refresh every `earliest`); other changes wait for it.
    let mut live = ctx.live.clone();
    let mut known = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = live.changed() => {
                if changed.is_err() {
                    break;
                }
                if new_jobs(&mut live, &mut known) {
                    refresh.reset_at((refreshed + earliest).into());
                }
            }
            changed = coordinator.changed() => {
                if changed.is_err() {
                    break;
                }
                // Just became (or stopped being) the coordinator: act now, not at the tick.
                refresh.reset_immediately();
            }
            _ = ticks.tick() => shell.tick().await,
            _ = refresh.tick() => {
                refreshed = Instant::now();
                shell.refresh().await;
            }
            Some(done) = shell.requests.join_next(), if !shell.requests.is_empty() => {
                if let Ok(reply) = done {
                    shell.reply(reply).await;
                }
            }
        }
    }
    shell.stop().await;
}

/// Whether the live jobs hold a job that is not in `known`; `known` becomes their ids.
fn new_jobs(live: &mut crate::jobs::index::LiveJobs, known: &mut BTreeSet<String>) -> bool {
    let live = live.borrow_and_update();
    let fresh = live.jobs.keys().any(|id| !known.contains(id));
    if fresh || known.len() != live.jobs.len() {
        *known = live.jobs.keys().cloned().collect();
    }
    fresh
}

/// The dispatcher's core and the tasks performing its actions.
struct Shell {
    ctx: Arc<Ctx>,
    core: Dispatcher,
    /// Requests to workers (joins, batches, probes), answered as replies.
    requests: JoinSet<Reply>,
    /// Workers told to leave, jobs being finished.
    background: TaskTracker,
    stop: CancellationToken,
}

impl Shell {
    fn new(ctx: Arc<Ctx>, cfg: Config, stop: CancellationToken) -> Self {
        Shell {
            core: Dispatcher::new(&ctx.id, cfg),
            ctx,
            requests: JoinSet::new(),
            background: TaskTracker::new(),
            stop,
        }
    }

    /// Reads the policy, the view and the records into the core (while coordinating).
    async fn refresh(&mut self) {
        let me = self.ctx.coordinator.borrow().me;
        if !me {
            if self.core.coordinating() {
                self.requests.abort_all();
            }
            self.core.set_coordinating(false);
            return;
        }
        self.core.set_coordinating(true);
        match self.ctx.settings.get().await {
            Ok(settings) => self.core.set_policy(settings.qps),
            Err(e) => tracing::debug!("cannot read the settings, keeping the policy: {e:#}"),
        }
        match self.ctx.snapshot().await {
            Ok((view, jobs)) => {
                self.core.set_view(view);
                self.core.replace_jobs(&jobs);
            }
            Err(e) => tracing::debug!("dispatcher: {e:#}"),
        }
        self.tick().await;
    }

    async fn tick(&mut self) {
        let actions = self.core.tick(Instant::now());
        self.perform(actions).await;
    }

    async fn reply(&mut self, reply: Reply) {
        let answered = matches!(reply, Reply::Work { .. });
        let handling = Instant::now();
        let actions = self.core.reply(reply, Instant::now());
        if answered {
            let took = handling.elapsed();
            self.ctx
                .metrics
                .stages
                .add(crate::stages::Stage::Coordinate, took);
        }
        self.perform(actions).await;
    }

    /// Performs the core's actions, feeding the outcome of each record write straight back.
    async fn perform(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if let Some(reply) = self.act(action).await {
                queue.extend(self.core.reply(reply, Instant::now()));
            }
        }
    }

    /// Performs one action; a record write's outcome is returned, a request's comes later.
    async fn act(&mut self, action: Action) -> Option<Reply> {
        let ctx = &self.ctx;
        match action {
            Action::Start { job } => Some(perform::start(ctx, job).await),
            Action::Cut { job, n } => Some(perform::cut(ctx, job, n).await),
            Action::Count { job, answered } => {
                let counting = Instant::now();
                let reply = perform::count(ctx, job, answered).await;
                let took = counting.elapsed();
                ctx.metrics
                    .stages
                    .add(crate::stages::Stage::Coordinate, took);
                Some(reply)
            }
            Action::Save {
                job,
                workers,
                rate,
                proc_ms,
            } => {
                perform::save(ctx, &job, workers, rate, proc_ms).await;
                None
            }
            Action::RecordDeath {
                job,
                batch,
                worker,
                what,
            } => {
                perform::record_death(ctx, &job, batch, &worker, &what).await;
                None
            }
            Action::Fail { job, reason } => {
                super::ending::fail(ctx, &job, super::ending::Owner::Coordinator, reason).await;
                None
            }
            task => {
                self.spawn(task);
                None
            }
        }
    }

    /// Starts an action performed as a task: a request to a worker, leaving, finishing.
    fn spawn(&mut self, action: Action) {
        let (ctx, stop) = (self.ctx.clone(), self.stop.clone());
        let client = ctx.client.clone();
        match action {
            Action::Join {
                job,
                worker,
                generation,
                target,
            } => {
                let join = perform::join(client, job, worker, generation, target);
                self.requests.spawn(join);
            }
            Action::Send {
                flight,
                job,
                worker,
                batch,
                again,
                deadline,
            } => {
                let work = perform::Work {
                    flight,
                    job,
                    worker,
                    batch,
                    again,
                };
                self.requests.spawn(perform::send(client, work, deadline));
            }
            Action::Probe { worker } => {
                self.requests.spawn(perform::probe(client, worker));
            }
            Action::Leave { job, workers } => {
                let leave = perform::leave(ctx, job, workers);
                self.background.spawn(stop.run_until_cancelled_owned(leave));
            }
            Action::Finish { job, workers } => {
                let finish = async move {
                    super::serve_finish::finish(&ctx, &job).await;
                    perform::leave(ctx, job, workers).await;
                };
                self.background
                    .spawn(stop.run_until_cancelled_owned(finish));
            }
            other => tracing::error!(?other, "not an action performed as a task"),
        }
    }

    /// Stops the requests and awaits the background tasks (at most [`STOP_WITHIN`]).
    async fn stop(mut self) {
        self.requests.shutdown().await;
        self.stop.cancel();
        self.background.close();
        if tokio::time::timeout(STOP_WITHIN, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("the dispatcher's background tasks did not stop in time");
        }
    }
}
