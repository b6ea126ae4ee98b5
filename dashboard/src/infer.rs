//! `POST /api/infer`: online inference over HTTP, forwarded to `idunno.v1.infer`.

use super::body::{media_type, Body};
use super::{problem, Api};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bus_schemas::infer::{ByteBuf, InferErrorKind, InferReply, InferRequest};
use std::time::Duration;

/// `POST /api/infer` as JSON.
#[derive(serde::Deserialize)]
pub struct InferJson {
    model: String,
    version: Option<u64>,
    /// Base64-encoded PNG or JPEG files.
    images: Vec<String>,
    timeout_ms: Option<u64>,
    /// The true class of each image, if known (a rollout counts each version's accuracy).
    #[serde(default)]
    labels: Vec<i64>,
}

/// `POST /api/infer?model=…` with one raw image as the body.
#[derive(serde::Deserialize)]
pub struct InferQuery {
    model: Option<String>,
    version: Option<u64>,
    timeout_ms: Option<u64>,
}

/// The HTTP status of an online request refused or failed with `kind` (`/api/infer` and the
/// Open Inference Protocol alike).
pub(crate) fn status_of(kind: InferErrorKind) -> StatusCode {
    match kind {
        InferErrorKind::BadInput => StatusCode::BAD_REQUEST,
        InferErrorKind::UnknownModel => StatusCode::NOT_FOUND,
        InferErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        InferErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        InferErrorKind::Internal | InferErrorKind::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The default deadline of an online request.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// `POST /api/infer`: a JSON body (`{"model", "images": [base64…], "version"?, "timeout_ms"?}`)
/// or one raw image with `?model=…`. Answers 200 with the predictions, 400 for bad input,
/// 404 for an unknown model, 504 at the deadline, 503 when no node answers.
pub async fn infer(
    State(api): State<Api>,
    Query(query): Query<InferQuery>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let json = media_type(&headers).as_deref() == Some("application/json");
    let req = if json {
        // Decoding megabytes of base64 is CPU work: off the runtime.
        match tokio::task::spawn_blocking(move || parse_json(&body)).await {
            Ok(Ok(req)) => req,
            Ok(Err(why)) => return problem(StatusCode::BAD_REQUEST, why),
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        let Some(model) = query.model else {
            let why = "send JSON, or one image with ?model=<name>";
            return problem(StatusCode::BAD_REQUEST, why.into());
        };
        InferRequest {
            model,
            version: query.version,
            images: vec![ByteBuf::from(body.to_vec())],
            timeout_ms: query.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            tensor: None,
            labels: Vec::new(),
        }
    };
    // The node answering enforces the deadline; the bus wait only covers a lost node.
    let wait = Duration::from_millis(req.timeout_ms.saturating_add(2000));
    match bus_client::infer(&api.client, &req, wait).await {
        Ok(reply @ InferReply::Done { .. }) => Json(reply).into_response(),
        Ok(reply @ InferReply::Error { kind, .. }) => {
            let status = status_of(kind);
            (status, Json(reply)).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn parse_json(body: &[u8]) -> Result<InferRequest, String> {
    let j: InferJson = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let images = j
        .images
        .iter()
        .enumerate()
        .map(|(i, b)| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(ByteBuf::from)
                .map_err(|e| format!("image {} is not base64: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InferRequest {
        model: j.model,
        version: j.version,
        images,
        timeout_ms: j.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        tensor: None,
        labels: j.labels,
    })
}
