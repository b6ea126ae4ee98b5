//! The I/O of the dispatcher's actions: compare-and-swap writes of job records (applying the
//! scheduler's pure changes), requests to workers, and their outcomes as replies.

use super::super::{accepted, Ctx};
use crate::cluster::lease::now_ms;
use bus_client::RequestError;
use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::jobs::{JobEventKind, JobState, Progress};
use bus_schemas::serve::{
    AssignReply, AssignRequest, ProcStats, ServeTarget, WorkBatch, WorkReply,
};
use bus_schemas::subjects;
use idunno_scheduler::batches::{self, Answered, Batch};
use idunno_scheduler::dispatcher::deaths::{self, Outcome};
use idunno_scheduler::dispatcher::Reply;
use idunno_scheduler::Failure;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker may take to join a job (it may load the model and the split first).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to leave a job.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker holding batches that has answered nothing for a while is probed (a request to its
/// control subject, answered by its runtime, not its inference lanes); a worker whose process
/// is gone (no responders, at once) or that does not answer within this is treated as lost,
/// without waiting for membership. A live worker busy with a long batch answers the probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A ping unanswered for this long is sent again.
const PING_AGAIN: Duration = Duration::from_millis(100);

/// A request's failure as the core knows it.
fn failure(e: RequestError) -> Failure {
    match e {
        RequestError::NoResponders { .. } => Failure::NoResponders,
        e => Failure::Failed(e.to_string()),
    }
}

/// Marks a queued job running and announces it.
pub(super) async fn start(ctx: &Ctx, job: String) -> Reply {
    let started = ctx
        .store
        .modify(&job, |j| {
            let queued = j.state == JobState::Queued;
            if queued {
                j.state = JobState::Running;
            }
            queued
        })
        .await;
    let record = match started {
        Ok(Some(record)) => {
            ctx.event(&job, JobEventKind::Started, None, None).await;
            Some(Box::new(record))
        }
        // No longer queued (cancelled, or marked running by a write whose answer was lost):
        // the next pass reads the job again.
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(%job, "cannot mark the job running yet: {e:#}");
            None
        }
    };
    Reply::Started { job, record }
}

/// Cuts up to `n` batches into the job's record (while it runs and this node coordinates: a
/// cut retried past the loss of the lease would land after the next coordinator read the
/// record; its batches would then be found and sent only as strays).
pub(super) async fn cut(ctx: &Ctx, job: String, n: usize) -> Reply {
    let mut cut = Vec::new();
    let written = ctx
        .store
        .modify(&job, |j| {
            cut.clear();
            let running = j.state == JobState::Running && ctx.coordinator.borrow().me;
            let Some(s) = j.serve.as_mut().filter(|_| running) else {
                return false;
            };
            cut = batches::cut(s, n);
            !cut.is_empty()
        })
        .await;
    let batches = match written {
        Ok(Some(_)) => Some(cut),
        Ok(None) => Some(Vec::new()),
        Err(e) => {
            // The bucket is unreachable for now (a server restart): the core tries later.
            tracing::debug!(%job, "cannot cut a batch: {e:#}");
            None
        }
    };
    Reply::Cut { job, batches }
}

/// Records the answered batches as accepted, then counts them in one write. The acceptance is
/// stored first: a counted batch always has one (a failover between the two sends the batch
/// again, and the first acceptance of a batch is the one used).
pub(super) async fn count(ctx: &Ctx, job: String, answered: Vec<Answered>) -> Reply {
    let js = async_nats::jetstream::new(ctx.client.clone());
    let complete = match accepted::record(&js, ctx.kv_replicas, &job, &answered).await {
        Ok(()) => count_in_record(ctx, &job, &answered).await,
        Err(e) => {
            tracing::debug!(%job, "cannot record {} accepted batches: {e}", answered.len());
            None
        }
    };
    Reply::Counted {
        job,
        answered,
        complete,
    }
}

async fn count_in_record(ctx: &Ctx, job: &str, answered: &[Answered]) -> Option<bool> {
    let mut complete = false;
    let counted = ctx
        .store
        .modify(job, |j| {
            complete = false;
            let Some(s) = j.serve.as_mut().filter(|_| j.state == JobState::Running) else {
                return false;
            };
            let c = batches::count(s, answered);
            complete = c.complete;
            c.changed
        })
        .await;
    match counted {
        Ok(_) => Some(complete),
        Err(e) => {
            tracing::debug!(%job, "cannot count {} batches: {e:#}", answered.len());
            None
        }
    }
}

/// Saves the job's workers and statistics and publishes its progress.
pub(super) async fn save(
    ctx: &Ctx,
    job: &str,
    workers: Vec<String>,
    rate: f64,
    proc_ms: Option<ProcStats>,
) {
    let saved = ctx
        .store
        .modify(job, |j| {
            let Some(s) = j.serve.as_mut().filter(|_| !j.state.is_final()) else {
                return false;
            };
            s.workers = workers.clone();
            s.rate = rate;
            if proc_ms.is_some() {
                s.proc_ms = proc_ms;
            }
            true
        })
        .await;
    let s = match saved {
        Ok(Some(record)) => record.serve,
        Ok(None) => None,
        Err(e) => {
            tracing::debug!(%job, "cannot save the job's statistics: {e:#}");
            None
        }
    };
    if let Some(s) = s {
        let progress = Progress {
            job_id: job.to_string(),
            worker: workers.join(","),
            queries: s.done,
            total: s.total,
            query_rate: rate,
            ..Default::default()
        };
        let _ = bus_client::publish(&ctx.client, subjects::job_progress(job), &progress).await;
    }
}

/// Records a confirmed death in the job's record, failing the job at the limit.
pub(super) async fn record_death(ctx: &Ctx, job: &str, batch: Batch, worker: &str, what: &str) {
    let mut outcome = Outcome::Ignored;
    let max = ctx.max_worker_deaths;
    let changed = ctx
        .store
        .modify(job, |j| {
            outcome = Outcome::Ignored;
            let Some(s) = j.serve.as_mut().filter(|_| j.state == JobState::Running) else {
                return false;
            };
            outcome = deaths::add(s, batch, worker, what, max);
            if let Outcome::Fatal(reason) = &outcome {
                j.state = JobState::Failed;
                j.error = Some(reason.clone());
                j.finished_ms = Some(now_ms());
            }
            outcome != Outcome::Ignored
        })
        .await;
    match (changed, outcome) {
        (Ok(Some(_)), Outcome::Fatal(reason)) => {
            tracing::warn!(%job, "failed: {reason}");
            ctx.event(job, JobEventKind::Failed, Some(worker), Some(reason))
                .await;
        }
        (Ok(Some(_)), _) => tracing::warn!(%job, "a worker died holding a batch: {what}"),
        (Ok(None), _) => {}
        (Err(e), _) => tracing::debug!(%job, "cannot record a worker's death: {e:#}"),
    }
}

/// Asks a worker to join a job.
pub(super) async fn join(
    client: async_nats::Client,
    job: String,
    worker: String,
    generation: u64,
    target: ServeTarget,
) -> Reply {
    let req = AssignRequest::Join { target };
    let subject = subjects::node_assign(&worker);
    let result = bus_client::request(&client, subject, &req, JOIN_TIMEOUT).await;
    Reply::Joined {
        job,
        worker,
        generation,
        result: result.map_err(failure),
    }
}

/// A batch to send, as the core named it.
pub(super) struct Work {
    pub(super) flight: u64,
    pub(super) job: String,
    pub(super) worker: String,
    pub(super) batch: Batch,
    pub(super) again: bool,
}

/// Sends a batch to its worker and waits for the answer until `deadline`.
pub(super) async fn send(client: async_nats::Client, w: Work, deadline: Duration) -> Reply {
    let work = WorkBatch {
        job_id: w.job.clone(),
        batch_id: w.batch.batch_id,
        first_query: w.batch.first_query,
        len: w.batch.len,
    };
    let subject = if w.again {
        subjects::job_work_again(&w.job, &w.worker)
    } else {
        subjects::job_work(&w.job, &w.worker)
    };
    let result: Result<WorkReply, _> = bus_client::request(&client, subject, &work, deadline).await;
    Reply::Work {
        flight: w.flight,
        job: w.job,
        worker: w.worker,
        batch: w.batch,
        result: result.map_err(failure),
    }
}

/// Whether `worker`'s process answers a ping within [`PROBE_TIMEOUT`]. A ping unanswered for
/// [`PING_AGAIN`] is sent again: one sent just before the process died is never answered,
/// while one sent after finds no responders at once.
pub(super) async fn probe(client: async_nats::Client, worker: String) -> Reply {
    let req = ControlRequest::Ping;
    let subject = subjects::node_control(&worker, req.op());
    let began = Instant::now();
    let up = loop {
        let left = PROBE_TIMEOUT.saturating_sub(began.elapsed());
        if left.is_zero() {
            break false;
        }
        let reply: Result<ControlReply, _> =
            bus_client::request(&client, subject.clone(), &req, left.min(PING_AGAIN)).await;
        match reply {
            // Something answered: the process is there.
            Ok(_) | Err(RequestError::Decode { .. }) => break true,
            Err(RequestError::Timeout { .. }) => {}
            Err(_) => break false,
        }
    };
    tracing::debug!(%worker, took = ?began.elapsed(), up, "probed a quiet worker");
    Reply::Probed { worker, up }
}

/// Tells `workers` to leave job `job` (a worker that is gone is ignored).
pub(super) async fn leave(ctx: Arc<Ctx>, job: String, workers: Vec<String>) {
    let asks = workers.iter().map(|worker| {
        let req = AssignRequest::Leave {
            job_id: job.clone(),
        };
        let subject = subjects::node_assign(worker);
        let client = ctx.client.clone();
        async move {
            let _: Result<AssignReply, _> =
                bus_client::request(&client, subject, &req, LEAVE_TIMEOUT).await;
        }
    });
    futures::future::join_all(asks).await;
}
