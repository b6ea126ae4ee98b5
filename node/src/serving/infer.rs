//! Online inference on `idunno.v1.infer` (queue group `idunno-infer`): every node takes a
//! share of the requests, decodes their images, and hands them to one batcher that runs the
//! requests for the same model together: a batch starts when it holds `max_batch` images or
//! when its oldest request has waited `max_delay`. Each request has a deadline from the
//! moment the node received it; at the deadline a request that has not been answered is
//! answered with a timeout, and a batch never takes a request whose deadline has passed.
//! A node handles at most `--infer-max-inflight` requests at once; one beyond is answered at
//! once with `overloaded` (load is shed, never queued without bound), and so is one that would
//! only wait because online work has had its share of the inference thread while a job runs
//! (see [`super::share`]); a node that sheds leaves the queue group until it has room again
//! (see [`super::admit`]).

use super::Deps;
use crate::error::JobError;
use crate::metrics::online::{Online as OnlineFigures, Outcome};
use crate::serving::admit::Admission;
use crate::serving::args::InferConfig;
use crate::serving::batcher::{batcher, Pending};
use crate::serving::queries::{check_queries, prepare, Queries};
use crate::serving::routes::Choice;
use crate::serving::tally::Answered;
use async_nats::Subscriber;
use bus_schemas::infer::{InferErrorKind, InferReply, InferRequest};
use bus_schemas::models::ModelRef;
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::serving::queries::{MAX_IMAGES, MAX_REQUEST_PIXEL_BYTES};

/// Longest deadline a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// How long the newest version of a model is remembered before SDFS is asked again.
const VERSION_TTL: Duration = Duration::from_secs(2);

/// Answers inference requests until `shutdown`, leaving the queue group while it sheds load
/// (see [`super::admit`]).
pub async fn serve(ctx: Arc<Deps>, cfg: InferConfig, shutdown: CancellationToken) {
    let (tx, rx) = mpsc::channel::<Pending>(cfg.max_inflight.max(1));
    let exec = ctx.engine.executor().clone();
    let batcher = tokio::spawn(batcher(rx, cfg, exec, ctx.metrics.clone()));
    let admit = admission(&ctx, &cfg);
    let online = Online {
        ctx,
        tx,
        versions: Arc::new(Mutex::new(HashMap::new())),
        requests: TaskTracker::new(),
    };
    loop {
        let joined = crate::subscribe::retrying(
            &online.ctx.client,
            subjects::infer(),
            Some(subjects::INFER_QUEUE),
            "inference requests",
            &shutdown,
        );
        let Some(sub) = joined.await else {
            break;
        };
        online.ctx.metrics.online.set_subscribed();
        let leaving = online.take(sub, &admit, &shutdown).await;
        if shutdown.is_cancelled() || (leaving && !admit.room(&shutdown).await) {
            break;
        }
    }
    online.requests.close();
    online.requests.wait().await;
    drop(online);
    let _ = batcher.await;
}

/// Admission with its two refusals: too many requests at once, or over the online share.
fn admission(ctx: &Deps, cfg: &InferConfig) -> Admission {
    let why = format!(
        "overloaded: this node handles at most {} requests at once (--infer-max-inflight)",
        cfg.max_inflight
    );
    let full = encode_error(InferErrorKind::Overloaded, why);
    let why = format!(
        "overloaded: online requests have had their share ({}%) of this node's inference time while jobs run (--infer-online-share)",
        cfg.online_share
    );
    let over_share = encode_error(InferErrorKind::Overloaded, why);
    let exec = ctx.engine.executor().clone();
    Admission::new(cfg.max_inflight, cfg.online_share, exec, full, over_share)
}

/// What answering online requests shares.
struct Online {
    ctx: Arc<Deps>,
    tx: mpsc::Sender<Pending>,
    versions: Arc<Versions>,
    /// The requests being answered.
    requests: TaskTracker,
}

impl Online {
    /// Answers the requests of one subscription until it ends (drained when a request had to
    /// be shed, or dropped by the bus) or `shutdown`; whether it left the group to shed load.
    async fn take(
        &self,
        mut sub: Subscriber,
        admit: &Admission,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut leaving = false;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => None,
                msg = sub.next() => msg,
            };
            let Some(msg) = msg else { return leaving };
            let received = Instant::now();
            match admit.take() {
                Ok(slot) => {
                    let (ctx, tx) = (self.ctx.clone(), self.tx.clone());
                    let versions = self.versions.clone();
                    self.requests.spawn(async move {
                        let reply = reply(&ctx, &tx, &versions, &msg.payload, received).await;
                        drop(slot);
                        if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                            let _ = ctx.client.publish(to, bytes.into()).await;
                        }
                    });
                }
                Err(shed) => {
                    self.ctx.metrics.shed();
                    let online = &self.ctx.metrics.online;
                    online.request("", Outcome::Overloaded, received.elapsed().as_secs_f64());
                    if let Some(to) = msg.reply {
                        let _ = self.ctx.client.publish(to, shed).await;
                    }
                    // Leave the group; what is already on its way still comes, then the end.
                    if !leaving && sub.drain().await.is_ok() {
                        leaving = true;
                        self.ctx.metrics.infer_paused();
                    }
                }
            }
        }
    }
}

/// The answer to one request taken in.
async fn reply(
    ctx: &Deps,
    tx: &mpsc::Sender<Pending>,
    versions: &Versions,
    payload: &[u8],
    received: Instant,
) -> InferReply {
    let (model, reply) = match decode::<InferRequest>(payload) {
        Ok(req) => (
            model_name(&req.model),
            answer(ctx, tx, versions, req, received).await,
        ),
        Err(e) => {
            ctx.metrics.garbage();
            tracing::warn!("garbage dropped on {}: {e}", subjects::infer());
            (
                String::new(),
                error(InferErrorKind::BadInput, e.to_string()),
            )
        }
    };
    count(&ctx.metrics.online, &model, &reply, received);
    if matches!(
        reply,
        InferReply::Error {
            kind: InferErrorKind::Overloaded,
            ..
        }
    ) {
        ctx.metrics.shed();
    }
    reply
}

/// Counts an answered request in the node's online-inference figures.
fn count(online: &OnlineFigures, model: &str, reply: &InferReply, received: Instant) {
    let outcome = match reply {
        InferReply::Done { queue_ms, .. } => {
            online.queued.observe(model, queue_ms / 1000.0);
            Outcome::Ok
        }
        InferReply::Error { kind, .. } => match kind {
            InferErrorKind::BadInput => Outcome::BadInput,
            InferErrorKind::UnknownModel => Outcome::UnknownModel,
            InferErrorKind::Timeout => Outcome::Timeout,
            InferErrorKind::Overloaded => Outcome::Overloaded,
            InferErrorKind::Internal | InferErrorKind::Other => Outcome::Internal,
        },
    };
    online.request(model, outcome, received.elapsed().as_secs_f64());
}

fn error(kind: InferErrorKind, message: String) -> InferReply {
    InferReply::Error { kind, message }
}

fn encode_error(kind: InferErrorKind, message: String) -> bytes::Bytes {
    encode(&error(kind, message)).unwrap_or_default().into()
}

type Versions = Mutex<HashMap<String, (u64, Instant)>>;

/// The model a request names, without its version or alias (the metrics' label).
fn model_name(text: &str) -> String {
    let end = text.find(['@', ':']).unwrap_or(text.len());
    text[..end].to_string()
}

/// Checks a request, picks its version (through the model's routes), and answers it; a
/// request a rollout split is counted in its arm's figures.
async fn answer(
    ctx: &Deps,
    tx: &mpsc::Sender<Pending>,
    versions: &Versions,
    req: InferRequest,
    received: Instant,
) -> InferReply {
    if let Err(why) = check_queries(&req) {
        return error(InferErrorKind::BadInput, why);
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&req.timeout_ms) {
        let why = format!("the timeout must be 1 to {MAX_TIMEOUT_MS} ms");
        return error(InferErrorKind::BadInput, why);
    }
    let r = match ModelRef::parse(&req.model).and_then(|r| r.with_version(req.version)) {
        Ok(r) => r,
        Err(why) => return error(InferErrorKind::UnknownModel, why),
    };
    let choice = match ctx.routes.pick(&r).await {
        Ok(c) => c,
        Err(e) => return error(error_kind(&e), e.to_string()),
    };
    let labels = req.labels.clone();
    let reply = run(ctx, tx, versions, req, (r.name.clone(), choice), received).await;
    if let Some(arm) = choice.arm {
        let predictions = match &reply {
            InferReply::Done { predictions, .. } => Some(predictions.as_slice()),
            InferReply::Error { .. } => None,
        };
        ctx.tally.record(Answered {
            model: &r.name,
            arm,
            version: choice.version.unwrap_or_default(),
            predictions,
            labels: &labels,
            seconds: received.elapsed().as_secs_f64(),
        });
    }
    reply
}

/// Decodes and queues one request for the version chosen, and waits for its batch or its
/// deadline.
async fn run(
    ctx: &Deps,
    tx: &mpsc::Sender<Pending>,
    versions: &Versions,
    req: InferRequest,
    (model, choice): (String, Choice),
    received: Instant,
) -> InferReply {
    let timeout_ms = req.timeout_ms;
    let deadline = received + Duration::from_millis(timeout_ms);
    let late = format!("not answered within its deadline of {timeout_ms} ms");
    let work = async {
        let version = resolve(ctx, versions, &model, choice.version).await?;
        let file = crate::cache::model_file(&model);
        let shared = ctx.engine.model(&file, version).await?;
        let exec = ctx.engine.executor().clone();
        let queries = match req.tensor {
            Some(t) => Queries::Tensor(t),
            None => Queries::Images(req.images),
        };
        let (pending, rx) =
            prepare(exec, shared, (file, version), queries, deadline, received).await?;
        tx.send(pending)
            .await
            .map_err(|_| JobError::Internal("the node is stopping".into()))?;
        // The batcher drops a request whose deadline passed: that is a timeout too.
        let dropped = |_| JobError::Timeout(late.clone());
        let (predictions, queue_ms, run_ms, batch) = rx.await.map_err(dropped)??;
        Ok(InferReply::Done {
            model: model.clone(),
            version,
            predictions,
            node: ctx.id.clone(),
            queue_ms,
            run_ms,
            batch,
        })
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => error(error_kind(&e), e.to_string()),
        Err(_) => error(InferErrorKind::Timeout, late.clone()),
    }
}

/// The kind an online request's failure is answered with.
pub(super) fn error_kind(e: &JobError) -> InferErrorKind {
    match e {
        JobError::UnknownModel(_) | JobError::NotFound(_) => InferErrorKind::UnknownModel,
        JobError::BadInput(_) => InferErrorKind::BadInput,
        JobError::Timeout(_) => InferErrorKind::Timeout,
        JobError::Overloaded(_) => InferErrorKind::Overloaded,
        _ => InferErrorKind::Internal,
    }
}

/// The version to use: the one asked for (checked), or the newest (remembered briefly).
async fn resolve(
    ctx: &Deps,
    versions: &Versions,
    model: &str,
    version: Option<u64>,
) -> Result<u64, JobError> {
    if version.is_none() {
        if let Some((v, at)) = versions.lock().await.get(model) {
            if at.elapsed() < VERSION_TTL {
                return Ok(*v);
            }
        }
    }
    let (_, found) = resolve_file(ctx, model, version).await?;
    if version.is_none() {
        let entry = (found, Instant::now());
        versions.lock().await.insert(model.to_string(), entry);
    }
    Ok(found)
}

/// Model `model`'s SDFS file and the version to use: the one asked for (checked), or the
/// newest.
pub(super) async fn resolve_file(
    ctx: &Deps,
    model: &str,
    version: Option<u64>,
) -> Result<(String, u64), JobError> {
    bus_schemas::validate_token(model)
        .map_err(|e| JobError::UnknownModel(format!("bad model name {model:?}: {e}")))?;
    let file = crate::cache::model_file(model);
    let found = ctx.cache.sdfs().locate(&file, version).await;
    let info = found.map_err(|e| match JobError::from_sdfs(&file, e) {
        JobError::NotFound(_) => JobError::UnknownModel(match version {
            Some(v) => format!("model {model:?} has no version {v} (see `idunno models`)"),
            None => format!("unknown model {model:?} (see `idunno models`)"),
        }),
        other => other,
    })?;
    Ok((file, info.version))
}
