//! Jobs: the request API any node answers, the coordinator (one node at a time, by lease) that
//! assigns jobs to workers, and the worker that runs them with tch. Job records live in the KV
//! bucket `idunno-jobs`, so any node can take over coordinating and any worker can resume.

pub mod accepted;
pub mod api;
pub mod attempts;
pub mod cache;
pub mod coordinator;
mod dispatch;
pub mod ending;
mod fair;
mod import_run;
pub mod lease;
pub mod outputs;
mod serve_check;
mod serve_finish;
mod serve_ops;
pub mod settings;
pub mod store;
mod train_run;
pub mod worker;

use crate::membership::MembershipHandle;
use bus_schemas::jobs::{JobEvent, JobEventKind};
use bus_schemas::subjects;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why a job (or a request about one) failed. Each message is one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such model or architecture.
    #[error("{0}")]
    UnknownModel(String),
    /// No such dataset.
    #[error("{0}")]
    UnknownDataset(String),
    /// An SDFS file is missing.
    #[error("{0}")]
    NotFound(String),
    /// The input does not fit (shapes, classes, corrupt files, arguments).
    #[error("{0}")]
    BadInput(String),
    /// SDFS failed (a bus or metadata error: it may pass).
    #[error("file store: {0}")]
    Storage(String),
    /// No replica of an SDFS file delivered its bytes intact (all corrupt, or none recorded
    /// or answering): trying again soon would meet the same.
    #[error("file store: {0}")]
    Unreadable(String),
    /// The job was cancelled or given to another worker while this one ran it.
    #[error("stopped: the job was cancelled or reassigned")]
    Stopped,
    /// A deadline passed.
    #[error("{0}")]
    Timeout(String),
    /// The node is at a limit of work in progress (a queue or a concurrency limit is full):
    /// nothing was done, and a later try may succeed. The text names the limit.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl JobError {
    /// Whether the job's own input (its model, dataset or arguments) is at fault, so any
    /// worker would fail it the same way: the job fails at once rather than moving on.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            JobError::BadInput(_) | JobError::UnknownDataset(_) | JobError::UnknownModel(_)
        )
    }

    /// Whether the failure may pass by itself (the file store electing a leader after a
    /// partition heals, a deadline on a busy cluster, a full queue): the worker tries the
    /// attempt again, from its last checkpoint, before it fails the job.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            JobError::Storage(_) | JobError::Timeout(_) | JobError::Overloaded(_)
        )
    }

    /// Wraps an I/O error about `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
        move |e| JobError::Internal(format!("{}: {e}", path.display()))
    }
}

impl From<crate::ml::model::ModelError> for JobError {
    fn from(e: crate::ml::model::ModelError) -> Self {
        JobError::BadInput(e.to_string())
    }
}

/// What the jobs subsystem shares between its tasks.
pub struct Ctx {
    /// This node's id.
    pub id: String,
    /// The bus.
    pub client: async_nats::Client,
    /// Job records.
    pub store: store::JobStore,
    /// Cluster-wide settings (the fair-time policy).
    pub settings: settings::SettingsStore,
    /// Datasets and files from SDFS.
    pub cache: Arc<cache::Cache>,
    /// Models and splits loaded for inference (batch jobs and online requests).
    pub engine: Arc<crate::serving::engine::Engine>,
    /// Membership.
    pub membership: MembershipHandle,
    /// Where tch runs.
    pub device: tch::Device,
    /// Who coordinates.
    pub coordinator: watch::Receiver<lease::Coordinator>,
    /// Counters (garbage on the bus).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Copies JetStream keeps of the buckets and the results stream.
    pub kv_replicas: usize,
    /// Worker deaths after which the coordinator fails a job.
    pub max_worker_deaths: u32,
}

/// The default of `--max-worker-deaths`: a job whose workers died this many times fails.
pub const DEFAULT_MAX_WORKER_DEATHS: u32 = 3;
/// The largest `--max-worker-deaths` allowed.
pub const MAX_WORKER_DEATHS_LIMIT: u32 = 100;

impl Ctx {
    /// The membership view and every job record, as the coordinator and dispatcher see them.
    pub async fn snapshot(
        &self,
    ) -> anyhow::Result<(
        Vec<bus_schemas::membership::MemberRecord>,
        Vec<bus_schemas::jobs::JobRecord>,
    )> {
        let view = self
            .membership
            .view()
            .await
            .map_err(|_| anyhow::anyhow!("membership stopped"))?
            .members;
        Ok((view, self.store.list().await?))
    }

    /// Publishes a job event (best effort: the record in KV is the truth).
    pub async fn event(
        &self,
        job_id: &str,
        event: JobEventKind,
        worker: Option<&str>,
        detail: Option<String>,
    ) {
        let ev = JobEvent {
            job_id: job_id.into(),
            event,
            worker: worker.map(str::to_string),
            detail,
            at_ms: lease::now_ms(),
        };
        if let Err(e) = bus_client::publish(&self.client, subjects::job_events(), &ev).await {
            tracing::debug!("cannot publish a job event: {e}");
        }
    }
}

/// Settings of the jobs subsystem.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// This node's id.
    pub id: String,
    /// The node's data directory (the cache lives under it).
    pub data_dir: std::path::PathBuf,
    /// Where tch runs.
    pub device: tch::Device,
    /// Bound on SDFS metadata requests.
    pub request_timeout: Duration,
    /// Online inference batching.
    pub infer: crate::config::InferConfig,
    /// Size limits of the dataset and model files this node fetches.
    pub files: cache::FetchLimits,
    /// Worker deaths after which the coordinator fails a job.
    pub max_worker_deaths: u32,
}

/// How long one request for a job record, a setting or the lease may take.
pub const RECORD_CALL: Duration = Duration::from_millis(1500);

/// Opens the buckets (retrying until JetStream answers) and runs the API, the lease, the
/// coordinator and the worker until `shutdown`.
pub async fn serve(
    client: async_nats::Client,
    membership: MembershipHandle,
    metrics: Arc<crate::metrics::Metrics>,
    cfg: JobsConfig,
    coordinator_tx: watch::Sender<lease::Coordinator>,
    shutdown: CancellationToken,
) {
    let js = async_nats::jetstream::new(client.clone());
    // Job records, settings and the lease are small: a request that takes long went to a
    // bucket whose leader died, which answers nothing until its copies elect another (4–9 s).
    // Asking again soon finds the new leader within a second of the election, where JetStream's
    // default of 5 s per request would add up to that much on top.
    let mut records_js = js.clone();
    records_js.set_timeout(RECORD_CALL);
    let mut delay = Duration::from_millis(200);
    // New buckets and streams get the automatic replication; the replication task brings
    // them to the cluster's setting.
    let (store, lease_kv, settings, kv_replicas) = loop {
        let opened = async {
            let replicas = crate::replication::automatic(&client);
            let store = store::JobStore::open(&records_js, replicas).await?;
            let settings = settings::SettingsStore::open(&records_js, replicas).await?;
            let lease = store::open_bucket(
                &records_js,
                lease::BUCKET,
                "IDunno coordinator lease",
                replicas,
                lease::TTL,
            )
            .await?;
            anyhow::Ok((store, lease, settings, replicas))
        };
        match opened.await {
            Ok(opened) => break opened,
            Err(e) => tracing::warn!("jobs not available yet (is JetStream enabled?): {e:#}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(5)),
        }
    };
    let id = cfg.id.clone();
    let sdfs = bus_client::sdfs::SdfsClient::new(client.clone(), cfg.request_timeout * 5);
    let cache = Arc::new(cache::Cache::new(&cfg.data_dir, sdfs).with_limits(cfg.files));
    let engine =
        crate::serving::engine::Engine::new(cache.clone(), cfg.device, metrics.clone(), &cfg.infer);
    let ctx = Arc::new(Ctx {
        id: id.clone(),
        client: client.clone(),
        store,
        settings,
        cache,
        engine: Arc::new(engine),
        membership: membership.clone(),
        device: cfg.device,
        coordinator: coordinator_tx.subscribe(),
        metrics,
        kv_replicas,
        max_worker_deaths: cfg.max_worker_deaths,
    });
    let lease_task = tokio::spawn(lease::run(
        lease_kv,
        client.clone(),
        id,
        membership,
        coordinator_tx,
        shutdown.clone(),
    ));
    let api_task = tokio::spawn(api::serve(ctx.clone(), shutdown.clone()));
    let coord_task = tokio::spawn(coordinator::run(ctx.clone(), shutdown.clone()));
    let dispatch_task = tokio::spawn(dispatch::run(ctx.clone(), shutdown.clone()));
    let replication_task = tokio::spawn(crate::replication::run(
        client.clone(),
        js.clone(),
        ctx.settings.clone(),
        ctx.id.clone(),
        shutdown.clone(),
    ));
    let leaders_task = tokio::spawn(crate::replication::leaders::run(
        client.clone(),
        js.clone(),
        ctx.coordinator.clone(),
        shutdown.clone(),
    ));
    let stream_task = tokio::spawn(crate::serving::ensure_results_stream(
        js.clone(),
        kv_replicas,
        shutdown.clone(),
    ));
    let accepted_task = tokio::spawn(accepted::ensure_stream(
        js.clone(),
        kv_replicas,
        shutdown.clone(),
    ));
    let serve_task = tokio::spawn(crate::serving::Worker::serve(ctx.clone(), shutdown.clone()));
    let infer_task = tokio::spawn(crate::serving::infer::serve(
        ctx.clone(),
        cfg.infer,
        shutdown.clone(),
    ));
    let worker_task = tokio::spawn(worker::run(ctx, shutdown.clone()));
    let _ = tokio::join!(
        lease_task,
        api_task,
        coord_task,
        dispatch_task,
        worker_task,
        serve_task,
        infer_task,
        stream_task,
        accepted_task,
        replication_task,
        leaders_task
    );
}
