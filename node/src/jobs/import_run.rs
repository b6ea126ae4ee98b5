//! Runs a TorchScript import: loads the uploaded module, checks that it takes the dataset's
//! inputs and gives one logit per class, evaluates it on the test split, and stores it as a new
//! version of `models/<name>` (and its per-sample results as `results/<job>.jsonl`).

use super::ending::{succeed, Owner};
use super::outputs::{self, model_file};
use super::train_run::panic_message;
use super::{Ctx, JobError};
use crate::ml::model::Model;
use crate::ml::modelfile::{Header, Payload};
use crate::ml::train::{evaluate, Evaluation, Samples};
use bus_schemas::jobs::{ImportSpec, JobOutcome, JobRecord, JobSpec};
use idunno_datasets::{Manifest, Split};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs attempt `attempt` of import `job`; a refused upload is deleted.
pub async fn run(
    ctx: &Arc<Ctx>,
    job: &JobRecord,
    attempt: u32,
    stop: CancellationToken,
) -> Result<(), JobError> {
    let JobSpec::Import(spec) = &job.spec else {
        return Err(JobError::Internal("not an import job".into()));
    };
    let result = import(ctx, job, spec, attempt, stop).await;
    if matches!(result, Err(JobError::BadInput(_))) {
        let _ = ctx.cache.sdfs().delete(&spec.upload).await;
    }
    result
}

async fn import(
    ctx: &Arc<Ctx>,
    job: &JobRecord,
    spec: &ImportSpec,
    attempt: u32,
    stop: CancellationToken,
) -> Result<(), JobError> {
    let started = Instant::now();
    let manifest = ctx.cache.manifest(&spec.dataset).await?;
    let split_name = if manifest.splits.contains_key("test") {
        "test".to_string()
    } else {
        manifest.splits.keys().next().cloned().unwrap_or_default()
    };
    let split = ctx
        .cache
        .split(&spec.dataset, &manifest, &split_name)
        .await?;
    let script = ctx.cache.read(&spec.upload, None).await?;
    let header = header(job, spec, &manifest);
    let (device, upload, dataset) = (ctx.device, spec.upload.clone(), spec.dataset.clone());
    let labels = split.labels.clone();
    let files = split.files.clone();
    let work = tokio::task::spawn_blocking(move || {
        let go = || load_and_evaluate(&upload, header, &script, device, &dataset, &split);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(go))
            .unwrap_or_else(|p| Err(JobError::Internal(panic_message(p))))
    });
    let (bytes, header, eval) = tokio::select! {
        _ = stop.cancelled() => return Err(JobError::Stopped),
        done = work => done.map_err(|e| JobError::Internal(e.to_string()))??,
    };
    let name = model_file(&spec.name);
    let version = outputs::put_bytes(ctx, &name, &bytes, outputs::model_attrs(&header)).await?;
    let results = outputs::write_results(
        ctx,
        &job.id,
        &eval,
        &header.classes,
        labels.as_deref(),
        files.as_deref(),
    )
    .await?;
    let outcome = JobOutcome {
        model_file: name.clone(),
        model_version: version,
        test_accuracy: header.test_accuracy,
        results_file: Some(results),
        seconds: started.elapsed().as_secs_f64(),
        steps_file: None,
    };
    succeed(ctx, &job.id, Owner::Attempt(attempt), outcome, &split_name).await?;
    let _ = ctx.cache.sdfs().delete(&spec.upload).await;
    Ok(())
}

/// The header of the model an import makes: its dataset's classes and shape, the upload's
/// normalisation.
fn header(job: &JobRecord, spec: &ImportSpec, manifest: &Manifest) -> Header {
    Header {
        payload: Payload::Torchscript,
        arch: "torchscript".into(),
        dataset: spec.dataset.clone(),
        classes: manifest.classes.clone(),
        shape: manifest.shape,
        mean: spec.mean.clone(),
        std: spec.std.clone(),
        params: 0,
        epochs: 0,
        test_accuracy: None,
        job: Some(job.id.clone()),
        payload_sha256: String::new(),
    }
}

/// Loads the TorchScript upload, gives an unlabelled dataset's model its class count, checks it
/// fits the dataset and evaluates it on the split: the model file, its header, the evaluation.
fn load_and_evaluate(
    upload: &str,
    header: Header,
    script: &[u8],
    device: tch::Device,
    dataset: &str,
    split: &Split,
) -> Result<(Vec<u8>, Header, Evaluation), JobError> {
    let mut model = Model::torchscript(upload, header, script, device)?;
    if model.header.classes.is_empty() {
        // An unlabelled dataset: the class count is whatever the model outputs.
        let [c, h, w] = model.header.shape.map(i64::from);
        let x = tch::Tensor::zeros([1, c, h, w], (tch::Kind::Uint8, device));
        let n = tch::no_grad(|| model.forward(&x, false))?.size();
        let classes = *n.last().unwrap_or(&0);
        let max = idunno_datasets::limits::MAX_CLASSES;
        if !(0..=max as i64).contains(&classes) {
            return Err(JobError::BadInput(format!(
                "a model has at most {max} classes (MAX_CLASSES), not {classes}"
            )));
        }
        model.header.classes = (0..classes).map(|i| i.to_string()).collect();
    }
    model.check_fits(dataset)?;
    let eval = evaluate(&model, &Samples::from_split(split, None), 256)?;
    model.header.test_accuracy = eval.accuracy();
    Ok((model.to_file(Some(script)), model.header.clone(), eval))
}
