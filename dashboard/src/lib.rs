//! The dashboard: the built `frontend/`, a JSON API (`docs/api.md`), a live event stream and
//! Prometheus metrics, served by axum on `--http`.

mod access;
mod archive;
mod auth;
mod body;
mod cluster;
mod events;
mod files;
mod guard;
mod infer;
mod live;
pub mod model;
mod oip;
mod prom;
pub mod ready;
mod server;
pub mod sessions;
mod uploads;

pub use body::{DEFAULT_MAX_INFER_BODY, MAX_JSON_BODY};
pub use server::{
    serve, tls_acceptor, OverTls, ServerLimits, TlsError, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
};
pub use uploads::{DEFAULT_MAX_UPLOAD_BODY, UPLOADS_AT_ONCE};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use idunno_membership::MembershipHandle;
use idunno_metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

const NOT_BUILT: &str = "<!doctype html><title>IDunno</title><h1>IDunno</h1>\
<p>The dashboard is not built here (run <code>make frontend</code>). \
The JSON API is at <a href=\"api/members\">api/members</a>.</p>";

/// Event streams open at once unless `--http-max-streams` says otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 64;

/// The dashboard's request limits and the names it answers to (`docs/api.md`, "Limits").
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest `POST /api/infer` body in bytes.
    pub max_infer_body: usize,
    /// Largest model or dataset upload in bytes.
    pub max_upload_body: u64,
    /// Event streams (`GET /api/events`) open at once; more get 503.
    pub max_streams: usize,
    /// Host names served besides the bind address (and `localhost` on loopback); `*` for any.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_infer_body: DEFAULT_MAX_INFER_BODY,
            max_upload_body: DEFAULT_MAX_UPLOAD_BODY,
            max_streams: DEFAULT_MAX_STREAMS,
            allowed_hosts: Vec::new(),
        }
    }
}

/// What the dashboard reads from the rest of the node.
pub struct DashboardDeps {
    /// This node's id.
    pub id: String,
    /// The bus.
    pub client: async_nats::Client,
    /// The membership view.
    pub membership: MembershipHandle,
    /// This node's counters.
    pub metrics: Arc<Metrics>,
    /// The built frontend.
    pub frontend_dir: PathBuf,
    /// The token the API requires, if any.
    pub token: Option<String>,
    /// The cluster's SDFS replication factor.
    pub replication: usize,
    /// Bound on each request to the cluster.
    pub request_timeout: Duration,
    /// The address the dashboard is bound to.
    pub bind: SocketAddr,
    /// This machine's host name (served on a non-loopback bind).
    pub hostname: Option<String>,
    /// Request limits.
    pub limits: HttpLimits,
    /// The jobs that have not ended and those that ended last, from the job index.
    pub live_jobs: idunno_cluster::live_jobs::LiveJobs,
    /// The node's readiness (`/readyz`, `/v2/health/ready`).
    pub readiness: ready::Readiness,
    /// Where uploads are staged (emptied at start).
    pub staging_dir: PathBuf,
}

/// What the API handlers share.
#[derive(Clone)]
struct Api {
    id: String,
    client: async_nats::Client,
    membership: MembershipHandle,
    metrics: Arc<Metrics>,
    jobs: JobsClient,
    sdfs: SdfsClient,
    live: live::LiveHandle,
    manifests: files::Manifests,
    replication: usize,
    /// One permit per open event stream.
    streams: Arc<Semaphore>,
    max_streams: usize,
    uploads: uploads::Uploads,
    shutdown: CancellationToken,
}

/// Starts the live view (tasks of `tasks`) and returns the dashboard's router (the API of
/// `docs/api.md`, the metrics and the built frontend).
pub fn router(deps: DashboardDeps, tasks: &mut idunno_cluster::tasks::Tasks) -> Router {
    let shutdown = tasks.token();
    let jobs = JobsClient::new(deps.client.clone(), deps.request_timeout);
    let live_deps = live::LiveDeps {
        id: deps.id.clone(),
        client: deps.client.clone(),
        membership: deps.membership.clone(),
        jobs: deps.live_jobs.clone(),
    };
    let live = live::spawn(live_deps, tasks);
    let api = Api {
        id: deps.id,
        sdfs: SdfsClient::new(deps.client.clone(), deps.request_timeout),
        client: deps.client,
        membership: deps.membership,
        metrics: deps.metrics,
        jobs,
        live,
        manifests: Default::default(),
        replication: deps.replication,
        streams: Arc::new(Semaphore::new(deps.limits.max_streams)),
        max_streams: deps.limits.max_streams,
        uploads: uploads::Uploads::new(deps.staging_dir, deps.limits.max_upload_body),
        shutdown,
    };
    let hosts = guard::Hosts::new(deps.bind, deps.hostname, &deps.limits.allowed_hosts);
    let infer_limit = body::BodyLimit(deps.limits.max_infer_body);
    let auth = auth::Auth::new(deps.token.as_deref());
    let app = api_routes(api, auth.clone(), infer_limit)
        .merge(open_routes(auth))
        .merge(health_routes(deps.readiness));
    let app = if deps.frontend_dir.join("index.html").is_file() {
        let index = ServeFile::new(deps.frontend_dir.join("index.html"));
        app.fallback_service(ServeDir::new(&deps.frontend_dir).fallback(index))
    } else {
        app.fallback(|| async { Html(NOT_BUILT) })
    };
    app.layer(axum::middleware::from_fn(body::media_types))
        .layer(axum::middleware::from_fn_with_state(hosts, guard::check))
        .layer(axum::middleware::from_fn(access::log))
}

/// The API and the metrics, behind the token when there is one.
fn api_routes(api: Api, auth: auth::Auth, infer_limit: body::BodyLimit) -> Router {
    Router::new()
        .route("/api/members", get(cluster::members))
        .route("/api/workers", get(cluster::workers))
        .route("/api/jobs", get(cluster::list).post(cluster::submit))
        .route("/api/jobs/{id}", get(cluster::get))
        .route("/api/jobs/{id}/cancel", post(cluster::cancel))
        .route("/api/files", get(files::files))
        .route("/api/models", get(files::models))
        .route("/api/models/{name}/upload", post(uploads::model))
        .route("/api/datasets", get(files::datasets))
        .route("/api/datasets/{name}/upload", post(uploads::dataset))
        .route("/api/stats", get(events::stats))
        .route("/api/events", get(events::events))
        .route(
            "/api/infer",
            post(infer::infer).layer(axum::Extension(infer_limit)),
        )
        .route("/metrics", get(prom::metrics))
        .merge(oip_routes(infer_limit))
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::require,
        ))
        .with_state(api)
}

/// The Open Inference Protocol's model metadata, readiness and infer (see [`oip`]).
fn oip_routes(infer_limit: body::BodyLimit) -> Router<Api> {
    let limit = axum::Extension(infer_limit);
    Router::new()
        .route("/v2/models/{name}", get(oip::model))
        .route("/v2/models/{name}/ready", get(oip::model_ready))
        .route("/v2/models/{name}/infer", post(oip::infer).layer(limit))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(oip::model_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(oip::model_version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(oip::infer_version).layer(limit),
        )
}

/// Liveness and readiness (`/healthz`, `/readyz`, the protocol's `/v2/health/*`) and the
/// protocol's server metadata: open to everyone, as probes are.
fn health_routes(readiness: ready::Readiness) -> Router {
    Router::new()
        .route("/readyz", get(ready::readyz))
        .route("/v2/health/ready", get(oip::ready))
        .route("/v2/health/live", get(oip::live))
        .route("/v2", get(oip::server_metadata))
        .route("/v2/{*rest}", get(oip::not_found).post(oip::not_found))
        .with_state(readiness)
}

/// Logging in and out, the health check, and unknown API paths: open to everyone.
fn open_routes(auth: auth::Auth) -> Router {
    Router::new()
        .route("/api/auth", get(auth::status))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .with_state(auth)
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/{*rest}", get(not_found).post(not_found))
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "no such API endpoint (see docs/api.md)".into(),
    )
}

/// An error as JSON, shaped like the bus's error replies, with the kind of its status.
fn problem(status: StatusCode, message: String) -> Response {
    problem_kind(status, status_kind(status), message)
}

/// The error kind of an HTTP status.
fn status_kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_input",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "already_ended",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => "unavailable",
        _ => "internal",
    }
}

/// An error as JSON with an explicit kind.
fn problem_kind(status: StatusCode, kind: &str, message: String) -> Response {
    let body = serde_json::json!({"reply": "error", "kind": kind, "message": message});
    (status, Json(body)).into_response()
}
