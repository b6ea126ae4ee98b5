//! Online inference on `idunno.v1.infer` (queue group `idunno-infer`): every node takes a
//! share of the requests, decodes their images, and hands them to one batcher that runs the
//! requests for the same model together: a batch starts when it holds `max_batch` images or
//! when its oldest request has waited `max_delay`. Each request has a deadline from the
//! moment the node received it; at the deadline a request that has not been answered is
//! answered with a timeout, and a batch never takes a request whose deadline has passed.

use crate::config::InferConfig;
use crate::jobs::{Ctx, JobError};
use crate::serving::engine::SharedModel;
use crate::serving::executor::Executor;
use bus_schemas::infer::{InferErrorKind, InferReply, InferRequest, Prediction};
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tch::{Kind, Tensor};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most images in one request.
pub const MAX_IMAGES: usize = 1024;
/// Longest deadline a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// How long the newest version of a model is remembered before SDFS is asked again.
const VERSION_TTL: Duration = Duration::from_secs(2);

/// A decoded request waiting in the batcher.
struct Pending {
    model: SharedModel,
    key: (String, u64),
    /// `n x C x H x W` bytes.
    pixels: Vec<u8>,
    n: usize,
    shape: [i64; 3],
    deadline: Instant,
    received: Instant,
    reply: oneshot::Sender<Answer>,
}

/// The batcher's answer to one request.
type Answer = Result<(Vec<Prediction>, f64, f64, u32), JobError>;

/// Answers inference requests until `shutdown`.
pub async fn serve(ctx: Arc<Ctx>, cfg: InferConfig, shutdown: CancellationToken) {
    let queue = Some(subjects::INFER_QUEUE);
    let subscribed = crate::subscribe::retrying(
        &ctx.client,
        subjects::infer(),
        queue,
        "inference requests",
        &shutdown,
    );
    let Some(mut sub) = subscribed.await else {
        return;
    };
    let (tx, rx) = mpsc::channel::<Pending>(1024);
    let batcher = tokio::spawn(batcher(rx, cfg, ctx.engine.executor().clone()));
    let versions = Arc::new(Mutex::new(HashMap::new()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(msg) = sub.next() => {
                let received = Instant::now();
                let (ctx, tx, versions) = (ctx.clone(), tx.clone(), versions.clone());
                tokio::spawn(async move {
                    let reply = match decode::<InferRequest>(&msg.payload) {
                        Ok(req) => answer(&ctx, &tx, &versions, req, received).await,
                        Err(e) => {
                            ctx.metrics.garbage();
                            tracing::warn!(subject = %msg.subject, "garbage dropped: {e}");
                            error(InferErrorKind::BadInput, e.to_string())
                        }
                    };
                    if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                        let _ = ctx.client.publish(to, bytes.into()).await;
                    }
                });
            }
        }
    }
    drop(tx);
    let _ = batcher.await;
}

fn error(kind: InferErrorKind, message: String) -> InferReply {
    InferReply::Error { kind, message }
}

type Versions = Mutex<HashMap<String, (u64, Instant)>>;

/// Checks, decodes and queues one request, and waits for its batch or its deadline.
async fn answer(
    ctx: &Ctx,
    tx: &mpsc::Sender<Pending>,
    versions: &Versions,
    req: InferRequest,
    received: Instant,
) -> InferReply {
    if req.images.is_empty() || req.images.len() > MAX_IMAGES {
        let n = req.images.len();
        let why = format!("a request holds 1 to {MAX_IMAGES} images, not {n}");
        return error(InferErrorKind::BadInput, why);
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&req.timeout_ms) {
        let why = format!("the timeout must be 1 to {MAX_TIMEOUT_MS} ms");
        return error(InferErrorKind::BadInput, why);
    }
    let timeout_ms = req.timeout_ms;
    let deadline = received + Duration::from_millis(timeout_ms);
    let late = format!("not answered within its deadline of {timeout_ms} ms");
    let (model, version) = (req.model.clone(), req.version);
    let work = async {
        let version = resolve(ctx, versions, &model, version).await?;
        let file = crate::jobs::outputs::model_file(&model);
        let shared = ctx.engine.model(&file, version).await?;
        let (pending, rx) =
            prepare(shared, (file, version), req.images, deadline, received).await?;
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
        Ok(Err(e)) => error(kind(&e), e.to_string()),
        Err(_) => error(InferErrorKind::Timeout, late.clone()),
    }
}

fn kind(e: &JobError) -> InferErrorKind {
    match e {
        JobError::UnknownModel(_) | JobError::NotFound(_) => InferErrorKind::UnknownModel,
        JobError::BadInput(_) => InferErrorKind::BadInput,
        JobError::Timeout(_) => InferErrorKind::Timeout,
        _ => InferErrorKind::Internal,
    }
}

/// The version to use: the one asked for (checked), or the newest (remembered briefly).
async fn resolve(
    ctx: &Ctx,
    versions: &Versions,
    model: &str,
    version: Option<u64>,
) -> Result<u64, JobError> {
    bus_schemas::validate_token(model)
        .map_err(|e| JobError::UnknownModel(format!("bad model name {model:?}: {e}")))?;
    if version.is_none() {
        if let Some((v, at)) = versions.lock().await.get(model) {
            if at.elapsed() < VERSION_TTL {
                return Ok(*v);
            }
        }
    }
    let file = crate::jobs::outputs::model_file(model);
    let found = ctx.cache.sdfs().locate(&file, version).await;
    let info = found.map_err(|e| match JobError::from_sdfs(&file, e) {
        JobError::NotFound(_) => JobError::UnknownModel(match version {
            Some(v) => format!("model {model:?} has no version {v} (see `idunno models`)"),
            None => format!("unknown model {model:?} (see `idunno models`)"),
        }),
        other => other,
    })?;
    if version.is_none() {
        let entry = (info.version, Instant::now());
        versions.lock().await.insert(model.to_string(), entry);
    }
    Ok(info.version)
}

/// Decodes the images to the model's input (off the runtime).
async fn prepare(
    model: SharedModel,
    key: (String, u64),
    images: Vec<bus_schemas::infer::ByteBuf>,
    deadline: Instant,
    received: Instant,
) -> Result<(Pending, oneshot::Receiver<Answer>), JobError> {
    let m = model.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let shape = m
            .lock()
            .expect("model lock")
            .header
            .shape
            .map(|d| d as usize);
        let mut pixels = Vec::with_capacity(images.len() * shape.iter().product::<usize>());
        for (i, bytes) in images.iter().enumerate() {
            let chw = idunno_datasets::image_to_chw(bytes, shape)
                .map_err(|e| JobError::BadInput(format!("image {}: {e}", i + 1)))?;
            pixels.extend_from_slice(&chw);
        }
        Ok::<_, JobError>((pixels, images.len(), shape.map(|d| d as i64)))
    })
    .await
    .map_err(|e| JobError::Internal(e.to_string()))??;
    let (pixels, n, shape) = decoded;
    let (reply, rx) = oneshot::channel();
    let pending = Pending {
        model,
        key,
        pixels,
        n,
        shape,
        deadline,
        received,
        reply,
    };
    Ok((pending, rx))
}

/// Groups queued requests by model and runs them in batches, one batch at a time.
async fn batcher(mut rx: mpsc::Receiver<Pending>, cfg: InferConfig, exec: Executor) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // Wait for a full batch of the oldest request's model, or its maximum delay.
        let until = queue[0].received.max(Instant::now() - cfg.max_delay) + cfg.max_delay;
        loop {
            while let Ok(p) = rx.try_recv() {
                queue.push_back(p);
            }
            let key = &queue[0].key;
            let ready: usize = queue.iter().filter(|p| &p.key == key).map(|p| p.n).sum();
            if ready >= cfg.max_batch || Instant::now() >= until {
                break;
            }
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => queue.push_back(p),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let now = Instant::now();
        // Expired or abandoned requests are never run (their timeout was or will be answered).
        queue.retain(|p| p.deadline > now && !p.reply.is_closed());
        let Some(first) = queue.front() else { continue };
        let key = first.key.clone();
        let mut batch = Vec::new();
        let mut images = 0;
        let mut rest = VecDeque::with_capacity(queue.len());
        for p in queue.drain(..) {
            if p.key == key && (batch.is_empty() || images + p.n <= cfg.max_batch) {
                images += p.n;
                batch.push(p);
            } else {
                rest.push_back(p);
            }
        }
        queue = rest;
        run(&exec, batch).await;
    }
}

/// Runs one batch of requests for one model and answers each.
async fn run(exec: &Executor, batch: Vec<Pending>) {
    let started = Instant::now();
    let model = batch[0].model.clone();
    let shape = batch[0].shape;
    let sizes: Vec<usize> = batch.iter().map(|p| p.n).collect();
    let total: usize = sizes.iter().sum();
    let mut pixels = Vec::with_capacity(batch.iter().map(|p| p.pixels.len()).sum());
    for p in &batch {
        pixels.extend_from_slice(&p.pixels);
    }
    let outcome = exec
        .run_urgent(move || {
            let model = model.lock().expect("model lock");
            let x = Tensor::from_slice(&pixels).view([total as i64, shape[0], shape[1], shape[2]]);
            let _guard = tch::no_grad_guard();
            let probs = model
                .forward(&x, false)?
                .softmax(-1, Kind::Float)
                .to_device(tch::Device::Cpu);
            let classes = probs.size().last().copied().unwrap_or(0) as usize;
            let flat = Vec::<f32>::try_from(&probs.flatten(0, -1))
                .map_err(|e| JobError::Internal(e.to_string()))?;
            let names = model.header.classes.clone();
            Ok::<_, JobError>((flat, classes, names))
        })
        .await
        .and_then(|r| r);
    let run_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut offset = 0;
    for p in batch {
        let queue_ms = started.duration_since(p.received).as_secs_f64() * 1000.0;
        let answer = match &outcome {
            Ok((flat, classes, names)) => {
                let mine = &flat[offset * classes..(offset + p.n) * classes];
                Ok((
                    predictions(mine, *classes, names),
                    queue_ms,
                    run_ms,
                    total as u32,
                ))
            }
            Err(e) => Err(JobError::Internal(format!("the model failed: {e}"))),
        };
        offset += p.n;
        let _ = p.reply.send(answer);
    }
}

/// One prediction per row of `probs` (`rows x classes`).
fn predictions(probs: &[f32], classes: usize, names: &[String]) -> Vec<Prediction> {
    probs
        .chunks_exact(classes.max(1))
        .map(|row| {
            let (best, score) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, s)| (i, *s))
                .unwrap_or((0, 0.0));
            Prediction {
                class: best as i64,
                class_name: names.get(best).cloned().unwrap_or_else(|| best.to_string()),
                score,
                scores: row.to_vec(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_pick_the_most_probable_class() {
        let names = vec!["a".to_string(), "b".to_string()];
        let p = predictions(&[0.2, 0.8, 0.9, 0.1], 2, &names);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].class, p[0].class_name.as_str()), (1, "b"));
        assert_eq!((p[1].class, p[1].score), (0, 0.9));
        assert_eq!(predictions(&[0.1, 0.2, 0.7], 3, &[])[0].class_name, "2");
    }
}
