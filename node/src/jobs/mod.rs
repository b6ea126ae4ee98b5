//! Jobs: the request API any node answers, the coordinator (one node at a time, by lease) that
//! assigns jobs to workers, and the worker that runs them with tch. Job records live in the KV
//! bucket `idunno-jobs`, so any node can take over coordinating and any worker can resume.

pub mod accepted;
pub mod api;
pub mod coordinator;
mod dispatch;
mod dp;
pub mod ending;
mod groups;
mod import_run;
pub mod index;
pub mod outputs;
mod retention;
mod routes_api;
mod serve_check;
mod serve_finish;
pub mod store;
mod takeover;
mod train_run;
pub mod worker;

use crate::cluster::{lease, settings};
pub use crate::error::JobError;
use crate::membership::MembershipHandle;
use crate::tasks::{ok, Tasks};
use bus_schemas::jobs::{JobEvent, JobEventKind};
use bus_schemas::subjects;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    pub cache: Arc<crate::cache::Cache>,
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
    /// The jobs that have not ended (see [`index`]).
    pub live: index::LiveJobs,
    /// Pages of every job kept, from the job index.
    pub index: index::Index,
    /// Model routes as this node's watch has them.
    pub routes: Arc<crate::serving::routes::Routes>,
    /// The model routes bucket (changes).
    pub routes_store: crate::cluster::routes::RoutesStore,
    /// The figures of the rollouts' arms this node answered.
    pub tally: Arc<crate::serving::tally::Tally>,
}

/// The default of `--max-worker-deaths`: a job whose workers died this many times fails.
pub const DEFAULT_MAX_WORKER_DEATHS: u32 = 3;
/// The default of `--keep-jobs`: the ended jobs the cluster keeps.
pub const DEFAULT_KEEP_JOBS: usize = 1000;
/// The largest `--max-worker-deaths` allowed.
pub const MAX_WORKER_DEATHS_LIMIT: u32 = 100;

/// Why the coordinator or the dispatcher cannot look at the jobs now (a later pass may).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The node is stopping.
    #[error("membership stopped")]
    MembershipStopped,
    /// The job index is loading or starting over.
    #[error("the job index is loading")]
    Loading,
}

impl Ctx {
    /// The membership view and every job that has not ended, as the coordinator and the
    /// dispatcher see them (from the job index: no record is read); an error while the index
    /// loads.
    pub async fn snapshot(
        &self,
    ) -> Result<
        (
            Vec<bus_schemas::membership::MemberRecord>,
            Vec<bus_schemas::jobs::JobRecord>,
        ),
        NotReady,
    > {
        let view = (self.membership.view().await)
            .map_err(|_| NotReady::MembershipStopped)?
            .members;
        let live = self.live.borrow().clone();
        if !live.loaded {
            return Err(NotReady::Loading);
        }
        Ok((view, live.jobs.values().cloned().collect()))
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
    pub infer: crate::serving::args::InferConfig,
    /// Size limits of the dataset and model files this node fetches.
    pub files: crate::cache::FetchLimits,
    /// Worker deaths after which the coordinator fails a job.
    pub max_worker_deaths: u32,
    /// Ended jobs kept (see [`retention`]).
    pub keep_jobs: usize,
}

/// What the jobs subsystem publishes to the rest of the node.
pub struct Published {
    /// Who coordinates (for membership).
    pub coordinator: watch::Sender<lease::Coordinator>,
    /// The jobs that have not ended and those that ended last (for the dashboard).
    pub live: watch::Sender<Arc<index::Live>>,
    /// The figures of the rollouts' arms this node answers (for the control API).
    pub tally: Arc<crate::serving::tally::Tally>,
}

/// The buckets the jobs subsystem keeps its state in.
struct Buckets {
    store: store::JobStore,
    lease: async_nats::jetstream::kv::Store,
    settings: settings::SettingsStore,
    routes: crate::cluster::routes::RoutesStore,
    replicas: usize,
}

/// Opens the buckets, retrying until JetStream answers; `None` at `shutdown`.
async fn open(client: &async_nats::Client, shutdown: &CancellationToken) -> Option<Buckets> {
    // Job records, settings and the lease are small: a request that takes long went to a
    // bucket whose leader died, which answers nothing until its copies elect another (4–9 s).
    // Asking again soon finds the new leader within a second of the election, where JetStream's
    // default of 5 s per request would add up to that much on top.
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(crate::cluster::RECORD_CALL);
    let mut delay = Duration::from_millis(200);
    loop {
        // New buckets get the automatic replication; the replication task brings them to the
        // cluster's setting.
        let replicas = crate::cluster::replication::automatic(client);
        let opened = async {
            let lease = crate::cluster::buckets::open_bucket(
                &js,
                lease::BUCKET,
                "IDunno coordinator lease",
                replicas,
                lease::TTL,
            );
            Ok::<_, crate::cluster::error::KvError>(Buckets {
                store: store::JobStore::open(&js, replicas).await?,
                settings: settings::SettingsStore::open(&js, replicas).await?,
                routes: crate::cluster::routes::RoutesStore::open(&js, replicas).await?,
                lease: lease.await?,
                replicas,
            })
        };
        match opened.await {
            Ok(opened) => return Some(opened),
            Err(e) => tracing::warn!("jobs not available yet (is JetStream enabled?): {e:#}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(5)),
        }
    }
}

/// Opens the buckets and runs the API, the lease, the coordinator, the dispatcher, the
/// worker, serving and the cluster's replication until `shutdown`; the first of them to fail
/// stops the node.
pub async fn serve(
    client: async_nats::Client,
    membership: MembershipHandle,
    metrics: Arc<crate::metrics::Metrics>,
    cfg: JobsConfig,
    published: Published,
    shutdown: CancellationToken,
) -> Result<(), crate::tasks::TaskError> {
    let Published {
        coordinator: coordinator_tx,
        live: live_tx,
        tally,
    } = published;
    let Some(buckets) = open(&client, &shutdown).await else {
        return Ok(());
    };
    let sdfs = bus_client::sdfs::SdfsClient::new(client.clone(), cfg.request_timeout * 5);
    let cache = Arc::new(crate::cache::Cache::new(&cfg.data_dir, sdfs).with_limits(cfg.files));
    let engine =
        crate::serving::engine::Engine::new(cache.clone(), cfg.device, metrics.clone(), &cfg.infer);
    let live = live_tx.subscribe();
    let (index, index_runner) = index::new(&buckets.store, live_tx);
    let (table_tx, table) = watch::channel(None);
    let ctx = Arc::new(Ctx {
        id: cfg.id.clone(),
        client: client.clone(),
        store: buckets.store,
        settings: buckets.settings,
        cache,
        engine: Arc::new(engine),
        membership: membership.clone(),
        device: cfg.device,
        coordinator: coordinator_tx.subscribe(),
        metrics,
        kv_replicas: buckets.replicas,
        max_worker_deaths: cfg.max_worker_deaths,
        live,
        index,
        routes: Arc::new(crate::serving::routes::Routes::new(table)),
        routes_store: buckets.routes.clone(),
        tally,
    });
    let mut tasks = Tasks::new(shutdown.clone());
    follow_routes(&mut tasks, &ctx, table_tx);
    let following = index::run(index_runner, ctx.metrics.clone(), tasks.token());
    tasks.service("job index", ok(following));
    let lease = lease::run(
        buckets.lease,
        client,
        cfg.id,
        membership,
        coordinator_tx,
        shutdown,
    );
    tasks.service("coordinator lease", ok(lease));
    let retention = retention::run(ctx.clone(), cfg.keep_jobs, tasks.token());
    tasks.service("job retention", ok(retention));
    spawn_tasks(&mut tasks, ctx, cfg.infer);
    tasks.run().await
}

/// Spawns the task that follows the model routes bucket into `table`.
fn follow_routes(
    tasks: &mut Tasks,
    ctx: &Ctx,
    table: watch::Sender<crate::serving::routes::Table>,
) {
    let (store, metrics) = (ctx.routes_store.store().clone(), ctx.metrics.clone());
    let routes = crate::serving::routes::run(store, table, metrics, tasks.token());
    tasks.service("model routes", ok(routes));
}

/// Spawns the jobs subsystem's tasks (and serving's, and the cluster's replication).
fn spawn_tasks(tasks: &mut Tasks, ctx: Arc<Ctx>, infer: crate::serving::args::InferConfig) {
    let stop = tasks.token();
    let js = async_nats::jetstream::new(ctx.client.clone());
    tasks.service("jobs API", ok(api::serve(ctx.clone(), stop.clone())));
    tasks.service(
        "coordinator",
        ok(coordinator::run(ctx.clone(), stop.clone())),
    );
    tasks.service("dispatcher", ok(dispatch::run(ctx.clone(), stop.clone())));
    let replication = crate::cluster::replication::run(
        ctx.client.clone(),
        js.clone(),
        ctx.settings.clone(),
        ctx.id.clone(),
        stop.clone(),
    );
    tasks.service("replication", ok(replication));
    let leaders = crate::cluster::replication::leaders::run(
        ctx.client.clone(),
        js.clone(),
        ctx.coordinator.clone(),
        stop.clone(),
    );
    tasks.service("stream leaders", ok(leaders));
    let results = crate::serving::ensure_results_stream(js.clone(), ctx.kv_replicas, stop.clone());
    tasks.once("results stream", ok(results));
    let accepted = accepted::ensure_stream(js, ctx.kv_replicas, stop.clone());
    tasks.once("accepted stream", ok(accepted));
    let deps = Arc::new(crate::serving::Deps {
        id: ctx.id.clone(),
        client: ctx.client.clone(),
        cache: ctx.cache.clone(),
        engine: ctx.engine.clone(),
        metrics: ctx.metrics.clone(),
        kv_replicas: ctx.kv_replicas,
        routes: ctx.routes.clone(),
        tally: ctx.tally.clone(),
    });
    let serving = crate::serving::Worker::serve(deps.clone(), stop.clone());
    tasks.service("serving", ok(serving));
    let models = crate::serving::describe::serve(deps.clone(), stop.clone());
    tasks.service("model queries", ok(models));
    let online = crate::serving::infer::serve(deps, infer, stop.clone());
    tasks.service("online inference", ok(online));
    tasks.service("worker", ok(worker::run(ctx, stop)));
}
