//! `idunno.v1.jobs.rpc.<op>`: submit, list, get and cancel, answered by any node (queue group).
//! Submissions are checked here (architecture, dataset, arguments) so a bad job is refused at
//! once with a clear reason instead of failing later on a worker.

use super::index::IndexError;
use super::{Ctx, JobError};
use crate::cluster::lease::now_ms;
use crate::ml::arch::{Arch, ARCH_NAMES};
use bus_schemas::jobs::{
    ImportSpec, JobEventKind, JobRecord, JobSpec, JobState, JobsErrorKind, JobsFilter, JobsReply,
    JobsRequest, TrainSpec, DEFAULT_OUTPUTS, MAX_OUTPUTS, MAX_PAGE, MAX_TRAIN_WORKERS,
};
use bus_schemas::serve::{QueryResult, ResultsBatch};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use idunno_datasets::Manifest;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Answers requests until `shutdown`.
pub async fn serve(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let queue = Some(subjects::JOBS_QUEUE);
    let subscribed = crate::subscribe::retrying(
        &ctx.client,
        subjects::jobs_rpc_all(),
        queue,
        "the jobs API",
        &shutdown,
    );
    let Some(mut sub) = subscribed.await else {
        return;
    };
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(msg) = sub.next() => {
                while running.len() >= 16 {
                    running.join_next().await;
                }
                let ctx = ctx.clone();
                running.spawn(async move {
                    let reply = match decode::<JobsRequest>(&msg.payload) {
                        Ok(req) => match subjects::check_op(&msg.subject, req.op(), subjects::jobs_rpc) {
                            Ok(()) => handle(&ctx, req).await,
                            Err(why) => {
                                ctx.metrics.garbage();
                                tracing::warn!("dropped a jobs request: {why}");
                                error(JobsErrorKind::BadRequest, why)
                            }
                        },
                        Err(e) => {
                            ctx.metrics.garbage();
                            tracing::warn!(subject = %msg.subject, "garbage dropped: {e}");
                            error(JobsErrorKind::BadRequest, e.to_string())
                        }
                    };
                    if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                        let _ = ctx.client.publish(to, bytes.into()).await;
                    }
                });
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

fn error(kind: JobsErrorKind, message: String) -> JobsReply {
    JobsReply::Error { kind, message }
}

fn refuse(e: JobError) -> JobsReply {
    let kind = match &e {
        JobError::UnknownModel(_) => JobsErrorKind::UnknownModel,
        JobError::UnknownDataset(_) => JobsErrorKind::UnknownDataset,
        JobError::NotFound(_) => JobsErrorKind::NotFound,
        JobError::BadInput(_) => JobsErrorKind::BadArgument,
        _ => JobsErrorKind::Internal,
    };
    error(kind, e.to_string())
}

async fn handle(ctx: &Ctx, req: JobsRequest) -> JobsReply {
    match req {
        JobsRequest::Submit { spec } => match submit(ctx, spec).await {
            Ok(id) => JobsReply::Submitted { id },
            Err(e) => refuse(e),
        },
        JobsRequest::List {
            which,
            limit,
            after,
        } => list(ctx, which, limit, after).await,
        JobsRequest::Get { id } => match ctx.store.get(&id).await {
            Ok(Some((job, _))) => JobsReply::Job { job: Box::new(job) },
            Ok(None) => error(JobsErrorKind::NotFound, format!("no job {id:?}")),
            Err(e) => error(JobsErrorKind::Internal, format!("{e:#}")),
        },
        JobsRequest::Outputs { id, limit } => outputs(ctx, &id, limit).await,
        JobsRequest::Cancel { id } => cancel(ctx, &id).await,
        JobsRequest::Batch { id, size } => batch(ctx, &id, size).await,
        JobsRequest::Qps { policy } => {
            let settings = match policy {
                Some(p) => ctx.settings.set_qps(p).await,
                None => ctx.settings.get().await,
            };
            match settings {
                Ok(s) => JobsReply::Qps { policy: s.qps },
                Err(e) => error(JobsErrorKind::Internal, format!("{e:#}")),
            }
        }
        req @ (JobsRequest::Routes { .. }
        | JobsRequest::Alias { .. }
        | JobsRequest::Rollout { .. }
        | JobsRequest::Promote { .. }
        | JobsRequest::Rollback { .. }) => super::routes_api::handle(ctx, req).await,
    }
}

/// A job and its newest outputs: the last results message of its subject in the results
/// stream (public subjects; the stream is read here because clients' roles cannot read
/// JetStream).
async fn outputs(ctx: &Ctx, id: &str, limit: Option<u32>) -> JobsReply {
    let job = match ctx.store.get(id).await {
        Ok(Some((job, _))) => job,
        Ok(None) => return error(JobsErrorKind::NotFound, format!("no job {id:?}")),
        Err(e) => return error(JobsErrorKind::Internal, format!("{e:#}")),
    };
    let limit = limit.unwrap_or(DEFAULT_OUTPUTS).clamp(1, MAX_OUTPUTS) as usize;
    let outputs = match &job.serve {
        Some(_) => newest_outputs(ctx, id, limit).await,
        None => Vec::new(),
    };
    JobsReply::Outputs {
        job: Box::new(job),
        outputs,
    }
}

/// The last `limit` results of the last batch of job `id` in the results stream (none when
/// the stream or the job's subject holds nothing yet).
async fn newest_outputs(ctx: &Ctx, id: &str, limit: usize) -> Vec<QueryResult> {
    let js = async_nats::jetstream::new(ctx.client.clone());
    let Ok(stream) = js.get_stream(subjects::RESULTS_STREAM).await else {
        return Vec::new();
    };
    let subject = subjects::job_results(id);
    let Ok(msg) = stream.get_last_raw_message_by_subject(&subject).await else {
        return Vec::new();
    };
    match decode::<ResultsBatch>(&msg.payload) {
        Ok(batch) => {
            let skip = batch.results.len().saturating_sub(limit);
            batch.results.into_iter().skip(skip).collect()
        }
        Err(e) => {
            tracing::warn!(job = %id, "undecodable results message: {e}");
            Vec::new()
        }
    }
}

/// A page of jobs from the job index.
async fn list(
    ctx: &Ctx,
    which: JobsFilter,
    limit: Option<u32>,
    after: Option<String>,
) -> JobsReply {
    let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
    match ctx.index.page(which, limit, after).await {
        Ok(page) => JobsReply::Jobs {
            jobs: page.jobs,
            next: page.next,
        },
        Err(e @ IndexError::BadCursor(_)) => error(JobsErrorKind::BadArgument, e.to_string()),
        Err(e) => error(JobsErrorKind::Internal, e.to_string()),
    }
}

async fn cancel(ctx: &Ctx, id: &str) -> JobsReply {
    let mut ended = None;
    let changed = ctx
        .store
        .modify(id, |job| {
            if job.state.is_final() {
                ended = Some(job.state);
                return false;
            }
            job.state = JobState::Cancelled;
            job.finished_ms = Some(now_ms());
            job.error = Some("cancelled on request".into());
            true
        })
        .await;
    match changed {
        Ok(Some(job)) => {
            ctx.event(id, JobEventKind::Cancelled, None, None).await;
            JobsReply::Job { job: Box::new(job) }
        }
        Ok(None) => match ended {
            Some(state) => error(
                JobsErrorKind::AlreadyEnded,
                format!("job {id} has already ended ({state:?})"),
            ),
            None => error(JobsErrorKind::NotFound, format!("no job {id:?}")),
        },
        Err(e) => error(JobsErrorKind::Internal, format!("{e:#}")),
    }
}

async fn batch(ctx: &Ctx, id: &str, size: u32) -> JobsReply {
    let max = super::serve_check::MAX_BATCH;
    if !(1..=max).contains(&size) {
        return error(
            JobsErrorKind::BadArgument,
            format!("the batch size must be between 1 and {max}, not {size}"),
        );
    }
    let mut why = None;
    let changed = ctx
        .store
        .modify(id, |job| {
            why = None;
            match job.serve.as_mut() {
                Some(s) if !job.state.is_final() => {
                    s.batch = size;
                    true
                }
                Some(_) => {
                    why = Some((
                        JobsErrorKind::AlreadyEnded,
                        format!("job {id} has already ended"),
                    ));
                    false
                }
                None => {
                    why = Some((
                        JobsErrorKind::BadArgument,
                        format!("job {id} is not an inference job"),
                    ));
                    false
                }
            }
        })
        .await;
    match changed {
        Ok(Some(job)) => JobsReply::Job { job: Box::new(job) },
        Ok(None) => {
            let (kind, message) =
                why.unwrap_or((JobsErrorKind::NotFound, format!("no job {id:?}")));
            error(kind, message)
        }
        Err(e) => error(JobsErrorKind::Internal, format!("{e:#}")),
    }
}

/// Checks a model name: one path segment usable in SDFS as `models/<name>`.
fn check_model_name(name: &str) -> Result<(), JobError> {
    bus_schemas::validate_token(name)
        .map_err(|e| JobError::BadInput(format!("bad model name {name:?}: {e}")))
}

async fn submit(ctx: &Ctx, mut spec: JobSpec) -> Result<String, JobError> {
    check_model_name(spec.model())?;
    let mut serve = None;
    if let JobSpec::Serve(s) = &mut spec {
        serve = Some(super::serve_check::check(ctx, s).await?);
    }
    bus_schemas::validate_token(spec.dataset()).map_err(|e| {
        JobError::UnknownDataset(format!("bad dataset name {:?}: {e}", spec.dataset()))
    })?;
    let manifest = ctx.cache.manifest(spec.dataset()).await?;
    match &spec {
        JobSpec::Train(t) => check_train(t, &manifest)?,
        JobSpec::Serve(_) => {}
        JobSpec::Import(i) => check_import(ctx, i, &manifest).await?,
    }
    let id = format!("{}-{:08x}", spec.kind(), rand::random::<u32>());
    let job = JobRecord::queued(id.clone(), spec, now_ms(), serve);
    ctx.store
        .create(&job)
        .await
        .map_err(|e| JobError::Internal(format!("{e:#}")))?;
    ctx.event(&id, JobEventKind::Submitted, None, None).await;
    Ok(id)
}

/// Checks a training job's architecture and arguments, and that its dataset can be trained on.
fn check_train(t: &TrainSpec, manifest: &Manifest) -> Result<(), JobError> {
    if Arch::parse(&t.arch).is_none() {
        return Err(JobError::UnknownModel(format!(
            "unknown model {:?}: the architectures that train are {}",
            t.arch,
            ARCH_NAMES.join(", ")
        )));
    }
    let bad = |m: String| Err(JobError::BadInput(m));
    if !(1..=10_000).contains(&t.epochs) {
        return bad(format!(
            "--epochs must be between 1 and 10000, not {}",
            t.epochs
        ));
    }
    if !(1..=65_536).contains(&t.batch) {
        return bad(format!(
            "--batch must be between 1 and 65536, not {}",
            t.batch
        ));
    }
    if let Some(lr) =
        t.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0 && *lr <= 10.0))
    {
        return bad(format!("--lr must be in (0, 10], not {lr}"));
    }
    if t.limit == Some(0) {
        return bad("--limit must be at least 1".into());
    }
    if !(1..=MAX_TRAIN_WORKERS).contains(&t.workers) {
        return bad(format!(
            "--workers must be between 1 and {MAX_TRAIN_WORKERS}, not {}",
            t.workers
        ));
    }
    if t.workers > t.batch {
        return bad(format!(
            "--workers {} is more than the batch of {}: each worker needs a share of every step",
            t.workers, t.batch
        ));
    }
    if !manifest.labelled() || !manifest.splits.contains_key("train") {
        return bad(format!(
            "dataset {:?} has no labelled train split, so it cannot be trained on (it can be served)",
            t.dataset
        ));
    }
    Ok(())
}

/// Checks an import job: its upload exists, and its normalisation fits the dataset.
async fn check_import(ctx: &Ctx, i: &ImportSpec, manifest: &Manifest) -> Result<(), JobError> {
    ctx.cache
        .sdfs()
        .locate(&i.upload, None)
        .await
        .map_err(|e| JobError::from_sdfs(&i.upload, e))?;
    let c = manifest.shape[0] as usize;
    for (flag, v) in [("--mean", &i.mean), ("--std", &i.std)] {
        if !(v.is_empty() || v.len() == 1 || v.len() == c) {
            return Err(JobError::BadInput(format!(
                "{flag} needs 1 or {c} values for {}, not {}",
                i.dataset,
                v.len()
            )));
        }
    }
    if i.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(JobError::BadInput("--std values must be positive".into()));
    }
    Ok(())
}
