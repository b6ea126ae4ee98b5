//! Runs one attempt of a training job: fetches the dataset, resumes from the recorded
//! checkpoint if there is one, trains on a blocking thread while this task publishes progress,
//! stores a checkpoint after every epoch, and finally the model and its test accuracy.

use super::ending::{succeed, update, Owner};
use super::outputs::{self, checkpoint_file, model_file};
use super::{Ctx, JobError};
use crate::cluster::lease::now_ms;
use crate::ml::arch::Arch;
use crate::ml::model::Model;
use crate::ml::modelfile::{Header, Payload};
use crate::ml::train::{evaluate, Evaluation, Samples, Schedule, StepReport, Trainer};
use bus_schemas::jobs::{JobOutcome, JobRecord, JobSpec, Progress, TrainSpec};
use bus_schemas::subjects;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the training thread tells the job's task.
enum Msg {
    Resumed(u32),
    Step(StepReport),
    Checkpoint(u32, Vec<u8>),
    Done(Box<(Vec<u8>, Option<Evaluation>, Header)>),
}

/// How often progress goes out on the bus, and into the job record.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
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
                Some(Msg::Step(r)) => reporter.step(&r).await?,
                Some(Msg::Checkpoint(epochs, bytes)) => {
                    store_checkpoint(ctx, &job.id, attempt, epochs, &bytes).await?;
                }
                Some(Msg::Done(done)) => {
                    let (bytes, eval, header) = *done;
                    finish(ctx, job, attempt, &bytes, eval, &header, &manifest, &test_meta, started).await?;
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
async fn checkpoint(ctx: &Ctx, job: &JobRecord) -> Result<Option<(String, Vec<u8>)>, JobError> {
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
fn header(job: &JobRecord, spec: &TrainSpec, manifest: &idunno_datasets::Manifest) -> Header {
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
async fn resumed(ctx: &Ctx, id: &str, attempt: u32, epoch: u32) -> Result<(), JobError> {
    update(ctx, id, Owner::Attempt(attempt), |j| {
        if let Some(a) = j.attempts.last_mut() {
            a.resumed_at_epoch = Some(epoch);
        }
    })
    .await
    .map(|_| ())
}

/// Stores a checkpoint in SDFS and records its version in the job.
async fn store_checkpoint(
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
    let send = |m: Msg| tx.blocking_send(m).map_err(|_| JobError::Stopped);
    send(Msg::Resumed(start))?;
    let mut last = Instant::now();
    for epoch in start..spec.epochs {
        let report = trainer
            .run_epoch(epoch, &mut |r| {
                if last.elapsed() >= PUBLISH_EVERY || r.step == r.steps {
                    last = Instant::now();
                    let _ = tx.try_send(Msg::Step(r.clone()));
                }
                !halt.load(Ordering::Relaxed)
            })
            .map_err(|_| JobError::Stopped)?;
        send(Msg::Step(report))?;
        if epoch + 1 < spec.epochs {
            send(Msg::Checkpoint(epoch + 1, trainer.checkpoint(epoch + 1)))?;
        }
    }
    let eval = match &test {
        Some(samples) => Some(evaluate(&trainer.model, samples, 512)?),
        None => None,
    };
    let mut header = trainer.model.header.clone();
    header.epochs = spec.epochs;
    header.test_accuracy = eval.as_ref().and_then(Evaluation::accuracy);
    trainer.model.header = header.clone();
    send(Msg::Done(Box::new((
        trainer.model.to_file(None),
        eval,
        header,
    ))))
}

/// The test split's labels and source file names.
type TestMeta = Option<(Option<Vec<i64>>, Option<Vec<String>>)>;

#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Ctx,
    job: &JobRecord,
    attempt: u32,
    bytes: &[u8],
    eval: Option<Evaluation>,
    header: &Header,
    manifest: &idunno_datasets::Manifest,
    test: &TestMeta,
    started: Instant,
) -> Result<(), JobError> {
    let name = model_file(job.spec.model());
    let version = outputs::put_bytes(ctx, &name, bytes, outputs::model_attrs(header)).await?;
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
    };
    succeed(ctx, &job.id, Owner::Attempt(attempt), outcome, "test").await?;
    let _ = ctx.cache.sdfs().delete(&checkpoint_file(&job.id)).await;
    Ok(())
}

/// Publishes progress on the bus and, less often, into the job record.
struct Reporter<'a> {
    ctx: &'a Ctx,
    job: &'a str,
    attempt: u32,
    epochs: u32,
    resumed: u32,
    recorded: Option<Instant>,
}

impl<'a> Reporter<'a> {
    fn new(ctx: &'a Ctx, job: &'a str, attempt: u32, spec: &TrainSpec) -> Self {
        Self {
            ctx,
            job,
            attempt,
            epochs: spec.epochs,
            resumed: 0,
            recorded: None,
        }
    }

    async fn step(&mut self, r: &StepReport) -> Result<(), JobError> {
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
