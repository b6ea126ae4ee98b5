//! Runs this worker's part of a data-parallel training attempt (`--workers N`): the training
//! thread ([`thread`]) and the exchange with the other members ([`idunno_dp::Exchange`],
//! driven here with the bus, the job record's group and the clock). Rank 0 also publishes
//! progress, stores the checkpoint of each epoch and, after the last step, the model.
//!
//! A member that finds another silent for [`Config::stall_after`] takes it out of the group
//! (the record changes by compare-and-swap, so one change per generation wins); members lost
//! from membership are taken out by the coordinator, and free workers join there too.

mod thread;

use super::train_run::{self, Msg, Reporter};
use super::{Ctx, JobError};
use crate::cluster::lease::now_ms;
use crate::ml::train::Samples;
use bus_schemas::dp::DpMessage;
use bus_schemas::jobs::{JobRecord, JobSpec, TrainSpec};
use bus_schemas::subjects;
use futures::StreamExt;
use idunno_dp::{Config, Exchange, In, Out};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thread::{Io, ToExchange, ToTrainer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the exchange looks at the clock.
const TICK: Duration = Duration::from_millis(100);

/// What an attempt reads before it trains.
struct Inputs {
    manifest: idunno_datasets::Manifest,
    train: idunno_datasets::Split,
    test: Option<idunno_datasets::Split>,
    checkpoint: Option<(String, Vec<u8>)>,
}

async fn load(ctx: &Ctx, job: &JobRecord, dataset: &str) -> Result<Inputs, JobError> {
    let manifest = ctx.cache.manifest(dataset).await?;
    let train = ctx.cache.split(dataset, &manifest, "train").await?;
    let test = match manifest.splits.contains_key("test") {
        true => Some(ctx.cache.split(dataset, &manifest, "test").await?),
        false => None,
    };
    let checkpoint = train_run::checkpoint(ctx, job).await?;
    Ok(Inputs {
        manifest,
        train,
        test,
        checkpoint,
    })
}

/// The training thread's other ends.
struct Ends {
    thread: tokio::task::JoinHandle<Result<(), JobError>>,
    to_trainer: std::sync::mpsc::Sender<ToTrainer>,
    from_trainer: mpsc::Receiver<ToExchange>,
    duties: mpsc::Receiver<Msg>,
}

/// Starts the training thread on the inputs; it stops when `halt` is set.
fn spawn_thread(
    ctx: &Ctx,
    job: &JobRecord,
    spec: &TrainSpec,
    inputs: Inputs,
    halt: Arc<AtomicBool>,
) -> Ends {
    let (to_trainer, rx) = std::sync::mpsc::channel();
    let (ex_tx, from_trainer) = mpsc::channel(16);
    let (duty_tx, duties) = mpsc::channel(16);
    let header = train_run::header(job, spec, &inputs.manifest);
    let (spec, device) = (spec.clone(), ctx.device);
    let Inputs {
        train,
        test,
        checkpoint,
        ..
    } = inputs;
    let thread = tokio::task::spawn_blocking(move || {
        let io = Io {
            rx,
            exchange: ex_tx,
            duties: duty_tx,
        };
        let work = || {
            let train = Samples::from_split(&train, spec.limit);
            let test = test.map(|t| Samples::from_split(&t, None));
            let (trainer, _) = train_run::new_trainer(&spec, header, device, train, checkpoint)?;
            thread::run(trainer, &spec, test, &io, &halt)
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(result) => result,
            Err(panic) => Err(JobError::Internal(train_run::panic_message(panic))),
        }
    });
    Ends {
        thread,
        to_trainer,
        from_trainer,
        duties,
    }
}

/// Runs this worker's part of attempt `attempt` of `job` until it ends or `stop` fires.
pub async fn run(
    ctx: &Arc<Ctx>,
    job: &JobRecord,
    attempt: u32,
    stop: CancellationToken,
) -> Result<(), JobError> {
    let JobSpec::Train(spec) = &job.spec else {
        return Err(JobError::Internal("not a training job".into()));
    };
    // Subscribed before anything is said, so no answer to this worker's hello is missed.
    let subject = subjects::dp_exchange(&job.id, &attempt.to_string());
    let sub = (ctx.client.subscribe(subject.clone()).await)
        .map_err(|e| JobError::storage("the exchange's subject", e))?;
    let started = Instant::now();
    let inputs = load(ctx, job, &spec.dataset).await?;
    let manifest = inputs.manifest.clone();
    let test_meta = (inputs.test.as_ref()).map(|t| (t.labels.clone(), t.files.clone()));
    let halt = Arc::new(AtomicBool::new(false));
    let ends = spawn_thread(ctx, job, spec, inputs, halt.clone());
    let mut shell = Shell {
        ctx,
        job,
        attempt,
        subject,
        ex: None,
        to_trainer: ends.to_trainer,
    };
    let exchange = shell.run(sub, ends.from_trainer, ends.thread, &stop);
    // Rank 0's duties run beside the exchange, which goes on while a checkpoint is stored.
    let rank0 = async {
        let (mut duties, mut reporter) = (ends.duties, Reporter::new(ctx, &job.id, attempt, spec));
        while let Some(d) = duties.recv().await {
            let done = duty(
                ctx,
                job,
                attempt,
                d,
                &mut reporter,
                &manifest,
                &test_meta,
                started,
            );
            if done.await? {
                return Ok(());
            }
        }
        std::future::pending().await
    };
    let result = tokio::select! {
        r = exchange => r,
        r = rank0 => r,
    };
    halt.store(true, Ordering::Relaxed);
    result
}

/// Does what rank 0's training thread asks; true once the job succeeded.
#[allow(clippy::too_many_arguments)]
async fn duty(
    ctx: &Ctx,
    job: &JobRecord,
    attempt: u32,
    d: Msg,
    reporter: &mut Reporter<'_>,
    manifest: &idunno_datasets::Manifest,
    test_meta: &train_run::TestMeta,
    started: Instant,
) -> Result<bool, JobError> {
    let owned = |r: Result<(), JobError>| match r {
        Err(JobError::Stopped) => Ok(()), // rank 0 is another worker now
        other => other,
    };
    match d {
        Msg::Resumed(epoch) => {
            reporter.resumed = epoch;
            owned(train_run::resumed(ctx, &job.id, attempt, epoch).await)?;
        }
        Msg::Step(r, stats) => owned(reporter.step(&r, &stats).await)?,
        Msg::Checkpoint(epochs, bytes) => {
            owned(train_run::store_checkpoint(ctx, &job.id, attempt, epochs, &bytes).await)?;
        }
        Msg::Done(done) => {
            let r = train_run::finish(ctx, job, attempt, *done, manifest, test_meta, started);
            owned(r.await)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The exchange with the bus and the trainer around it.
struct Shell<'a> {
    ctx: &'a Arc<Ctx>,
    job: &'a JobRecord,
    attempt: u32,
    subject: String,
    /// Made once the trainer says how long a contribution is.
    ex: Option<Exchange>,
    to_trainer: std::sync::mpsc::Sender<ToTrainer>,
}

impl Shell<'_> {
    /// Feeds the exchange until the attempt ends for this worker.
    async fn run(
        &mut self,
        mut sub: async_nats::Subscriber,
        mut from_trainer: mpsc::Receiver<ToExchange>,
        mut thread: tokio::task::JoinHandle<Result<(), JobError>>,
        stop: &CancellationToken,
    ) -> Result<(), JobError> {
        let mut tick = tokio::time::interval(TICK);
        let mut live = self.ctx.live.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Err(JobError::Stopped),
                msg = sub.next() => match msg {
                    Some(m) => match bus_schemas::decode::<DpMessage>(&m.payload) {
                        Ok(m) => self.feed(In::Message(m)).await,
                        Err(_) => self.ctx.metrics.garbage(),
                    },
                    None => return Err(JobError::Stopped),
                },
                m = from_trainer.recv() => match m {
                    Some(ToExchange::Ready(len)) => self.ready(len).await,
                    Some(ToExchange::Snapshot(s)) => self.feed(In::Snapshot(s)).await,
                    Some(ToExchange::Contribution { generation, step, values }) => {
                        self.feed(In::Contribution { generation, step, values }).await
                    }
                    None => {
                        let ended = (&mut thread).await;
                        return ended.map_err(|e| JobError::Internal(e.to_string()))?;
                    }
                },
                changed = live.changed() => {
                    if changed.is_err() {
                        return Err(JobError::Stopped);
                    }
                    self.group().await;
                }
                _ = tick.tick() => self.tick().await,
            }
            if self.left() {
                return Err(JobError::Stopped);
            }
        }
    }

    async fn ready(&mut self, grad_len: usize) {
        let max = self.ctx.client.server_info().max_payload;
        let cfg = Config {
            part_values: (bus_client::transfer::chunk_size(max) / 4) as usize,
            ..Config::default()
        };
        self.ex = Some(Exchange::new(&self.ctx.id, grad_len, cfg));
        self.group().await;
    }

    fn left(&self) -> bool {
        matches!(&self.ex, Some(ex) if ex.is_left())
    }

    /// Feeds the group of the job's record.
    async fn group(&mut self) {
        let group = {
            let live = self.ctx.live.borrow();
            let current = live.jobs.get(&self.job.id).and_then(JobRecord::current);
            current
                .filter(|a| a.attempt == self.attempt)
                .and_then(|a| a.group.as_ref())
                .map(|g| (g.generation, g.workers()))
        };
        if let Some((generation, members)) = group {
            self.feed(In::Group {
                generation,
                members,
            })
            .await;
        }
    }

    async fn feed(&mut self, input: In) {
        let Some(ex) = &mut self.ex else {
            return;
        };
        let outs = ex.handle(Instant::now(), input);
        self.carry_out(outs).await;
    }

    async fn tick(&mut self) {
        let Some(ex) = &mut self.ex else {
            return;
        };
        let outs = ex.tick(Instant::now());
        self.carry_out(outs).await;
    }

    async fn carry_out(&mut self, outs: Vec<Out>) {
        for out in outs {
            let to_trainer = match out {
                Out::Publish(m) => {
                    match bus_schemas::encode(&m) {
                        Ok(bytes) => {
                            let subject = self.subject.clone();
                            if let Err(e) = self.ctx.client.publish(subject, bytes.into()).await {
                                tracing::debug!(job = %self.job.id, "exchange publish: {e}");
                            }
                        }
                        Err(e) => tracing::error!("cannot encode an exchange message: {e}"),
                    }
                    continue;
                }
                Out::Regroup { generation } => ToTrainer::Regroup(generation),
                Out::Adopt { applied, state, .. } => ToTrainer::Adopt(applied, state),
                Out::Go {
                    generation,
                    rank,
                    workers,
                    step,
                } => {
                    tracing::info!(job = %self.job.id, generation, rank, workers, step, "data-parallel group goes on");
                    ToTrainer::Go {
                        generation,
                        rank,
                        workers,
                        step,
                    }
                }
                Out::Reduced {
                    generation,
                    step,
                    sum,
                    waited,
                } => ToTrainer::Reduced {
                    generation,
                    step,
                    sum,
                    waited,
                },
                Out::Stalled {
                    generation,
                    missing,
                    what,
                } => {
                    self.drop_stalled(generation, &missing, &what).await;
                    continue;
                }
                Out::Left => continue,
            };
            let _ = self.to_trainer.send(to_trainer);
        }
    }

    /// Takes members that sent nothing for too long out of the group (only while the group
    /// is still at `generation` and this worker in it).
    async fn drop_stalled(&self, generation: u32, missing: &[String], what: &str) {
        let (me, attempt) = (self.ctx.id.as_str(), self.attempt);
        let stall_after = self.ex.as_ref().map(|e| e.config().stall_after);
        let secs = stall_after
            .unwrap_or(Config::default().stall_after)
            .as_secs();
        let changed = self
            .ctx
            .store
            .modify(&self.job.id, |j| {
                let Some(a) = j.attempts.last_mut().filter(|a| a.attempt == attempt) else {
                    return false;
                };
                let Some(g) = a.group.as_mut().filter(|g| g.generation == generation) else {
                    return false;
                };
                if !g.has(me) {
                    return false;
                }
                for m in missing {
                    let reason = format!("{m} sent no {what} in {secs} s");
                    g.remove(m, reason, false, now_ms());
                }
                a.follow_group();
                true
            })
            .await;
        match changed {
            Ok(Some(_)) => tracing::warn!(job = %self.job.id, ?missing, "stalled members dropped"),
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %self.job.id, "cannot drop stalled members: {e}"),
        }
    }
}

/// Takes this worker out of attempt `attempt`'s group after its part failed with `e` (rank 0's
/// failure fails the job instead, as one worker's would).
pub async fn leave(ctx: &Ctx, job: &str, attempt: u32, e: &JobError) -> bool {
    let me = ctx.id.as_str();
    let left = ctx
        .store
        .modify(job, |j| {
            let Some(a) = j.attempts.last_mut().filter(|a| a.attempt == attempt) else {
                return false;
            };
            let Some(g) = a.group.as_mut() else {
                return false;
            };
            if g.members.first().is_none_or(|m| m.worker == me) {
                return false; // rank 0 (or gone): the job fails as it would on one worker
            }
            g.remove(me, format!("{me} failed: {e}"), false, now_ms());
            a.follow_group();
            true
        })
        .await;
    matches!(left, Ok(Some(_)))
}
