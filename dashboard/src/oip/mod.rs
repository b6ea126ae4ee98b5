//! The Open Inference Protocol (KServe v2) over HTTP, on every node's dashboard port: server
//! live/ready/metadata, model metadata and readiness, and infer, forwarded to the same online
//! path as `POST /api/infer` and `idunno.v1.infer` (one node takes the request and batches it
//! with the others for the same model). A model takes one input, either `input` (FP32
//! N×C×H×W, already scaled as the model's convention says: pixels in [0, 1], minus its mean,
//! over its std, both given in its metadata's `parameters`) or `image` (BYTES: PNG or JPEG
//! files), and gives `class` (INT64), `class_name` (BYTES), `score` (FP32) and `probabilities`
//! (FP32 N×classes; with the classification extension, the top classes as strings). Binary
//! tensor data (Triton's extension) is read and written; errors are `{"error": "…"}`.

mod request;
mod response;

use super::body::Body;
use super::infer::status_of;
use super::ready::Readiness;
use super::Api;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest, ModelInfo, ModelQuery, ModelReply};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The FP32 input's name.
pub const INPUT_TENSOR: &str = "input";
/// The BYTES input's name.
pub const INPUT_IMAGES: &str = "image";
/// Every output, with its datatype.
pub const OUTPUTS: [(&str, &str); 4] = [
    ("class", "INT64"),
    ("class_name", "BYTES"),
    ("score", "FP32"),
    ("probabilities", "FP32"),
];
/// How long a model query (which may load the model) may take.
const MODEL_QUERY_WAIT: Duration = Duration::from_secs(30);

/// An error in the protocol's shape.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refusal, answered in the protocol's shape.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// `GET /v2/health/live`: 200 while the node serves HTTP.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: 200 when the node is ready (see [`super::ready`]), else 503.
pub async fn ready(State(ready): State<Readiness>) -> StatusCode {
    if ready.check().await.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// An unknown `/v2/…` path.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint of the Open Inference Protocol (see docs/api.md)",
    )
}

/// `GET /v2`: the server's metadata.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "idunno",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "classification"],
    }))
}

/// A version from the path, or a 400.
fn version(v: &str) -> Result<u64, Refusal> {
    v.parse().map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("model version {v:?} is not a number"),
        )
    })
}

/// Asks the cluster to describe (and load) a model.
async fn model_info(api: &Api, model: &str, version: Option<u64>) -> Result<ModelInfo, Refusal> {
    let query = ModelQuery {
        model: model.to_string(),
        version,
    };
    match bus_client::model_info(&api.client, &query, MODEL_QUERY_WAIT).await {
        Ok(ModelReply::Ready(info)) => Ok(info),
        Ok(ModelReply::Error { kind, message }) => Err(Refusal(status_of(kind), message)),
        Err(e) => Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// The model metadata of the protocol for `info`.
fn metadata(info: &ModelInfo) -> Value {
    let [c, h, w] = info.shape.map(i64::from);
    let classes = info.classes.len() as i64;
    let outputs: Vec<Value> = OUTPUTS
        .iter()
        .map(|(name, datatype)| {
            let shape = if *name == "probabilities" {
                json!([-1, classes])
            } else {
                json!([-1])
            };
            json!({"name": name, "datatype": datatype, "shape": shape})
        })
        .collect();
    let platform = match info.arch.as_str() {
        "torchscript" => "pytorch_libtorch".to_string(),
        arch => format!("idunno_{arch}"),
    };
    json!({
        "name": info.model,
        "versions": info.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": platform,
        "inputs": [
            {"name": INPUT_TENSOR, "datatype": "FP32", "shape": [-1, c, h, w]},
            {"name": INPUT_IMAGES, "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": outputs,
        "parameters": {
            "version": info.version.to_string(),
            "classes": info.classes,
            "mean": info.mean,
            "std": info.std,
            "node": info.node,
            "input_convention": "one input: 'input' FP32 N×C×H×W as (pixel / 255 - mean) / std per channel (no mean/std: pixel / 255), or 'image' BYTES holding PNG or JPEG files",
        },
    })
}

/// The model a metadata or readiness path names: `{name}`, or `{name}/versions/{version}`.
async fn named(api: &Api, name: &str, v: Option<&str>) -> Result<ModelInfo, Refusal> {
    let version = v.map(version).transpose()?;
    model_info(api, name, version).await
}

/// The metadata of `info`, or the refusal.
fn described(info: Result<ModelInfo, Refusal>) -> Response {
    match info {
        Ok(info) => Json(metadata(&info)).into_response(),
        Err(r) => r.into_response(),
    }
}

/// 200 once the model is loaded, or the refusal.
fn readiness(info: Result<ModelInfo, Refusal>) -> Response {
    match info {
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => r.into_response(),
    }
}

/// `GET /v2/models/{name}`.
pub async fn model(State(api): State<Api>, Path(name): Path<String>) -> Response {
    described(named(&api, &name, None).await)
}

/// `GET /v2/models/{name}/versions/{version}`.
pub async fn model_version(
    State(api): State<Api>,
    Path((name, v)): Path<(String, String)>,
) -> Response {
    described(named(&api, &name, Some(&v)).await)
}

/// `GET /v2/models/{name}/ready`: 200 once a node has the model loaded to serve.
pub async fn model_ready(State(api): State<Api>, Path(name): Path<String>) -> Response {
    readiness(named(&api, &name, None).await)
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub async fn model_version_ready(
    State(api): State<Api>,
    Path((name, v)): Path<(String, String)>,
) -> Response {
    readiness(named(&api, &name, Some(&v)).await)
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run(api, name, None, headers, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub async fn infer_version(
    State(api): State<Api>,
    Path((name, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match version(&v) {
        Ok(v) => run(api, name, Some(v), headers, body).await,
        Err(r) => r.into_response(),
    }
}

/// The JSON's length from `Inference-Header-Content-Length`, if given.
fn header_len(headers: &HeaderMap) -> Result<Option<usize>, Refusal> {
    let Some(v) = headers.get("inference-header-content-length") else {
        return Ok(None);
    };
    let len = v.to_str().ok().and_then(|v| v.trim().parse().ok());
    len.map(Some).ok_or_else(|| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "Inference-Header-Content-Length is not a number".into(),
        )
    })
}

/// Reads an infer request's body (off the runtime: megabytes of tensor data are CPU work).
async fn read(headers: &HeaderMap, body: axum::body::Bytes) -> Result<request::Infer, Refusal> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if enc.as_bytes() != b"identity" {
            let why = "compressed requests are not supported: send the body uncompressed";
            return Err(Refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, why.into()));
        }
    }
    let len = header_len(headers)?;
    match tokio::task::spawn_blocking(move || request::parse(&body, len)).await {
        Ok(Ok(asked)) => Ok(asked),
        Ok(Err(why)) => Err(Refusal(StatusCode::BAD_REQUEST, why)),
        Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn run(
    api: Api,
    model: String,
    version: Option<u64>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    let asked = match read(&headers, body).await {
        Ok(asked) => asked,
        Err(r) => return r.into_response(),
    };
    let (images, tensor) = match asked.queries {
        request::Queries::Images(images) => (images.into_iter().map(ByteBuf::from).collect(), None),
        request::Queries::Tensor(t) => (Vec::new(), Some(t)),
    };
    let req = InferRequest {
        model: model.clone(),
        version,
        images,
        timeout_ms: asked.timeout_ms,
        tensor,
        labels: Vec::new(),
    };
    // The node answering enforces the deadline; the bus wait only covers a lost node.
    let wait = Duration::from_millis(req.timeout_ms.saturating_add(2000));
    match bus_client::infer(&api.client, &req, wait).await {
        Ok(InferReply::Done {
            version,
            predictions,
            node,
            queue_ms,
            run_ms,
            batch,
            ..
        }) => {
            let mut parameters = Map::new();
            parameters.insert("node".into(), json!(node));
            parameters.insert("queue_ms".into(), json!(queue_ms));
            parameters.insert("run_ms".into(), json!(run_ms));
            parameters.insert("batch".into(), json!(batch));
            let done = Done {
                model,
                version,
                id: asked.id,
                parameters,
            };
            respond(&api, done, &asked.outputs, &predictions).await
        }
        Ok(InferReply::Error { kind, message }) => error(status_of(kind), message),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// What an answered request's response says besides its outputs.
struct Done {
    model: String,
    version: u64,
    id: Option<String>,
    parameters: Map<String, Value>,
}

/// The response to an answered request.
async fn respond(
    api: &Api,
    done: Done,
    outputs: &[request::Wanted],
    predictions: &[bus_schemas::infer::Prediction],
) -> Response {
    // Labels for the classification extension come from the model's metadata.
    let classes = if outputs.iter().any(|w| w.class_count.is_some()) {
        model_info(api, &done.model, Some(done.version))
            .await
            .map(|i| i.classes)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let meta = response::Meta {
        model: &done.model,
        version: done.version,
        id: done.id.as_deref(),
        parameters: done.parameters,
        classes: &classes,
    };
    let body = response::write(meta, outputs, predictions);
    let mut resp = body.bytes.into_response();
    let h = resp.headers_mut();
    match body.header_len {
        Some(len) => {
            let ct = HeaderValue::from_static("application/octet-stream");
            h.insert(header::CONTENT_TYPE, ct);
            h.insert("inference-header-content-length", HeaderValue::from(len));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    resp
}
