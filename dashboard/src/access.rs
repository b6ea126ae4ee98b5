//! The access log: one line per HTTP request (method, path, status, milliseconds to the
//! response's head, peer) under the target `idunno::access`, at `info` (probes of `/healthz`,
//! `/readyz` and `/v2/health/…` at `debug`). The query string is left out.

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::time::Instant;

/// Middleware: logs each request once its response's head is ready.
pub async fn log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let probe = path == "/healthz" || path == "/readyz" || path.starts_with("/v2/health/");
    if probe {
        tracing::debug!(target: "idunno::access", %method, path, status, ms, peer, "http");
    } else {
        tracing::info!(target: "idunno::access", %method, path, status, ms, peer, "http");
    }
    response
}
