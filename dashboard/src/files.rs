//! The API's storage endpoints: SDFS files with their replication health, models, datasets.

use super::{model, problem, Api};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bus_schemas::sdfs::FileInfo;
use idunno_datasets::{Manifest, MANIFEST_FILE};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Dataset manifests already read, by (SDFS name, version): a version never changes.
pub type Manifests = Arc<Mutex<BTreeMap<(String, u64), Manifest>>>;

/// `GET /api/files` query.
#[derive(serde::Deserialize)]
pub struct FilesQuery {
    prefix: Option<String>,
    /// At most this many files (1 to 1000, the default).
    limit: Option<u32>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// `GET /api/files?prefix=&limit=&after=`: a page of files (in name order) with their
/// replicas and whether they lack some, and where the next page starts.
pub async fn files(State(api): State<Api>, Query(q): Query<FilesQuery>) -> Response {
    let prefix = q.prefix.unwrap_or_default();
    let prefix = prefix.trim_matches('/');
    let (files, next) = match api.sdfs.ls_page(prefix, q.limit, q.after).await {
        Ok(page) => page,
        Err(e) => return sdfs_problem(e),
    };
    let Ok(view) = api.membership.view().await else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping".into(),
        );
    };
    let live = model::live_members(&view.members);
    let body = serde_json::json!({
        "replication": api.replication,
        "live_nodes": live.len(),
        "files": model::file_rows(files, &live, api.replication),
        "next": next,
    });
    Json(body).into_response()
}

/// `GET /api/models`: every model file with its versions.
pub async fn models(State(api): State<Api>) -> Response {
    match api.sdfs.ls("models").await {
        Ok(models) => Json(serde_json::json!({ "models": models })).into_response(),
        Err(e) => sdfs_problem(e),
    }
}

/// `GET /api/datasets`: every dataset's manifest and size.
pub async fn datasets(State(api): State<Api>) -> Response {
    let files = match api.sdfs.ls("datasets").await {
        Ok(files) => files,
        Err(e) => return sdfs_problem(e),
    };
    let mut out = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.name.ends_with(&format!("/{MANIFEST_FILE}")))
    {
        let manifest = match manifest(&api, f).await {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!("dashboard: {}: {why}", f.name);
                continue;
            }
        };
        let dir = f.name.trim_end_matches(MANIFEST_FILE);
        let bytes = FileInfo::newest_bytes(&files, dir);
        out.push(serde_json::json!({ "manifest": manifest, "bytes": bytes }));
    }
    Json(serde_json::json!({ "datasets": out })).into_response()
}

/// The newest manifest of `file`, read once per version.
async fn manifest(api: &Api, file: &FileInfo) -> Result<Manifest, String> {
    let latest = file.latest().ok_or("no version")?;
    let (version, size) = (latest.version, latest.size);
    let max = idunno_datasets::limits::MAX_MANIFEST_BYTES;
    if size > max {
        return Err(format!(
            "a manifest.json holds at most {max} bytes (MAX_MANIFEST_BYTES), not {size}"
        ));
    }
    let key = (file.name.clone(), version);
    if let Some(m) = api
        .manifests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(m.clone());
    }
    let tmp = std::env::temp_dir().join(format!(
        "idunno-dashboard-{}-{}.json",
        std::process::id(),
        rand::random::<u64>()
    ));
    let bytes = match api.sdfs.get(&file.name, Some(version), &tmp, None).await {
        Ok(_) => tokio::fs::read(&tmp).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    let m = Manifest::from_json(&bytes?, Path::new(&file.name)).map_err(|e| e.to_string())?;
    let mut cache = api.manifests.lock().unwrap_or_else(|e| e.into_inner());
    cache.insert(key, m.clone());
    Ok(m)
}

pub(crate) fn sdfs_problem(e: bus_client::sdfs::SdfsError) -> Response {
    use bus_schemas::sdfs::SdfsErrorKind;
    let status = match e.kind() {
        Some(SdfsErrorKind::BadName) => StatusCode::BAD_REQUEST,
        Some(SdfsErrorKind::NotFound) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
        None => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, e.to_string())
}
