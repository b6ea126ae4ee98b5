//! Uploads from the dashboard: a TorchScript model (`POST /api/models/{name}/upload`, then an
//! import job as `idunno model import` submits) and a dataset folder as a tar archive (`POST
//! /api/datasets/{name}/upload`, converted and stored as `idunno dataset import` does). Bodies
//! are streamed to a staging directory under the node's data directory, never held in memory,
//! within `--http-max-upload-body`; at most [`UPLOADS_AT_ONCE`] run at once.

use super::body::content_length;
use super::cluster::jobs_problem;
use super::files::sdfs_problem;
use super::{problem, problem_kind, Api};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bus_schemas::jobs::{ImportSpec, JobSpec};
use futures::StreamExt;
use idunno_datasets::MANIFEST_FILE;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// Largest upload unless `--http-max-upload-body` says otherwise: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BODY: u64 = 1 << 30;
/// Uploads a node takes at once; more are answered `503 overloaded`.
pub const UPLOADS_AT_ONCE: usize = 2;

/// Where uploads are staged and how large they may be.
#[derive(Debug, Clone)]
pub struct Uploads {
    /// The staging directory (emptied when the node starts).
    pub dir: PathBuf,
    /// Largest body, bytes.
    pub max_body: u64,
    /// One permit per upload in progress.
    pub slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Uploads {
    /// Uploads staged in `dir` (left-overs of an earlier run are removed), at most `max_body`
    /// bytes each.
    pub fn new(dir: PathBuf, max_body: u64) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        Uploads {
            dir,
            max_body,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
        }
    }
}

/// `POST /api/models/{name}/upload` query: what `idunno model import` takes as flags.
#[derive(serde::Deserialize)]
pub struct ModelQuery {
    /// The dataset whose inputs the model takes.
    dataset: String,
    /// Per-channel mean, comma-separated (empty: none).
    #[serde(default)]
    mean: String,
    /// Per-channel std, comma-separated (empty: none).
    #[serde(default)]
    std: String,
}

/// `POST /api/models/{name}/upload?dataset=&mean=&std=`: stores the TorchScript body as an
/// upload and submits its import job; `201 {"id", "upload"}`.
pub async fn model(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<ModelQuery>,
    req: Request,
) -> Response {
    if let Err(e) = bus_schemas::validate_token(&name) {
        return bad(format!("bad model name {name:?}: {e}"));
    }
    let (mean, std) = match (floats("mean", &q.mean), floats("std", &q.std)) {
        (Ok(m), Ok(s)) => (m, s),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let Ok(_slot) = api.uploads.slots.clone().try_acquire_owned() else {
        return busy();
    };
    let staged = match stage(&api.uploads, req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let upload = format!("uploads/{name}-{:08x}.pt", rand::random::<u32>());
    if let Err(e) = api.sdfs.put(staged.path(), &upload, None).await {
        return sdfs_problem(e);
    }
    drop(staged);
    let spec = JobSpec::Import(ImportSpec {
        name,
        dataset: q.dataset,
        upload: upload.clone(),
        mean,
        std,
    });
    match api.jobs.submit(spec).await {
        Ok(id) => created(serde_json::json!({ "id": id, "upload": upload })),
        Err(e) => {
            let _ = api.sdfs.delete(&upload).await;
            jobs_problem(e)
        }
    }
}

/// `POST /api/datasets/{name}/upload`: a folder as a tar archive (an MNIST-IDX folder, an
/// image folder `train|test/<class>/*.png`, or a folder of unlabelled images), converted and
/// stored as `datasets/<name>/`; `201 {"manifest", "bytes"}` as `GET /api/datasets` lists it.
pub async fn dataset(State(api): State<Api>, Path(name): Path<String>, req: Request) -> Response {
    if let Err(e) = bus_schemas::validate_token(&name) {
        return bad(format!("bad dataset name {name:?}: {e}"));
    }
    let Ok(_slot) = api.uploads.slots.clone().try_acquire_owned() else {
        return busy();
    };
    let staged = match stage(&api.uploads, req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let work = match tempfile::tempdir_in(&api.uploads.dir) {
        Ok(w) => w,
        Err(e) => return internal(format!("staging the dataset: {e}")),
    };
    let (archive, dir, owned) = (
        staged.path().to_path_buf(),
        work.path().to_path_buf(),
        name.clone(),
    );
    let converted = tokio::task::spawn_blocking(move || convert(&archive, &dir, &owned)).await;
    let (manifest, out) = match converted {
        Ok(Ok(done)) => done,
        Ok(Err(why)) => return bad(why),
        Err(e) => return internal(format!("converting the dataset: {e}")),
    };
    drop(staged);
    let mut files: Vec<&str> = manifest.files().iter().map(|f| f.file.as_str()).collect();
    // The manifest last: a dataset is listed only once all its files are stored.
    files.push(MANIFEST_FILE);
    let mut bytes = 0;
    for file in files {
        match api
            .sdfs
            .put(&out.join(file), &format!("datasets/{name}/{file}"), None)
            .await
        {
            Ok(_) => {
                let size = tokio::fs::metadata(out.join(file)).await;
                bytes += size.map_or(0, |m| m.len());
            }
            Err(e) => return sdfs_problem(e),
        }
    }
    created(serde_json::json!({ "manifest": manifest, "bytes": bytes }))
}

/// Unpacks the archive and converts the folder into a dataset in `work/out`.
fn convert(
    archive: &std::path::Path,
    work: &std::path::Path,
    name: &str,
) -> Result<(idunno_datasets::Manifest, PathBuf), String> {
    let (unpacked, out) = (work.join("in"), work.join("out"));
    let file = std::fs::File::open(archive).map_err(|e| format!("the staged upload: {e}"))?;
    let root = super::archive::unpack(std::io::BufReader::new(file), &unpacked)
        .map_err(|e| e.to_string())?;
    let manifest = idunno_datasets::import_dir(&root, &out, name).map_err(|e| {
        // Name the folder as the user sent it, not the staging path.
        e.to_string()
            .replace(&format!("{}/", unpacked.display()), "")
            .replace(&unpacked.display().to_string(), "(the folder)")
    })?;
    Ok((manifest, out))
}

/// Streams `req`'s body into a new file of the staging directory, within the limit.
async fn stage(uploads: &Uploads, req: Request) -> Result<tempfile::NamedTempFile, Response> {
    let limit = uploads.max_body;
    let too_large = || {
        let why = format!("an upload holds at most {limit} bytes (--http-max-upload-body)");
        problem_kind(StatusCode::PAYLOAD_TOO_LARGE, "too_large", why)
    };
    if content_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let staging = |e: std::io::Error| internal(format!("staging the upload: {e}"));
    tokio::fs::create_dir_all(&uploads.dir)
        .await
        .map_err(staging)?;
    let file = tempfile::NamedTempFile::new_in(&uploads.dir).map_err(staging)?;
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(staging)?);
    let mut body = req.into_body().into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| bad(format!("the upload could not be read: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(too_large());
        }
        out.write_all(&chunk).await.map_err(staging)?;
    }
    out.flush().await.map_err(staging)?;
    if written == 0 {
        return Err(bad("the upload is empty".into()));
    }
    Ok(file)
}

/// A comma-separated list of numbers (`0.5` or `0.485,0.456,0.406`); empty: none.
fn floats(flag: &str, text: &str) -> Result<Vec<f32>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("--{flag}: {v:?} is not a number"))
        })
        .collect()
}

fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn bad(message: String) -> Response {
    problem(StatusCode::BAD_REQUEST, message)
}

fn internal(message: String) -> Response {
    problem(StatusCode::INTERNAL_SERVER_ERROR, message)
}

fn busy() -> Response {
    let why = format!("this node takes {UPLOADS_AT_ONCE} uploads at once; try again when one ends");
    problem_kind(StatusCode::SERVICE_UNAVAILABLE, "overloaded", why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_lists_read_like_the_cli_flags() {
        assert_eq!(floats("mean", ""), Ok(vec![]));
        assert_eq!(floats("mean", "0.5"), Ok(vec![0.5]));
        assert_eq!(floats("std", " 0.2, 0.3 ,0.4"), Ok(vec![0.2, 0.3, 0.4]));
        assert_eq!(
            floats("std", "0.2,x"),
            Err("--std: \"x\" is not a number".into())
        );
        assert!(floats("mean", "NaN").is_err());
    }
}
