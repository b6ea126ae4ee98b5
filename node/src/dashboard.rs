//! The dashboard: the built `frontend/` and a JSON API, served by axum on `--http`.

use crate::membership::MembershipHandle;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::path::Path;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

const NOT_BUILT: &str = "<!doctype html><title>IDunno</title><h1>IDunno</h1>\
<p>The dashboard is not built here (run <code>make frontend</code>). \
The JSON API is at <a href=\"api/members\">api/members</a>.</p>";

/// The dashboard's router: `/api/members`, `/healthz`, and the built frontend.
pub fn router(membership: MembershipHandle, frontend_dir: &Path) -> Router {
    let api = Router::new()
        .route("/api/members", get(members))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(membership);
    if frontend_dir.join("index.html").is_file() {
        let index = ServeFile::new(frontend_dir.join("index.html"));
        api.fallback_service(ServeDir::new(frontend_dir).fallback(index))
    } else {
        api.fallback(|| async { Html(NOT_BUILT) })
    }
}

async fn members(State(membership): State<MembershipHandle>) -> Response {
    match membership.view().await {
        Ok(view) => Json(view).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub fn spawn(listener: TcpListener, router: Router, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let serve =
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!("dashboard stopped: {e}");
        }
    })
}
