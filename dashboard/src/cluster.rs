//! The API's cluster and job endpoints: members, workers, jobs, submit and cancel.

use super::body::Body;
use super::{problem, Api};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bus_client::jobs::JobsError;
use bus_schemas::jobs::{JobSpec, JobsErrorKind, JobsFilter, MAX_PAGE};

/// Outputs shown on a job's page.
const OUTPUTS: u32 = 50;

/// `GET /api/members`: this node's membership view.
pub async fn members(State(api): State<Api>) -> Response {
    match api.membership.view().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /api/workers`: every member with its work, from the live snapshot.
pub async fn workers(State(api): State<Api>) -> Response {
    let latest = api.live.latest.borrow().clone();
    let s = &latest.snapshot;
    let body = serde_json::json!({
        "node": api.id,
        "coordinator": s.coordinator,
        "workers": s.workers,
    });
    Json(body).into_response()
}

/// Jobs per page of `GET /api/jobs` unless `limit` says otherwise.
pub const PAGE: u32 = 100;

/// `GET /api/jobs` query.
#[derive(serde::Deserialize)]
pub struct JobsQuery {
    /// `all` (default), `live` or `ended`.
    #[serde(default)]
    which: JobsFilter,
    /// At most this many (1 to 1000; default [`PAGE`]).
    limit: Option<u32>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// `GET /api/jobs?which=&limit=&after=`: a page of job records and the cursor of the next.
pub async fn list(State(api): State<Api>, Query(q): Query<JobsQuery>) -> Response {
    let limit = q.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
    match api.jobs.page(q.which, Some(limit), q.after).await {
        Ok(page) => {
            Json(serde_json::json!({ "jobs": page.jobs, "next": page.next })).into_response()
        }
        Err(e) => jobs_problem(e),
    }
}

/// `GET /api/jobs/{id}`: a job record and its newest outputs.
pub async fn get(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.jobs.outputs(&id, Some(OUTPUTS)).await {
        Ok((job, outputs)) => {
            Json(serde_json::json!({ "job": job, "outputs": outputs })).into_response()
        }
        Err(e) => jobs_problem(e),
    }
}

/// `POST /api/jobs`: submits a job spec (as JSON, with the CLI's defaults filled in).
pub async fn submit(State(api): State<Api>, body: Body) -> Response {
    let mut spec: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    fill_defaults(&mut spec);
    let spec: JobSpec = match serde_json::from_value(spec) {
        Ok(spec) => spec,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format!("bad job spec: {e}")),
    };
    match api.jobs.submit(spec).await {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(e) => jobs_problem(e),
    }
}

/// An inference spec may leave out its split (`test`) and weight (1).
fn fill_defaults(spec: &mut serde_json::Value) {
    let Some(obj) = spec.as_object_mut() else {
        return;
    };
    if obj.get("kind").and_then(|k| k.as_str()) == Some("serve") {
        obj.entry("split").or_insert_with(|| "test".into());
        obj.entry("weight").or_insert_with(|| 1.into());
    }
}

/// `POST /api/jobs/{id}/cancel`: stops a job.
pub async fn cancel(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.jobs.cancel(&id).await {
        Ok(job) => Json(serde_json::json!({ "job": job })).into_response(),
        Err(e) => jobs_problem(e),
    }
}

/// A jobs API error as an HTTP answer; a refusal also carries the cluster's own kind as
/// `reason` (`unknown_model`, `unknown_dataset`, `bad_argument`, …) so that a form can say
/// which field is wrong.
pub(crate) fn jobs_problem(e: JobsError) -> Response {
    let (status, reason) = match &e {
        JobsError::Refused { kind, .. } => {
            let status = match kind {
                JobsErrorKind::NotFound | JobsErrorKind::UnknownModel => StatusCode::NOT_FOUND,
                JobsErrorKind::UnknownDataset => StatusCode::NOT_FOUND,
                JobsErrorKind::BadArgument | JobsErrorKind::BadRequest => StatusCode::BAD_REQUEST,
                JobsErrorKind::AlreadyEnded | JobsErrorKind::Conflict => StatusCode::CONFLICT,
                JobsErrorKind::Internal | JobsErrorKind::Unknown => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            (status, serde_json::to_value(kind).ok())
        }
        JobsError::Request(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        JobsError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    let mut body = serde_json::json!({
        "reply": "error",
        "kind": super::status_kind(status),
        "message": e.to_string(),
    });
    if let Some(reason) = reason {
        body["reason"] = reason;
    }
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_specs_get_the_cli_defaults() {
        let mut spec = serde_json::json!({"kind": "serve", "model": "cnn", "batch": 8});
        fill_defaults(&mut spec);
        let spec: JobSpec = serde_json::from_value(spec).unwrap();
        let JobSpec::Serve(s) = spec else {
            panic!("not a serve spec")
        };
        assert_eq!((s.split.as_str(), s.weight, s.passes), ("test", 1, None));
        let mut spec = serde_json::json!({"kind": "serve", "model": "cnn", "batch": 8,
            "split": "train", "weight": 3});
        fill_defaults(&mut spec);
        assert_eq!(spec["weight"], 3);
        assert_eq!(spec["split"], "train");
    }
}
