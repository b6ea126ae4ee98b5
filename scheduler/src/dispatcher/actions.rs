//! What the dispatcher asks of its shell ([`Action`]) and what the shell tells it back
//! ([`Reply`], [`Failure`]).

use crate::batches::{Answered, Batch};
use bus_schemas::jobs::JobRecord;
use bus_schemas::serve::{AssignReply, ServeTarget, WorkReply};
use std::time::Duration;

/// Something the dispatcher wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Mark the queued job running in its record and announce it; then feed the written
    /// outcome back as [`Reply::Started`].
    Start {
        /// The job.
        job: String,
    },
    /// Ask `worker` to join the job; answer with [`Reply::Joined`].
    Join {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// The worker's generation when asked.
        generation: u64,
        /// What it serves.
        target: ServeTarget,
    },
    /// Tell the workers to leave the job (no answer needed).
    Leave {
        /// The job.
        job: String,
        /// The workers.
        workers: Vec<String>,
    },
    /// Cut up to `n` batches into the job's record ([`crate::batches::cut`]); answer with
    /// [`Reply::Cut`].
    Cut {
        /// The job.
        job: String,
        /// Most batches to cut.
        n: usize,
    },
    /// Send a batch to a worker; answer with [`Reply::Work`].
    Send {
        /// The flight number, given back in the reply.
        flight: u64,
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// The batch.
        batch: Batch,
        /// Sent again after a loss: it goes before the batches the worker holds already.
        again: bool,
        /// How long to wait for the answer.
        deadline: Duration,
    },
    /// Ping the worker's process; answer with [`Reply::Probed`].
    Probe {
        /// The worker.
        worker: String,
    },
    /// Record the answered batches as accepted, then count them in the job's record
    /// ([`crate::batches::count`]); answer with [`Reply::Counted`].
    Count {
        /// The job.
        job: String,
        /// The batches.
        answered: Vec<Answered>,
    },
    /// Every query is counted: write the job's results and end it, then tell the workers to
    /// leave.
    Finish {
        /// The job.
        job: String,
        /// Its workers.
        workers: Vec<String>,
    },
    /// Fail the job.
    Fail {
        /// The job.
        job: String,
        /// Why, one sentence.
        reason: String,
    },
    /// Record in the job's record that a worker died holding a batch
    /// ([`super::deaths::add`]; the job fails at the limit).
    RecordDeath {
        /// The job.
        job: String,
        /// The batch.
        batch: Batch,
        /// The worker.
        worker: String,
        /// What membership saw.
        what: String,
    },
    /// Save the job's workers and statistics in its record and publish its progress.
    Save {
        /// The job.
        job: String,
        /// The workers serving it.
        workers: Vec<String>,
        /// Queries per second over [`super::RATE_WINDOW`].
        rate: f64,
        /// Processing milliseconds (none yet: the record keeps what it has).
        proc_ms: Option<bus_schemas::serve::ProcStats>,
    },
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nobody listens on the subject: the worker does not serve the job (any more), or its
    /// process is gone. Certainly not delivered.
    NoResponders,
    /// Timed out or failed otherwise: perhaps delivered.
    Failed(String),
}

/// The outcome of an [`Action`], fed back with [`super::Dispatcher::reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The outcome of an [`Action::Start`]: the record as written (running), or `None` if the
    /// job was not marked running (no longer queued, or the record could not be written).
    Started {
        /// The job.
        job: String,
        /// The record written.
        record: Option<Box<JobRecord>>,
    },
    /// A worker's answer to [`Action::Join`].
    Joined {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// As in the action.
        generation: u64,
        /// Its answer.
        result: Result<AssignReply, Failure>,
    },
    /// A worker's answer to [`Action::Send`].
    Work {
        /// As in the action.
        flight: u64,
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// The batch.
        batch: Batch,
        /// Its answer.
        result: Result<WorkReply, Failure>,
    },
    /// Whether a probed worker's process answered.
    Probed {
        /// The worker.
        worker: String,
        /// It answered.
        up: bool,
    },
    /// The batches an [`Action::Cut`] wrote (empty: every query is cut or the job no longer
    /// runs), or `None` if the record could not be written.
    Cut {
        /// The job.
        job: String,
        /// The batches.
        batches: Option<Vec<Batch>>,
    },
    /// Whether an [`Action::Count`] found the job complete, or `None` if the batches could not
    /// be recorded or counted (they are sent again).
    Counted {
        /// The job.
        job: String,
        /// The batches of the action.
        answered: Vec<Answered>,
        /// Every query counted.
        complete: Option<bool>,
    },
}
