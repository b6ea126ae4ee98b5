//! The dashboard's HTTP/1.1 server: hyper with a cap on open connections and a header-read
//! timeout (which also closes idle keep-alive connections, and bounds a TLS handshake), the
//! client's address recorded for the login's rate limit, HTTPS when given a certificate, and
//! graceful shutdown.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_layer::Layer;

/// Connections open at once unless `--http-max-connections` says otherwise; further clients
/// wait in the listen backlog until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's headers (and how long an idle keep-alive
/// connection stays open) unless `--http-header-timeout-ms` says otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests (event streams end at once) may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The server's connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers.
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Marks a request that came over HTTPS (its login cookie is then `Secure`).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Why the dashboard's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{flag} {}: {source}", path.display())]
    Pem {
        /// The option that named the file.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("--http-tls-cert {}: no certificate", .0.display())]
    NoCertificate(std::path::PathBuf),
    /// The certificate and key do not make a server configuration.
    #[error("the dashboard's certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS side of the dashboard: a certificate and its key (PEM files).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |flag, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { flag, path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(pem("--http-tls-cert", cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("--http-tls-key", key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`, then lets open
/// requests finish (at most a few seconds).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let conns = TaskTracker::new();
    let server = Server {
        router,
        limits,
        tls,
        graceful: &graceful,
        conns: &conns,
    };
    server.accept(&listener, &shutdown).await;
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("dashboard: open requests did not finish within {SHUTDOWN_GRACE:?}");
    }
    // Every watched connection has ended; one still in its TLS handshake ends within the
    // header timeout.
    conns.close();
    let _ = tokio::time::timeout(limits.header_timeout, conns.wait()).await;
}

/// What serving connections needs.
struct Server<'a> {
    router: Router,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    graceful: &'a GracefulShutdown,
    conns: &'a TaskTracker,
}

impl Server<'_> {
    /// Accepts connections (at most `max_connections` open) until `shutdown`.
    async fn accept(&self, listener: &TcpListener, shutdown: &CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections.max(1)));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = slots.clone().acquire_owned() => p,
            };
            let Ok(permit) = permit else { return };
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("dashboard: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            self.connection(builder.clone(), stream, peer, permit);
        }
    }

    /// Serves one connection (over TLS when configured) in a task of its own.
    fn connection(
        &self,
        builder: hyper::server::conn::http1::Builder,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let service = axum::Extension(ConnectInfo::<SocketAddr>(peer)).layer(self.router.clone());
        let watcher = self.graceful.watcher();
        let Some(tls) = self.tls.clone() else {
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let conn = watcher.watch(conn);
            self.conns.spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "dashboard connection: {e}");
                }
                drop(permit);
            });
            return;
        };
        let handshake = self.limits.header_timeout;
        self.conns.spawn(async move {
            let stream = match tokio::time::timeout(handshake, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, "dashboard TLS handshake: {e}"),
                Err(_) => return tracing::debug!(%peer, "dashboard TLS handshake timed out"),
            };
            let service = axum::Extension(OverTls).layer(service);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, "dashboard connection: {e}");
            }
            drop(permit);
        });
    }
}
