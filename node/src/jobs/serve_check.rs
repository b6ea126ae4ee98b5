//! Checks an inference job at submission: the model version exists, the dataset and split
//! exist, the model's input shape and classes fit the dataset, and the numbers are in range.

use super::{Ctx, JobError};
use bus_schemas::jobs::{ServeSpec, ServeState};
use bus_schemas::sdfs::VersionInfo;

/// Largest batch size: the most queries a worker accepts in one work batch.
pub const MAX_BATCH: u32 = bus_schemas::serve::MAX_BATCH_QUERIES;

/// Checks `spec` (filling in the dataset and version when absent) and returns the job's
/// initial state.
pub async fn check(ctx: &Ctx, spec: &mut ServeSpec) -> Result<ServeState, JobError> {
    check_arguments(spec)?;
    let version = model_version(ctx, spec).await?;
    let attrs = &version.attrs;
    if spec.dataset.is_empty() {
        spec.dataset = attrs.get("dataset").cloned().unwrap_or_default();
    }
    bus_schemas::validate_token(&spec.dataset).map_err(|e| {
        JobError::UnknownDataset(format!("bad dataset name {:?}: {e}", spec.dataset))
    })?;
    let manifest = ctx.cache.manifest(&spec.dataset).await?;
    let split = manifest.splits.get(&spec.split).ok_or_else(|| {
        let have: Vec<&String> = manifest.splits.keys().collect();
        JobError::BadInput(format!(
            "dataset {:?} has no split {:?} (it has {have:?})",
            spec.dataset, spec.split
        ))
    })?;
    let shape = format!(
        "{}x{}x{}",
        manifest.shape[0], manifest.shape[1], manifest.shape[2]
    );
    if let Some(input) = attrs.get("input").filter(|i| **i != shape) {
        return Err(JobError::BadInput(format!(
            "model {} takes {input} inputs but dataset {} has {shape}",
            spec.model, spec.dataset
        )));
    }
    let classes = attrs.get("classes").and_then(|c| c.parse::<usize>().ok());
    if let Some(c) = classes.filter(|c| manifest.labelled() && *c != manifest.classes.len()) {
        return Err(JobError::BadInput(format!(
            "model {} has {c} classes but dataset {} has {}",
            spec.model,
            spec.dataset,
            manifest.classes.len()
        )));
    }
    spec.model_version = Some(version.version);
    Ok(ServeState {
        model_version: version.version,
        count: split.count,
        total: spec.passes.map(|p| u64::from(p) * split.count),
        batch: spec.batch,
        correct: manifest.labelled().then_some(0),
        ..Default::default()
    })
}

/// Checks the job's batch size, passes and weight.
fn check_arguments(spec: &ServeSpec) -> Result<(), JobError> {
    if !(1..=MAX_BATCH).contains(&spec.batch) {
        return Err(JobError::BadInput(format!(
            "the batch size must be between 1 and {MAX_BATCH}, not {}",
            spec.batch
        )));
    }
    if spec.passes == Some(0) {
        return Err(JobError::BadInput("--passes must be at least 1".into()));
    }
    if !(1..=1000).contains(&spec.weight) {
        return Err(JobError::BadInput(format!(
            "--weight must be between 1 and 1000, not {}",
            spec.weight
        )));
    }
    Ok(())
}

/// The version of the model the job serves: the one it names (`name:version`, `name@alias`
/// or `model_version`; an alias with a rollout names its baseline), or the one a bare name
/// follows (the `production` alias, else the newest). The spec names the model alone after.
async fn model_version(ctx: &Ctx, spec: &mut ServeSpec) -> Result<VersionInfo, JobError> {
    let r = bus_schemas::models::ModelRef::parse(&spec.model)
        .and_then(|r| r.with_version(spec.model_version))
        .map_err(JobError::UnknownModel)?;
    spec.model_version = ctx.routes.version_of(&r).await?;
    spec.model = r.name;
    let file = super::outputs::model_file(&spec.model);
    ctx.cache
        .sdfs()
        .locate(&file, spec.model_version)
        .await
        .map_err(|e| match JobError::from_sdfs(&file, e) {
            JobError::NotFound(_) => JobError::UnknownModel(match spec.model_version {
                Some(v) => format!(
                    "model {:?} has no version {v} (see `idunno models`)",
                    spec.model
                ),
                None => format!("unknown model {:?} (see `idunno models`)", spec.model),
            }),
            other => other,
        })
}
