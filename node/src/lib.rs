//! An IDunno node: the wiring of membership, SDFS, the dashboard, jobs and serving, and the
//! tch models (the only part that links libtorch).
//!
//! [`run`] wires the subsystems together; each subsystem is one task owned by `run`, reached
//! through a cloneable handle, and stopped by the shutdown token.

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod control;
pub mod error;
pub mod flags;
pub mod jobs;
pub mod logging;
pub mod ml;
pub mod serving;
pub mod systemd;

pub use idunno_cluster as cluster;
pub use idunno_cluster::{cas, kv_index, subscribe, tasks};
pub use idunno_dashboard as dashboard;
pub use idunno_membership as membership;
pub use idunno_metrics as metrics;
pub use idunno_metrics::stages;
pub use idunno_sdfs as sdfs;

use cluster::lease::Coordinator;
use config::NodeConfig;
use error::NodeError;
use membership::service::{Connection, MembershipConfig, WhoCoordinates};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasks::Tasks;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The libtorch version this binary was built against.
pub const LIBTORCH_VERSION: &str = env!("IDUNNO_LIBTORCH_VERSION");

/// Connects to the bus as `name`, keeping a reconnect delay short so that every node is back
/// soon after a server restart; connection changes go to `events` when given.
async fn connect(
    cfg: &NodeConfig,
    name: &str,
    events: Option<mpsc::Sender<Connection>>,
) -> Result<async_nats::Client, NodeError> {
    let prefix = cfg.bus.inbox_prefix();
    let opts = cfg
        .bus
        .nats_options(name)
        .await?
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 50).min(250)))
        .event_callback(move |event| {
            let events = events.clone();
            let prefix = prefix.clone();
            async move {
                bus_client::denials::note_event(&prefix, &event);
                let change = match event {
                    async_nats::Event::Connected => Connection::Up,
                    async_nats::Event::Disconnected => Connection::Down,
                    other => {
                        tracing::info!("bus: {other}");
                        return;
                    }
                };
                if let Some(events) = events {
                    let _ = events.send(change).await;
                }
            }
        });
    Ok(opts.connect(cfg.bus.servers()?).await?)
}

/// Runs the node until `shutdown` is cancelled; then it leaves the cluster and returns. A
/// subsystem that fails (or ends) while the node runs stops it: the error is returned.
pub async fn run(
    cfg: NodeConfig,
    logs: logging::LogFiles,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let started = Instant::now();
    let unservable = |source| NodeError::Http {
        addr: cfg.http,
        source,
    };
    let listener = (tokio::net::TcpListener::bind(cfg.http).await).map_err(unservable)?;
    let http = listener.local_addr().map_err(unservable)?;
    let client = connect(&cfg, &format!("idunno-node-{}", cfg.id), None).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let _ = metrics.host.set(metrics::host::Host {
        data_dir: cfg.data_dir.clone(),
        tch_threads: u32::try_from(cfg.threads).unwrap_or(u32::MAX),
        device: cfg.device.name().into(),
        cpus: metrics::host::cpus(),
    });
    let (coordinator_tx, coordinator_rx) = watch::channel(Coordinator::default());
    let members_stop = CancellationToken::new();
    let who = WhoCoordinates(Arc::new(move || coordinator_rx.borrow().node.clone()));
    let (membership, members_task) =
        start_membership(&cfg, http, metrics.clone(), who, members_stop.clone()).await?;
    let mut tasks = Tasks::new(shutdown.clone());
    let tally = Arc::new(serving::tally::Tally::default());
    let deps = control::ControlDeps {
        client: client.clone(),
        id: cfg.id.clone(),
        membership: membership.clone(),
        metrics: metrics.clone(),
        logs,
        started,
        tally: tally.clone(),
    };
    control::spawn(deps, &mut tasks).await?;
    let (c, m, stop) = (client.clone(), membership.clone(), shutdown.clone());
    tasks.service("sdfs", serve_sdfs(cfg.clone(), c, m, metrics.clone(), stop));
    let (c, m, jobs_cfg) = (client.clone(), membership.clone(), jobs_config(&cfg)?);
    let (live_tx, live_jobs) = jobs::index::channel();
    let published = jobs::Published {
        coordinator: coordinator_tx,
        live: live_tx,
        tally,
    };
    let jobs = jobs::serve(c, m, metrics.clone(), jobs_cfg, published, tasks.token());
    tasks.service("jobs", jobs);
    let dash = (client, membership, metrics, live_jobs);
    start_dashboard(&cfg, (listener, http), dash, &mut tasks)?;
    tracing::info!(id = %cfg.id, %http, nats = %cfg.bus.url, "node started");
    let stopped = tasks.run().await;
    members_stop.cancel();
    let _ = members_task.await;
    tracing::info!("node stopped");
    Ok(stopped?)
}

/// Starts membership on a connection of its own: its probes, acks and refutations must not
/// queue behind bulk data (file chunks, inference batches) on the shared connection, or a
/// busy node's answers arrive after its suspicion ran out.
async fn start_membership(
    cfg: &NodeConfig,
    http: std::net::SocketAddr,
    metrics: Arc<metrics::Metrics>,
    coordinator: WhoCoordinates,
    stop: CancellationToken,
) -> Result<(membership::MembershipHandle, tokio::task::JoinHandle<()>), NodeError> {
    let (conn_tx, conn_rx) = mpsc::channel(16);
    let name = format!("idunno-node-{}-members", cfg.id);
    let members_client = connect(cfg, &name, Some(conn_tx)).await?;
    let mcfg = MembershipConfig {
        id: cfg.id.clone(),
        host: cfg.host.clone(),
        zone: cfg.zone.clone(),
        http: Some(http.to_string()),
        detector: cfg.detector.clone(),
        request_timeout: cfg.request_timeout,
        coordinator: Some(coordinator),
    };
    Ok(membership::spawn(members_client, mcfg, metrics, conn_rx, stop).await?)
}

fn jobs_config(cfg: &NodeConfig) -> Result<jobs::JobsConfig, NodeError> {
    Ok(jobs::JobsConfig {
        id: cfg.id.clone(),
        data_dir: cfg.data_dir.clone(),
        device: cfg.device.tch()?,
        request_timeout: cfg.request_timeout,
        infer: cfg.infer,
        files: cfg.files,
        max_worker_deaths: cfg.max_worker_deaths,
        keep_jobs: cfg.keep_jobs,
    })
}

/// Serves the dashboard (and its live snapshots) on `listener`, bound to `bind`.
fn start_dashboard(
    cfg: &NodeConfig,
    (listener, bind): (tokio::net::TcpListener, std::net::SocketAddr),
    (client, membership, metrics, live_jobs): (
        async_nats::Client,
        membership::MembershipHandle,
        Arc<metrics::Metrics>,
        jobs::index::LiveJobs,
    ),
    tasks: &mut Tasks,
) -> Result<(), NodeError> {
    let tls = match &cfg.http_tls {
        Some((cert, key)) => Some(dashboard::tls_acceptor(cert, key)?),
        None => None,
    };
    if cfg.http_token.is_none() && !bind.ip().is_loopback() {
        tracing::warn!(http = %bind, "the dashboard API is exposed without --http-token: anyone who can reach it can cancel and submit jobs");
    }
    let readiness =
        dashboard::ready::Readiness::new(client.clone(), membership.clone(), metrics.clone());
    let notify = systemd::notify_when_ready(readiness.clone(), tasks.token());
    tasks.once("systemd readiness", tasks::ok(notify));
    let dash = dashboard::DashboardDeps {
        id: cfg.id.clone(),
        client,
        membership,
        readiness,
        metrics,
        frontend_dir: cfg.frontend_dir.clone(),
        token: cfg.http_token.as_ref().map(|t| t.0.clone()),
        replication: cfg.sdfs.replication,
        request_timeout: cfg.request_timeout,
        bind,
        hostname: Some(hostname()),
        limits: cfg.http_limits.clone(),
        live_jobs,
        staging_dir: cfg.data_dir.join("staging"),
    };
    let router = dashboard::router(dash, tasks);
    let server = dashboard::serve(listener, router, cfg.http_server, tls, tasks.token());
    tasks.service("dashboard", tasks::ok(server));
    Ok(())
}

/// Opens SDFS (retrying while the bus or JetStream is not reachable yet) and serves it until
/// `shutdown`.
async fn serve_sdfs(
    cfg: NodeConfig,
    client: async_nats::Client,
    membership: membership::MembershipHandle,
    metrics: Arc<metrics::Metrics>,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let mut delay = Duration::from_millis(200);
    let sdfs = loop {
        let opened = sdfs::Sdfs::open(
            &cfg.id,
            client.clone(),
            cfg.sdfs.clone(),
            &cfg.data_dir,
            membership.clone(),
            metrics.clone(),
        );
        match opened.await {
            Ok(sdfs) => break sdfs,
            Err(e) => tracing::warn!(
                "SDFS not available yet (is JetStream enabled on the server?): {e:#}"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(5)),
        }
    };
    let task = sdfs.spawn(shutdown).await?;
    task.await?;
    Ok(())
}

/// This machine's hostname (`localhost` if it cannot be read).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
