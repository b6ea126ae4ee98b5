//! Runs one attempt of a training job: fetches the dataset, resumes from the recorded
//! checkpoint if there is one, trains on a blocking thread while this task publishes progress,
//! stores a checkpoint after every epoch, and finally the model and its test accuracy.

use super::ending::{succeed, update, Owner};
use super::outputs::{self, checkpoint_file, model_file};
use super::{Ctx, JobError};
use crate::cluster::lease::now_ms;
use crate::ml::arch::Arch;
use crate::ml::history::{StepRecord, StepReport};
use crate::ml::model::Model;
use crate::ml::modelfile::{Header, Payload};
use crate::ml::train::{evaluate, Evaluation, Samples, Schedule, Trainer};
use bus_schemas::jobs::{JobOutcome, JobRecord, JobSpec, Progress, TrainSpec};
use bus_schemas::subjects;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the training thread tells the job's task.
pub(super) enum Msg {
    Resumed(u32),
    Step(StepReport, TrainStats),
    Checkpoint(u32, Vec<u8>),
    Done(Box<Done>),
}

/// A finished training: the model file, its evaluation, its header and every step.
pub(super) struct Done {
    pub bytes: Vec<u8>,
    pub eval: Option<Evaluation>,
    pub header: Header,
    pub history: Vec<StepRecord>,
}

/// Figures of a step beyond the epoch's: see [`Progress`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TrainStats {
    pub workers: u32,
    pub global_step: u64,
    pub steps_per_s: f64,
    pub allreduce_share: f64,
    pub group_generation: u32,
}

/// How often progress goes out on the bus, and into the job record.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_millis(500);
const RECORD_EVERY: Duration = Duration::from_secs(2);

/// Runs attempt `attempt` of `job` until it ends or `stop` fires.
pub async fn run(
    ctx: &Arc<Ctx>,
    job: &JobRecord,
    attempt: u32,
    stop: CancellationToken,
) -> Result<(), JobError> {
    let JobSpec::Train(spec) = &job.spec else {
        return Err(JobError::Internal("not a training job".into()));
    };
    let started = Instant::now();
    let manifest = ctx.cache.manifest(&spec.dataset).await?;
    let train = ctx.cache.split(&spec.dataset, &manifest, "train").await?;
    let test = match manifest.splits.contains_key("test") {
        true => Some(ctx.cache.split(&spec.dataset, &manifest, "test").await?),
        false => None,
    };
    // The test split's labels and source files, for the results file written at the end.
    let test_meta = test.as_ref().map(|t| (t.labels.clone(), t.files.clone()));
    let checkpoint = checkpoint(ctx, job).await?;
    let header = header(job, spec, &manifest);
    let (tx, mut rx) = mpsc::channel(8);
    let halt = Arc::new(AtomicBool::new(false));
    let (spec2, halt2, device) = (spec.clone(), halt.clone(), ctx.device);
    let mut thread = tokio::task::spawn_blocking(move || {
        let train = Samples::from_split(&train, spec2.limit);
        let test = test.map(|t| Samples::from_split(&t, None));
        let work = || train_blocking(&spec2, header, device, train, test, checkpoint, &tx, &halt2);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(result) => result,
            Err(panic) => Err(JobError::Internal(panic_message(panic))),
        }
    });
    let mut reporter = Reporter::new(ctx, &job.id, attempt, spec);
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => halt.store(true, Ordering::Relaxed),
            msg = rx.recv() => match msg {
                Some(Msg::Resumed(epoch)) => {
                    reporter.resumed = epoch;
                    resumed(ctx, &job.id, attempt, epoch).await?;
                }
                Some(Msg::Step(r, stats)) => reporter.step(&r, &stats).await?,
                Some(Msg::Checkpoint(epochs, bytes)) => {
                    store_checkpoint(ctx, &job.id, attempt, epochs, &bytes).await?;
                }
                Some(Msg::Done(done)) => {
                    finish(ctx, job, attempt, *done, &manifest, &test_meta, started).await?;
                }
                None => break (&mut thread).await.map_err(|e| JobError::Internal(e.to_string()))?,
            }
        }
    };
    if result.is_err() {
        halt.store(true, Ordering::Relaxed);
    }
    result
}

/// The checkpoint an attempt resumes from, if the job has one: what it is and its bytes.
pub(super) async fn checkpoint(
    ctx: &Ctx,
    job: &JobRecord,
) -> Result<Option<(String, Vec<u8>)>, JobError> {
    let Some(v) = job.checkpoint_version else {
        return Ok(None);
    };
    let name = checkpoint_file(&job.id);
    let bytes = ctx.cache.read(&name, Some(v)).await.map_err(|e| match e {
        // The store may come back: the worker tries again.
        e if e.is_transient() => e,
        e => JobError::BadInput(format!(
            "cannot resume job {}: checkpoint {name} v{v}: {e}",
            job.id
        )),
    })?;
    Ok(Some((format!("checkpoint {name} v{v}"), bytes)))
}

/// The header of the model a training job makes.
pub(super) fn header(
    job: &JobRecord,
    spec: &TrainSpec,
    manifest: &idunno_datasets::Manifest,
) -> Header {
    Header {
        payload: Payload::Weights,
        arch: spec.arch.clone(),
        dataset: spec.dataset.clone(),
        classes: manifest.classes.clone(),
        shape: manifest.shape,
        mean: manifest.mean.clone(),
        std: manifest.std.clone(),
        params: 0,
        epochs: spec.epochs,
        test_accuracy: None,
        job: Some(job.id.clone()),
        payload_sha256: String::new(),
    }
}

/// Records in the job that its attempt resumed at `epoch`.
pub(super) async fn resumed(ctx: &Ctx, id: &str, attempt: u32, epoch: u32) -> Result<(), JobError> {
    update(ctx, id, Owner::Attempt(attempt), |j| {
        if let Some(a) = j.attempts.last_mut() {
            a.resumed_at_epoch = Some(epoch);
        }
    })
    .await
    .map(|_| ())
}

/// Stores a checkpoint in SDFS and records its version in the job.
pub(super) async fn store_checkpoint(
    ctx: &Ctx,
    id: &str,
    attempt: u32,
    epochs: u32,
    bytes: &[u8],
) -> Result<(), JobError> {
    let v = outputs::put_bytes(ctx, &checkpoint_file(id), bytes, BTreeMap::new()).await?;
    update(ctx, id, Owner::Attempt(attempt), |j| {
        j.checkpoint_epochs = epochs;
        j.checkpoint_version = Some(v);
    })
    .await?;
    tracing::info!(job = %id, epochs, version = v, "checkpoint stored");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train_blocking(
    spec: &TrainSpec,
    header: Header,
    device: tch::Device,
    train: Samples,
    test: Option<Samples>,
    checkpoint: Option<(String, Vec<u8>)>,
    tx: &mpsc::Sender<Msg>,
    halt: &AtomicBool,
) -> Result<(), JobError> {
    let (mut trainer, start) = new_trainer(spec, header, device, train, checkpoint)?;
    let send = |m: Msg| tx.blocking_send(m).map_err(|_| JobError::Stopped);
    send(Msg::Resumed(start))?;
    let mut rate = StepRate::new();
    for epoch in start..spec.epochs {
        let report = trainer
            .run_epoch(epoch, &mut |r| {
                rate.step(Duration::ZERO);
                if rate.due() || r.step == r.steps {
                    let global = u64::from(r.epoch) * r.steps + r.step;
                    let _ = tx.try_send(Msg::Step(r.clone(), rate.stats(1, global, 0)));
                }
                !halt.load(Ordering::Relaxed)
            })
            .map_err(|_| JobError::Stopped)?;
        let global = u64::from(epoch + 1) * report.steps;
        send(Msg::Step(report, rate.stats(1, global, 0)))?;
        if epoch + 1 < spec.epochs {
            send(Msg::Checkpoint(epoch + 1, trainer.checkpoint(epoch + 1)))?;
        }
    }
    send(Msg::Done(Box::new(done(
        &mut trainer,
        spec,
        test.as_ref(),
    )?)))
}

/// A trainer for `spec`, resumed from `checkpoint` if given: it and the epochs done.
pub(super) fn new_trainer(
    spec: &TrainSpec,
    header: Header,
    device: tch::Device,
    train: Samples,
    checkpoint: Option<(String, Vec<u8>)>,
) -> Result<(Trainer, u32), JobError> {
    let arch = Arch::parse(&spec.arch)
        .ok_or_else(|| JobError::UnknownModel(format!("unknown model {:?}", spec.arch)))?;
    tch::manual_seed(spec.seed as i64);
    Model::check_builtin_size(arch, &header)?;
    let model = Model::builtin(arch, header, device);
    let schedule = Schedule {
        epochs: spec.epochs,
        batch: spec.batch as usize,
        lr: spec.lr.unwrap_or(arch.default_lr()),
        seed: spec.seed,
    };
    let mut trainer = Trainer::new(model, train, schedule)?;
    let mut start = 0;
    if let Some((what, bytes)) = checkpoint {
        start = trainer
            .restore(&what, &bytes)
            .map_err(|e| JobError::BadInput(format!("cannot resume: {e}")))?;
    }
    Ok((trainer, start))
}

/// The trained model evaluated on the test split, as a file.
pub(super) fn done(
    trainer: &mut Trainer,
    spec: &TrainSpec,
    test: Option<&Samples>,
) -> Result<Done, JobError> {
    let eval = match test {
        Some(samples) => Some(evaluate(&trainer.model, samples, 512)?),
        None => None,
    };
    let mut header = trainer.model.header.clone();
    header.epochs = spec.epochs;
    header.test_accuracy = eval.as_ref().and_then(Evaluation::accuracy);
    trainer.model.header = header.clone();
    Ok(Done {
        bytes: trainer.model.to_file(None),
        eval,
        header,
        history: trainer.history.clone(),
    })
}

/// Steps per second and the all-reduce's share of the time, over the last stretch of
/// [`PUBLISH_EVERY`] or more.
pub(super) struct StepRate {
    since: Instant,
    steps: u64,
    waited: Duration,
    rate: f64,
    share: f64,
}

impl StepRate {
    pub fn new() -> StepRate {
        StepRate {
            since: Instant::now(),
            steps: 0,
            waited: Duration::ZERO,
            rate: 0.0,
            share: 0.0,
        }
    }

    /// Counts a step that waited `waited` for the all-reduce.
    pub fn step(&mut self, waited: Duration) {
        self.steps += 1;
        self.waited += waited;
        let took = self.since.elapsed();
        if took >= PUBLISH_EVERY {
            self.rate = self.steps as f64 / took.as_secs_f64();
            self.share = (self.waited.as_secs_f64() / took.as_secs_f64()).min(1.0);
            *self = StepRate {
                since: Instant::now(),
                steps: 0,
                waited: Duration::ZERO,
                ..*self
            };
        }
    }

    /// Whether new figures came since the last call.
    pub fn due(&self) -> bool {
        self.steps == 0
    }

    /// The figures for `workers` workers at step `global` of group generation `generation`.
    pub fn stats(&self, workers: u32, global: u64, generation: u32) -> TrainStats {
        TrainStats {
            workers,
            global_step: global,
            steps_per_s: self.rate,
            allreduce_share: self.share,
            group_generation: generation,
        }
    }
}

/// The test split's labels and source file names.
pub(super) type TestMeta = Option<(Option<Vec<i64>>, Option<Vec<String>>)>;

/// Stores the trained model, its test results and its steps, and ends the job.
pub(super) async fn finish(
    ctx: &Ctx,
    job: &JobRecord,
    attempt: u32,
    done: Done,
    manifest: &idunno_datasets::Manifest,
    test: &TestMeta,
    started: Instant,
) -> Result<(), JobError> {
    let Done {
        bytes,
        eval,
        header,
        history,
    } = done;
    let header = &header;
    let name = model_file(job.spec.model());
    let version = outputs::put_bytes(ctx, &name, &bytes, outputs::model_attrs(header)).await?;
    let steps_file = outputs::write_steps(ctx, &job.id, &history, &job.spec).await?;
    let results_file = match (&eval, test) {
        (Some(eval), Some((labels, files))) => {
            let file = outputs::write_results(
                ctx,
                &job.id,
                eval,
                &manifest.classes,
                labels.as_deref(),
                files.as_deref(),
            )
            .await?;
            Some(file)
        }
        _ => None,
    };
    let seconds = (now_ms().saturating_sub(
        job.attempts
            .first()
            .map_or(job.submitted_ms, |a| a.assigned_ms),
    )) as f64
        / 1000.0;
    let outcome = JobOutcome {
        model_file: name.clone(),
        model_version: version,
        test_accuracy: header.test_accuracy,
        results_file,
        seconds: seconds.max(started.elapsed().as_secs_f64()),
        steps_file: Some(steps_file),
    };
    succeed(ctx, &job.id, Owner::Attempt(attempt), outcome, "test").await?;
    let _ = ctx.cache.sdfs().delete(&checkpoint_file(&job.id)).await;
    Ok(())
}

/// Publishes progress on the bus and, less often, into the job record.
pub(super) struct Reporter<'a> {
    ctx: &'a Ctx,
    job: &'a str,
    attempt: u32,
    epochs: u32,
    pub resumed: u32,
    recorded: Option<Instant>,
}

impl<'a> Reporter<'a> {
    pub fn new(ctx: &'a Ctx, job: &'a str, attempt: u32, spec: &TrainSpec) -> Self {
        Self {
            ctx,
            job,
            attempt,
            epochs: spec.epochs,
            resumed: 0,
            recorded: None,
        }
    }

    pub async fn step(&mut self, r: &StepReport, stats: &TrainStats) -> Result<(), JobError> {
        let p = Progress {
            job_id: self.job.into(),
            worker: self.ctx.id.clone(),
            attempt: self.attempt,
            epoch: r.epoch,
            epochs: self.epochs,
            step: r.step,
            steps: r.steps,
            loss: r.loss,
            accuracy: r.accuracy,
            images_per_s: r.images_per_s,
            resumed_at_epoch: self.resumed,
            workers: stats.workers,
            global_step: stats.global_step,
            steps_per_s: stats.steps_per_s,
            allreduce_share: stats.allreduce_share,
            group_generation: stats.group_generation,
            ..Default::default()
        };
        let _ = bus_client::publish(&self.ctx.client, subjects::job_progress(self.job), &p).await;
        if self.recorded.is_none_or(|t| t.elapsed() >= RECORD_EVERY) || r.step == r.steps {
            self.recorded = Some(Instant::now());
            update(self.ctx, self.job, Owner::Attempt(self.attempt), |j| {
                j.progress = Some(p.clone())
            })
            .await?;
        }
        Ok(())
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into());
    text.lines().next().unwrap_or("").to_string()
}
