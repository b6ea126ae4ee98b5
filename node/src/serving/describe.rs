//! Model queries on `idunno.v1.infer.model` (queue group `idunno-infer-model`): any node
//! describes a model for online inference (its versions, input shape and convention, class
//! names) after loading it into its engine, so that a model it answers for is ready to serve.
//! The Open Inference Protocol's model metadata and model readiness are read this way. Kept
//! apart from `idunno.v1.infer`, so a node that sheds online requests still answers.

use super::infer::{error_kind, resolve_file};
use super::Deps;
use crate::error::JobError;
use bus_schemas::infer::{InferErrorKind, ModelInfo, ModelQuery, ModelReply};
use bus_schemas::models::ModelRef;
use bus_schemas::{decode, encode, subjects};
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Model queries a node answers at once (each may load a model); one beyond is answered at
/// once with `overloaded`.
pub const MAX_MODEL_QUERIES: usize = 16;

/// Answers model queries until `shutdown`.
pub async fn serve(ctx: Arc<Deps>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_MODEL_QUERIES));
    let queries = TaskTracker::new();
    loop {
        let joined = crate::subscribe::retrying(
            &ctx.client,
            subjects::infer_model(),
            Some(subjects::INFER_MODEL_QUEUE),
            "model queries",
            &shutdown,
        );
        let Some(mut sub) = joined.await else { break };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => None,
                msg = sub.next() => msg,
            };
            let Some(msg) = msg else { break };
            let Some(to) = msg.reply else { continue };
            let ctx = ctx.clone();
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                ctx.metrics.shed();
                let why = format!(
                    "overloaded: a node answers at most {MAX_MODEL_QUERIES} model queries at once"
                );
                reply(&ctx, to, &refused(InferErrorKind::Overloaded, why)).await;
                continue;
            };
            queries.spawn(async move {
                let answer = match decode::<ModelQuery>(&msg.payload) {
                    Ok(q) => describe(&ctx, &q).await,
                    Err(e) => {
                        ctx.metrics.garbage();
                        refused(InferErrorKind::BadInput, e.to_string())
                    }
                };
                reply(&ctx, to, &answer).await;
                drop(slot);
            });
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    queries.close();
    queries.wait().await;
}

async fn reply(ctx: &Deps, to: async_nats::Subject, answer: &ModelReply) {
    if let Ok(bytes) = encode(answer) {
        let _ = ctx.client.publish(to, bytes.into()).await;
    }
}

fn refused(kind: InferErrorKind, message: String) -> ModelReply {
    ModelReply::Error { kind, message }
}

/// The model `q` names, loaded on this node, described.
async fn describe(ctx: &Deps, q: &ModelQuery) -> ModelReply {
    match load(ctx, q).await {
        Ok(info) => ModelReply::Ready(info),
        Err(e) => refused(error_kind(&e), e.to_string()),
    }
}

async fn load(ctx: &Deps, q: &ModelQuery) -> Result<ModelInfo, JobError> {
    let r = ModelRef::parse(&q.model).and_then(|r| r.with_version(q.version));
    let r = r.map_err(JobError::UnknownModel)?;
    let version = ctx.routes.version_of(&r).await?;
    let (file, version) = resolve_file(ctx, &r.name, version).await?;
    let listed = ctx.cache.sdfs().ls(&file).await;
    let files = listed.map_err(|e| JobError::from_sdfs(&file, e))?;
    let versions = files
        .iter()
        .filter(|f| f.name == file)
        .flat_map(|f| f.versions.iter().map(|v| v.version))
        .collect();
    let model = ctx.engine.model(&file, version).await?;
    // A lane may hold the model's copy for a batch: read its header off the runtime.
    let header = tokio::task::spawn_blocking(move || model.lock().header.clone())
        .await
        .map_err(|e| JobError::Internal(e.to_string()))?;
    Ok(ModelInfo {
        model: r.name.clone(),
        version,
        versions,
        arch: header.arch,
        shape: header.shape,
        classes: header.classes,
        mean: header.mean,
        std: header.std,
        node: ctx.id.clone(),
    })
}
