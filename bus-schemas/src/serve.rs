//! Inference work: the coordinator tells a worker to join or leave a job's work queue
//! (`idunno.v1.nodes.<id>.assign`), sends batches to the job's work subject
//! (`idunno.v1.jobs.<job_id>.work.<node_id>`, one subject per worker), and workers publish each batch's
//! results on `idunno.v1.jobs.<job_id>.results` (captured by a JetStream stream that drops a
//! re-dispatched batch's second copy).

use crate::codec::Message;
pub use crate::shapes::{PendingBatch, ProcStats};
pub use crate::work_check::{BatchError, WorkBatch, WorkErrorKind, MAX_BATCH_QUERIES};
use serde::{Deserialize, Serialize};

/// What a worker needs to serve a job: the model version and the split it reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServeTarget {
    /// The job.
    pub job_id: String,
    /// The model's SDFS file (`models/<name>`).
    pub model_file: String,
    /// Its version.
    pub model_version: u64,
    /// The dataset.
    pub dataset: String,
    /// The split (`test`, `train`, `all`).
    pub split: String,
}

impl ServeTarget {
    /// The SDFS file of model `name`: `models/<name>`.
    pub fn model_file(name: &str) -> String {
        format!("models/{name}")
    }
}

/// `idunno.v1.nodes.<id>.assign`: join or leave a job's work queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AssignRequest {
    /// Load the model and the split, then take batches of the job.
    Join {
        /// The job to serve.
        target: ServeTarget,
    },
    /// Stop taking batches of the job (a batch in progress is finished).
    Leave {
        /// The job.
        job_id: String,
    },
}

impl Message for AssignRequest {
    const NAME: &'static str = "assign request";
}

/// The most inference lanes a worker's answer is believed to have (a larger claim counts as
/// this many).
pub const MAX_WORKER_LANES: u32 = 64;

fn one_lane() -> u32 {
    1
}

/// The answer to an [`AssignRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum AssignReply {
    /// The worker now serves (or no longer serves) the job.
    Done {
        /// The worker.
        worker: String,
        /// The jobs it serves now.
        serving: Vec<String>,
        /// Batches it runs at once (its inference lanes; 1 from workers before lanes existed).
        /// The dispatcher keeps one more than this in flight to it, at most
        /// [`MAX_WORKER_LANES`] + 1.
        #[serde(default = "one_lane")]
        lanes: u32,
    },
    /// Refused: the model or the split could not be loaded.
    Error {
        /// The worker.
        worker: String,
        /// One sentence.
        message: String,
        /// True when the model or the dataset itself is unusable (a file beyond a limit,
        /// corrupt, or not fitting the other), so every worker would refuse it: the job fails
        /// at once instead of being offered to other workers. False for this worker's own
        /// trouble (storage, timeouts).
        #[serde(default)]
        bad_input: bool,
        /// True when the trouble may pass by itself (the file store unreachable for a moment,
        /// a deadline on a busy cluster, a full queue): the worker is asked again later and
        /// its refusal never makes the job hopeless. Readers before this field treat every
        /// refusal as lasting, as before.
        #[serde(default)]
        transient: bool,
    },
}

impl Message for AssignReply {
    const NAME: &'static str = "assign reply";
}

impl Message for WorkBatch {
    const NAME: &'static str = "work batch";
}

/// A worker's answer to a [`WorkBatch`], once its results are stored in the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum WorkReply {
    /// Done.
    Done {
        /// The batch.
        batch_id: u64,
        /// The worker that ran it.
        worker: String,
        /// Queries answered.
        queries: u32,
        /// Correct predictions, when the split is labelled.
        #[serde(default)]
        correct: Option<u32>,
        /// Milliseconds from receipt to results stored.
        proc_ms: f64,
        /// Milliseconds of model time.
        infer_ms: f64,
        /// Whether the results stream already held this worker's copy of the batch (the same
        /// batch sent to it twice), so it was not stored again.
        duplicate: bool,
        /// The results stream's sequence number of the message holding this worker's results
        /// of the batch: what the coordinator accepts (absent from workers before it existed,
        /// whose answers are not accepted).
        #[serde(default)]
        stream_seq: Option<u64>,
    },
    /// The worker cannot run the batch (it does not serve the job, or the model failed).
    Error {
        /// The batch.
        batch_id: u64,
        /// The worker.
        worker: String,
        /// One sentence.
        message: String,
        /// Why, as a kind ([`WorkErrorKind::Other`] from writers that send none).
        #[serde(default)]
        kind: WorkErrorKind,
    },
}

impl Message for WorkReply {
    const NAME: &'static str = "work reply";
}

/// One query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Unique within the job.
    pub query_id: u64,
    /// The sample's index in the split.
    pub sample: u64,
    /// The predicted class index.
    pub predicted: i64,
    /// Its name.
    pub class_name: String,
    /// Softmax probability of the predicted class.
    pub score: f32,
    /// The true class, when the split is labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

/// Public: `idunno.v1.jobs.<job_id>.results`, one message per batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsBatch {
    /// The job.
    pub job_id: String,
    /// The batch.
    pub batch_id: u64,
    /// One entry per query.
    pub results: Vec<QueryResult>,
    /// The worker that ran the batch, as it says (informational: the coordinator's
    /// [`Accepted`] record, not this field, decides which copy counts).
    #[serde(default)]
    pub worker: String,
}

impl Message for ResultsBatch {
    const NAME: &'static str = "results batch";
}

/// One batch the coordinator accepted: the answer of the worker it sent the batch to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedBatch {
    /// The batch.
    pub batch_id: u64,
    /// Its first query id.
    pub first_query: u64,
    /// Its queries.
    pub len: u32,
    /// The worker it was sent to, which answered it.
    pub worker: String,
    /// The results stream's sequence number of that worker's [`ResultsBatch`].
    pub stream_seq: u64,
}

/// Internal: `idunno.v1.jobs.<job_id>.accepted`, published by the coordinator (captured by the
/// stream `IDUNNO_ACCEPTED`) before it counts the batches: the results file is built from
/// these batches' results messages only, so a results message anyone else published (another
/// worker's id, a batch never sent, a copy that pre-empts the real one) is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The job.
    pub job_id: String,
    /// The batches accepted in one count of the coordinator.
    pub batches: Vec<AcceptedBatch>,
}

impl Message for Accepted {
    const NAME: &'static str = "accepted batches";
}

/// The workers that died while they held one batch of an inference job (each a different
/// worker); the job fails when one batch reaches the cluster's limit of worker deaths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDeaths {
    /// The batch.
    pub batch_id: u64,
    /// The workers, in the order they died.
    pub workers: Vec<String>,
    /// What the coordinator saw of the last death.
    #[serde(default)]
    pub last: String,
}

/// An inference job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeSpec {
    /// The model (`models/<model>`).
    pub model: String,
    /// The model version (the newest at submission if absent).
    #[serde(default)]
    pub model_version: Option<u64>,
    /// The dataset (the model's own if absent).
    #[serde(default)]
    pub dataset: String,
    /// The split to run over.
    pub split: String,
    /// Queries per batch.
    pub batch: u32,
    /// Passes over the split; absent: continuous until cancelled.
    #[serde(default)]
    pub passes: Option<u32>,
    /// Fair-time weight (1 = an equal share).
    pub weight: u32,
}

/// The coordinator's record of an inference job's progress (in the job record, so that
/// another coordinator continues exactly where this one stopped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServeState {
    /// The model version served.
    pub model_version: u64,
    /// Samples in the split.
    pub count: u64,
    /// Queries in all (None: continuous).
    #[serde(default)]
    pub total: Option<u64>,
    /// The batch size applied to batches cut from now on.
    pub batch: u32,
    /// The next query id to cut.
    pub next_query: u64,
    /// The next batch id.
    pub next_batch: u64,
    /// Batches cut and not yet answered; sent again after a coordinator failover.
    #[serde(default)]
    pub pending: Vec<PendingBatch>,
    /// Queries answered (each counted once).
    pub done: u64,
    /// Correct answers among them, when the split is labelled.
    #[serde(default)]
    pub correct: Option<u64>,
    /// Workers serving the job now.
    #[serde(default)]
    pub workers: Vec<String>,
    /// Queries answered by each worker.
    #[serde(default)]
    pub by_worker: std::collections::BTreeMap<String, u64>,
    /// Queries per second over the last 10 s, as last measured by the coordinator.
    #[serde(default)]
    pub rate: f64,
    /// Processing (model) time per batch, once a batch was timed.
    #[serde(default, with = "crate::shapes::proc_ms")]
    pub proc_ms: Option<ProcStats>,
    /// Pending batches whose workers died while running them (removed once counted).
    #[serde(default)]
    pub deaths: Vec<BatchDeaths>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::round_trip;

    #[test]
    fn serve_messages_round_trip() {
        let target = ServeTarget {
            job_id: "serve-1".into(),
            model_file: "models/cnn".into(),
            model_version: 2,
            dataset: "fm".into(),
            split: "test".into(),
        };
        round_trip(AssignRequest::Join { target });
        round_trip(AssignReply::Done {
            worker: "n1".into(),
            serving: vec!["serve-1".into()],
            lanes: 2,
        });
        round_trip(AssignReply::Error {
            worker: "n1".into(),
            message: "too large".into(),
            bad_input: true,
            transient: false,
        });
        round_trip(WorkBatch {
            job_id: "serve-1".into(),
            batch_id: 3,
            first_query: 192,
            len: 64,
        });
        round_trip(WorkReply::Done {
            batch_id: 3,
            worker: "n1".into(),
            queries: 64,
            correct: Some(60),
            proc_ms: 12.5,
            infer_ms: 10.0,
            duplicate: false,
            stream_seq: Some(41),
        });
        round_trip(ResultsBatch {
            job_id: "serve-1".into(),
            batch_id: 3,
            results: vec![QueryResult {
                query_id: 192,
                sample: 192,
                predicted: 4,
                class_name: "Coat".into(),
                score: 0.9,
                label: None,
            }],
            worker: "n1".into(),
        });
        round_trip(Accepted {
            job_id: "serve-1".into(),
            batches: vec![AcceptedBatch {
                batch_id: 3,
                first_query: 192,
                len: 64,
                worker: "n1".into(),
                stream_seq: 41,
            }],
        });
    }
}
