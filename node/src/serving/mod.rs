//! Inference on a worker: the coordinator tells it to join or leave a job
//! (`idunno.v1.nodes.<id>.assign`); while it serves a job it takes the batches the coordinator
//! sends to its own work subject of the job (`idunno.v1.jobs.<job>.work.<id>`) one at a time,
//! runs them, stores the results in the `IDUNNO_RESULTS` stream under the message id
//! `<job>.<batch>.<worker>` (so a batch sent twice to the same worker is stored once), and
//! answers with the stream sequence of its results, which the coordinator accepts.

pub mod admit;
pub mod args;
mod batch;
mod batcher;
pub mod describe;
pub mod engine;
pub mod executor;
pub mod infer;
mod lru;
mod output;
mod queries;
mod results;
pub mod routes;
pub mod share;
pub mod tally;

use crate::error::JobError;
use crate::stages::Stage;
use async_nats::jetstream::{self, stream};
use bus_schemas::serve::{
    AssignReply, AssignRequest, ServeTarget, WorkBatch, WorkErrorKind, WorkReply,
};
use bus_schemas::{decode, encode, subjects};
use engine::Serving;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Batches whose results one job's worker stores at once while the next batch runs.
const STORING: usize = 4;

/// Assignment requests a worker handles at once (each may load a model and a split); one
/// beyond is answered at once with an `overloaded` error.
pub const MAX_ASSIGNS: usize = 8;

/// Creates the results stream if needed: every job's results, kept a day and at most 1 GiB,
/// with a 10-minute window in which a second copy of a batch (same message id) is dropped.
/// JetStream reserves a stream's byte limit on the server; when the server cannot reserve
/// 1 GiB (a small disk or `max_file_store`), smaller limits are tried, down to 64 MiB.
pub async fn results_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let mut last = None;
    for max_bytes in [1i64 << 30, 256 << 20, 64 << 20] {
        let config = stream::Config {
            name: subjects::RESULTS_STREAM.into(),
            description: Some("IDunno inference results, one message per batch".into()),
            subjects: vec![subjects::all_job_results()],
            max_age: Duration::from_secs(24 * 3600),
            max_bytes,
            duplicate_window: Duration::from_secs(600),
            num_replicas: replicas,
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                tracing::warn!(max_bytes, "cannot create the results stream: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("tried at least once"))
}

/// Keeps trying to create the results stream (every 5 s) until it exists or `shutdown`.
pub async fn ensure_results_stream(
    js: jetstream::Context,
    replicas: usize,
    shutdown: CancellationToken,
) {
    loop {
        match results_stream(&js, replicas).await {
            Ok(_) => return,
            Err(e) => tracing::warn!("no results stream yet, inference jobs wait: {e:#}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// The message id of a worker's results of a batch: `<job>.<batch>.<worker>`. The worker's
/// identity is part of it, so a copy published by anyone else under another worker's name
/// cannot make the real one a duplicate that is never stored; a copy under this worker's name is
/// caught in [`Worker::store`] by comparing contents.
pub fn results_msg_id(job_id: &str, batch_id: u64, worker: &str) -> String {
    format!("{job_id}.{batch_id}.{worker}")
}

/// What became of one batch message.
enum Taken {
    /// Answer this at once (an error).
    Answer(WorkReply),
    /// Store these results (holding a storing permit), then answer.
    Store(
        WorkBatch,
        engine::BatchOutput,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

/// What serving needs of the node, and nothing more.
pub struct Deps {
    /// This node's id.
    pub id: String,
    /// The bus.
    pub client: async_nats::Client,
    /// Files fetched from SDFS.
    pub cache: Arc<crate::cache::Cache>,
    /// Models and splits loaded for inference (batch jobs and online requests).
    pub engine: Arc<engine::Engine>,
    /// Counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Copies JetStream keeps of the results stream.
    pub kv_replicas: usize,
    /// Model routes (aliases, rollouts), as this node's watch of them has them.
    pub routes: Arc<routes::Routes>,
    /// The figures of the rollouts' arms this node answered.
    pub tally: Arc<tally::Tally>,
}

/// The worker's serving side.
pub struct Worker {
    ctx: Arc<Deps>,
    js: jetstream::Context,
    serving: Mutex<BTreeMap<String, CancellationToken>>,
    /// The jobs being served, and the assignments being answered.
    jobs: TaskTracker,
}

impl Worker {
    /// Answers assignments until `shutdown`.
    pub async fn serve(ctx: Arc<Deps>, shutdown: CancellationToken) {
        let js = jetstream::new(ctx.client.clone());
        let me = Arc::new(Worker {
            ctx: ctx.clone(),
            js,
            serving: Mutex::new(BTreeMap::new()),
            jobs: TaskTracker::new(),
        });
        let subject = subjects::node_assign(&ctx.id);
        let subscribed =
            crate::subscribe::retrying(&ctx.client, subject, None, "assignments", &shutdown);
        let Some(mut sub) = subscribed.await else {
            return;
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ASSIGNS));
        loop {
            tokio::select! {
                            _ = shutdown.cancelled() => break,
                            Some(msg) = sub.next() => {
                                let me = me.clone();
                                let Ok(slot) = slots.clone().try_acquire_owned() else {
                                    me.ctx.metrics.shed();
                                    let message = format!(
                                        "overloaded: a worker handles at most {MAX_ASSIGNS} assignments at once"
                                    );
            let reply = me.refusal(message, false, true);
                                    if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                                        let _ = me.ctx.client.publish(to, bytes.into()).await;
                                    }
                                    continue;
                                };
                                let (shutdown, jobs) = (shutdown.clone(), me.jobs.clone());
                                jobs.spawn(async move {
                                    let reply = match decode::<AssignRequest>(&msg.payload) {
                                        Ok(req) => me.assign(req, &shutdown).await,
                                        Err(e) => {
                                            me.ctx.metrics.garbage();
                                            me.refusal(e.to_string(), false, false)
                                        }
                                    };
                                    if let (Some(to), Ok(bytes)) = (msg.reply, encode(&reply)) {
                                        let _ = me.ctx.client.publish(to, bytes.into()).await;
                                    }
                                    drop(slot);
                                });
                            }
                        }
        }
        for token in me.serving.lock().await.values() {
            token.cancel();
        }
        me.jobs.close();
        me.jobs.wait().await;
    }

    /// This worker's refusal to join (see [`AssignReply::Error`] for the flags).
    fn refusal(&self, message: String, bad_input: bool, transient: bool) -> AssignReply {
        AssignReply::Error {
            worker: self.ctx.id.clone(),
            message,
            bad_input,
            transient,
        }
    }

    async fn assign(
        self: &Arc<Self>,
        req: AssignRequest,
        shutdown: &CancellationToken,
    ) -> AssignReply {
        match req {
            AssignRequest::Join { target } => self.join(target, shutdown).await,
            AssignRequest::Leave { job_id } => {
                if let Some(token) = self.serving.lock().await.remove(&job_id) {
                    tracing::info!(job = %job_id, "no longer serving");
                    token.cancel();
                }
                self.done().await
            }
        }
    }

    /// Joins a job: loads its model and split, subscribes to its work subjects and takes its
    /// batches until it leaves.
    async fn join(
        self: &Arc<Self>,
        target: ServeTarget,
        shutdown: &CancellationToken,
    ) -> AssignReply {
        let refused = |message, bad_input, transient| self.refusal(message, bad_input, transient);
        if let Err(e) = bus_schemas::validate_token(&target.job_id) {
            return refused(format!("bad job id: {e}"), false, false);
        }
        if self.serving.lock().await.contains_key(&target.job_id) {
            return self.done().await;
        }
        let serving = match self.ctx.engine.prepare(&target).await {
            Ok(s) => s,
            Err(e) => return refused(e.to_string(), e.is_bad_input(), e.is_transient()),
        };
        let client = &self.ctx.client;
        let work = client.subscribe(subjects::job_work(&target.job_id, &self.ctx.id));
        let again = subjects::job_work_again(&target.job_id, &self.ctx.id);
        let sub = match tokio::try_join!(work, client.subscribe(again)) {
            Ok(subs) => subs,
            Err(e) => return refused(e.to_string(), false, true),
        };
        let token = shutdown.child_token();
        let mut map = self.serving.lock().await;
        if map.contains_key(&target.job_id) {
            return AssignReply::Done {
                worker: self.ctx.id.clone(),
                serving: map.keys().cloned().collect(),
                lanes: self.lanes(),
            };
        }
        map.insert(target.job_id.clone(), token.clone());
        drop(map);
        tracing::info!(job = %target.job_id, "serving");
        (self.jobs).spawn(self.clone().take_batches(serving, sub, token));
        self.done().await
    }

    async fn done(&self) -> AssignReply {
        AssignReply::Done {
            worker: self.ctx.id.clone(),
            serving: self.serving.lock().await.keys().cloned().collect(),
            lanes: self.lanes(),
        }
    }

    /// The batches this worker runs at once.
    fn lanes(&self) -> u32 {
        u32::try_from(self.ctx.engine.lanes()).unwrap_or(u32::MAX)
    }

    /// Takes the job's batches until told to leave: as many run at once as the node has
    /// inference lanes, while the results of earlier ones are stored and answered beside them
    /// (at most [`STORING`] at once), so the model does not wait for the stream's
    /// acknowledgement. Batches sent again ([`subjects::job_work_again`]) go first.
    async fn take_batches(
        self: Arc<Self>,
        serving: Serving,
        (mut sub, mut again): (async_nats::Subscriber, async_nats::Subscriber),
        stop: CancellationToken,
    ) {
        let storing = Arc::new(tokio::sync::Semaphore::new(STORING));
        let lanes = Arc::new(tokio::sync::Semaphore::new(self.ctx.engine.lanes()));
        loop {
            let Ok(lane) = lanes.clone().acquire_owned().await else {
                break;
            };
            // Batches sent again (their worker was lost) before those waiting.
            let msg = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                msg = again.next() => match msg { Some(m) => m, None => break },
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            let (me, serving, storing) = (self.clone(), serving.clone(), storing.clone());
            self.jobs.spawn(async move {
                let received = Instant::now();
                let reply = me.take(&serving, &msg.payload, &storing).await;
                drop(lane);
                match reply {
                    Taken::Answer(reply) => me.answer(msg.reply, &reply).await,
                    Taken::Store(batch, out, permit) => {
                        let reply = me.store(&batch, out, received).await;
                        let replying = Instant::now();
                        me.answer(msg.reply, &reply).await;
                        me.ctx.metrics.stages.add(Stage::Reply, replying.elapsed());
                        drop(permit);
                    }
                }
            });
        }
        let _ = sub.unsubscribe().await;
        let _ = again.unsubscribe().await;
    }

    /// Runs one batch message of the job: its results to store, or the answer at once.
    async fn take(
        &self,
        serving: &Serving,
        payload: &[u8],
        storing: &Arc<tokio::sync::Semaphore>,
    ) -> Taken {
        let job_id = &serving.target.job_id;
        let reply = match decode::<WorkBatch>(payload) {
            Ok(batch) if batch.check(job_id).is_ok() => match serving.run(&batch).await {
                Ok(out) => match storing.clone().acquire_owned().await {
                    Ok(permit) => return Taken::Store(batch, out, permit),
                    Err(_) => self.error(&batch, "the worker is stopping".into()),
                },
                Err(e) => {
                    let kind = match e {
                        JobError::Overloaded(_) => WorkErrorKind::Overloaded,
                        _ => WorkErrorKind::Failed,
                    };
                    self.error_of(&batch, kind, e.to_string())
                }
            },
            Ok(batch) => {
                let why = batch.check(job_id).err();
                let message = why.map_or_else(String::new, |e| e.to_string());
                tracing::warn!(job = %job_id, batch = batch.batch_id, "batch refused: {message}");
                self.error_of(&batch, WorkErrorKind::BadBatch, message)
            }
            Err(e) => {
                self.ctx.metrics.garbage();
                WorkReply::Error {
                    batch_id: 0,
                    worker: self.ctx.id.clone(),
                    message: e.to_string(),
                    kind: WorkErrorKind::BadBatch,
                }
            }
        };
        Taken::Answer(reply)
    }

    fn error(&self, batch: &WorkBatch, message: String) -> WorkReply {
        self.error_of(batch, WorkErrorKind::Failed, message)
    }

    fn error_of(&self, batch: &WorkBatch, kind: WorkErrorKind, message: String) -> WorkReply {
        WorkReply::Error {
            batch_id: batch.batch_id,
            worker: self.ctx.id.clone(),
            message,
            kind,
        }
    }

    async fn answer(&self, to: Option<async_nats::Subject>, reply: &WorkReply) {
        if let (Some(to), Ok(bytes)) = (to, encode(reply)) {
            let _ = self.ctx.client.publish(to, bytes.into()).await;
        }
    }
}
