//! What jobs write to SDFS: model versions (with their description as version attributes, so
//! `idunno models` needs no extra reads), per-sample results, and checkpoints.

use super::{Ctx, JobError};
use crate::ml::modelfile::Header;
use crate::ml::train::Evaluation;
use bus_client::sdfs::PutOptions;
use std::collections::BTreeMap;

pub use crate::cache::model_file;

/// The SDFS name of job `id`'s checkpoints.
pub fn checkpoint_file(id: &str) -> String {
    format!("checkpoints/{id}")
}

/// The SDFS name of job `id`'s per-sample results.
pub fn results_file(id: &str) -> String {
    format!("results/{id}.jsonl")
}

/// The version attributes describing a model.
pub fn model_attrs(h: &Header) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::from([
        ("arch".to_string(), h.arch.clone()),
        ("dataset".to_string(), h.dataset.clone()),
        ("classes".to_string(), h.classes.len().to_string()),
        (
            "input".to_string(),
            format!("{}x{}x{}", h.shape[0], h.shape[1], h.shape[2]),
        ),
        ("params".to_string(), h.params.to_string()),
        ("epochs".to_string(), h.epochs.to_string()),
    ]);
    if let Some(acc) = h.test_accuracy {
        attrs.insert("test_accuracy".into(), format!("{acc:.4}"));
    }
    if let Some(job) = &h.job {
        attrs.insert("job".into(), job.clone());
    }
    attrs
}

/// Stores `bytes` as a new version of SDFS file `name`; returns the version.
pub async fn put_bytes(
    ctx: &Ctx,
    name: &str,
    bytes: &[u8],
    attrs: BTreeMap<String, String>,
) -> Result<u64, JobError> {
    let tmp = ctx
        .cache
        .scratch(&format!("{:016x}.put", rand::random::<u64>()));
    if let Some(dir) = tmp.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(JobError::io(dir))?;
    }
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(JobError::io(&tmp))?;
    let options = PutOptions {
        attrs,
        ..Default::default()
    };
    let put = ctx.cache.sdfs().put_with(&tmp, name, options, None).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    put.map_err(|e| JobError::from_sdfs(name, e))
}

/// One line of a results file.
#[derive(serde::Serialize)]
struct ResultLine<'a> {
    query_id: u64,
    sample: u64,
    predicted: i64,
    class_name: &'a str,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
}

/// Writes `results/<job>.jsonl`: one JSON object per sample of the evaluated split.
pub async fn write_results(
    ctx: &Ctx,
    job: &str,
    eval: &Evaluation,
    classes: &[String],
    labels: Option<&[i64]>,
    files: Option<&[String]>,
) -> Result<String, JobError> {
    let mut out = Vec::with_capacity(eval.predicted.len() * 96);
    for (i, (&p, &score)) in eval.predicted.iter().zip(&eval.score).enumerate() {
        let line = ResultLine {
            query_id: i as u64,
            sample: i as u64,
            predicted: p,
            class_name: classes.get(p as usize).map_or("?", String::as_str),
            score,
            label: labels.and_then(|l| l.get(i).copied()),
            file: files.and_then(|f| f.get(i)).map(String::as_str),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| JobError::Internal(e.to_string()))?;
        out.push(b'\n');
    }
    let name = results_file(job);
    put_bytes(ctx, &name, &out, BTreeMap::new()).await?;
    Ok(name)
}

/// The SDFS file of a training job's steps: `results/<job>.steps.jsonl`.
pub fn steps_file(id: &str) -> String {
    format!("results/{id}.steps.jsonl")
}

/// One line of a steps file.
#[derive(serde::Serialize)]
struct StepLine {
    step: u64,
    epoch: u64,
    /// Absent for a step of a checkpoint that kept no steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f32>,
    samples: u32,
    workers: u32,
}

/// Writes `results/<job>.steps.jsonl`: one JSON object per step applied, in order (the step
/// from 0 over all epochs, its epoch, the batch's mean loss and accuracy, its samples and the
/// workers that took it).
pub async fn write_steps(
    ctx: &Ctx,
    job: &str,
    history: &[crate::ml::history::StepRecord],
    spec: &bus_schemas::jobs::JobSpec,
) -> Result<String, JobError> {
    let steps_per_epoch = match spec {
        bus_schemas::jobs::JobSpec::Train(t) => {
            (history.len() as u64 / u64::from(t.epochs.max(1))).max(1)
        }
        _ => 1,
    };
    let mut out = Vec::with_capacity(history.len() * 80);
    for (i, r) in history.iter().enumerate() {
        let known = |v: f32| (!v.is_nan()).then_some(v);
        let line = StepLine {
            step: i as u64,
            epoch: i as u64 / steps_per_epoch,
            loss: known(r.loss),
            accuracy: known(r.accuracy),
            samples: r.samples,
            workers: r.workers,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| JobError::Internal(e.to_string()))?;
        out.push(b'\n');
    }
    let name = steps_file(job);
    put_bytes(ctx, &name, &out, BTreeMap::new()).await?;
    Ok(name)
}
