//! Jobs: what a client submits, the record the cluster keeps for each job (in the JetStream KV
//! bucket `idunno-jobs`), progress, events, and the request/reply API on `idunno.v1.jobs.rpc.<op>`.

use crate::codec::Message;
use serde::{Deserialize, Serialize};

pub use crate::serve::{ServeSpec, ServeState};

/// What a job does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Train a built-in architecture on a dataset; the result becomes a new version of
    /// `models/<name>`.
    Train(TrainSpec),
    /// Register a TorchScript file already uploaded to SDFS as a model: check it, evaluate it on
    /// the dataset's test split and store it as a new version of `models/<name>`.
    Import(ImportSpec),
    /// Run a model over a dataset split in batches (inference), sharing workers fairly with the
    /// other inference jobs.
    Serve(ServeSpec),
}

impl JobSpec {
    /// The model the job writes.
    pub fn model(&self) -> &str {
        match self {
            JobSpec::Train(t) => &t.name,
            JobSpec::Import(i) => &i.name,
            JobSpec::Serve(s) => &s.model,
        }
    }

    /// The dataset the job reads.
    pub fn dataset(&self) -> &str {
        match self {
            JobSpec::Train(t) => &t.dataset,
            JobSpec::Import(i) => &i.dataset,
            JobSpec::Serve(s) => &s.dataset,
        }
    }

    /// `train` or `import`.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Train(_) => "train",
            JobSpec::Import(_) => "import",
            JobSpec::Serve(_) => "serve",
        }
    }
}

/// A training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// The architecture: `mlp`, `cnn` or `resnet`.
    pub arch: String,
    /// The model name to store the result under (`models/<name>`).
    pub name: String,
    /// The dataset (`datasets/<dataset>`).
    pub dataset: String,
    /// Passes over the training split.
    pub epochs: u32,
    /// Samples per step.
    pub batch: u32,
    /// Peak learning rate (the architecture's default if absent).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Train on at most this many samples of the training split.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Seed of the initial weights and of the sample order.
    #[serde(default)]
    pub seed: u64,
    /// Workers training the job at once (data-parallel, each on its shard of every step's
    /// batch); 1 trains on one worker.
    #[serde(default = "one_worker")]
    pub workers: u32,
}

fn one_worker() -> u32 {
    1
}

/// The most workers one data-parallel training job may have.
pub const MAX_TRAIN_WORKERS: u32 = 64;

/// A TorchScript import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportSpec {
    /// The model name (`models/<name>`).
    pub name: String,
    /// The dataset whose inputs the model takes.
    pub dataset: String,
    /// The uploaded TorchScript file in SDFS.
    pub upload: String,
    /// Per-channel mean subtracted from the [0, 1] pixels (none if empty).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation the pixels are divided by (none if empty).
    #[serde(default)]
    pub std: Vec<f32>,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Stopped with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Training progress, published on `idunno.v1.jobs.<id>.progress` and kept in the record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The job.
    pub job_id: String,
    /// The worker reporting.
    pub worker: String,
    /// The worker's attempt number (1 for the first worker).
    pub attempt: u32,
    /// The epoch in progress, from 0.
    pub epoch: u32,
    /// Epochs in all.
    pub epochs: u32,
    /// Steps done in this epoch.
    pub step: u64,
    /// Steps per epoch.
    pub steps: u64,
    /// Mean loss over this epoch so far.
    pub loss: f64,
    /// Training accuracy over this epoch so far (0 to 1).
    pub accuracy: f64,
    /// Training images per second over the last few seconds.
    pub images_per_s: f64,
    /// The epoch this attempt resumed at (0 when it started from scratch).
    pub resumed_at_epoch: u32,
    /// Inference: queries answered so far.
    #[serde(default)]
    pub queries: u64,
    /// Inference: queries in all (absent when continuous or training).
    #[serde(default)]
    pub total: Option<u64>,
    /// Inference: queries per second over the last 10 s.
    #[serde(default)]
    pub query_rate: f64,
    /// Training: workers in the step just done (data-parallel; 1 otherwise).
    #[serde(default)]
    pub workers: u32,
    /// Training: steps done since the job began (over all epochs).
    #[serde(default)]
    pub global_step: u64,
    /// Training: steps per second over the last few seconds.
    #[serde(default)]
    pub steps_per_s: f64,
    /// Training, data-parallel: the share of step time spent in the all-reduce (sending this
    /// worker's gradients and waiting for and summing the others'), 0 to 1.
    #[serde(default)]
    pub allreduce_share: f64,
    /// Training, data-parallel: the group's generation (changes when a worker is lost or
    /// joins).
    #[serde(default)]
    pub group_generation: u32,
}

impl Message for Progress {
    const NAME: &'static str = "job progress";
}

/// One worker's run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The worker.
    pub worker: String,
    /// When the coordinator assigned it, milliseconds since the epoch.
    pub assigned_ms: u64,
    /// The epoch the worker resumed at (0: from scratch), once it started.
    #[serde(default)]
    pub resumed_at_epoch: Option<u32>,
    /// The worker's generation when the attempt was assigned: a newer generation of the same
    /// node means the process that ran the attempt died (and started again).
    #[serde(default)]
    pub generation: Option<u64>,
    /// When the worker's process started, as membership said at assignment: the same process
    /// seen again (rejoined after a false failure) did not die.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Set when the worker died while it ran this attempt (declared failed, or started again):
    /// what the coordinator saw. Each such attempt counts against the limit of worker deaths.
    #[serde(default)]
    pub died: Option<String>,
    /// A data-parallel attempt's workers; `worker` is its rank 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

impl Attempt {
    /// Whether `worker` runs this attempt (as its only worker or a member of its group).
    pub fn runs_on(&self, worker: &str) -> bool {
        match &self.group {
            Some(g) => g.has(worker),
            None => self.worker == worker,
        }
    }

    /// The workers running it.
    pub fn workers(&self) -> Vec<String> {
        match &self.group {
            Some(g) => g.workers(),
            None => vec![self.worker.clone()],
        }
    }

    /// After a change of `group`: `worker` (with its generation and start) is rank 0 again.
    pub fn follow_group(&mut self) {
        if let Some(first) = self.group.as_ref().and_then(|g| g.members.first()) {
            self.worker = first.worker.clone();
            self.generation = first.generation;
            self.started_ms = first.started_ms;
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The SDFS file written (`models/<name>`).
    pub model_file: String,
    /// Its version.
    pub model_version: u64,
    /// Accuracy on the dataset's test split (0 to 1), if it has one.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// Per-sample predictions on the test split, `results/<job_id>.jsonl`, if written.
    #[serde(default)]
    pub results_file: Option<String>,
    /// Seconds the job ran, over all attempts.
    pub seconds: f64,
    /// A training job's steps, `results/<job_id>.steps.jsonl` (loss, accuracy and workers of
    /// each step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_file: Option<String>,
}

/// The cluster's record of a job: the value under its id in the `idunno-jobs` bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id (a subject-safe token).
    pub id: String,
    /// What it does.
    pub spec: JobSpec,
    /// Where it is.
    pub state: JobState,
    /// Submitted, milliseconds since the epoch.
    pub submitted_ms: u64,
    /// Ended, milliseconds since the epoch.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Every worker assignment, oldest first; the last one is current while running.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Epochs whose checkpoint is in SDFS (`checkpoints/<job_id>`).
    #[serde(default)]
    pub checkpoint_epochs: u32,
    /// The SDFS version of `checkpoints/<job_id>` that holds them; a worker resumes from exactly
    /// this version (a stale worker's later writes are never referenced).
    #[serde(default)]
    pub checkpoint_version: Option<u64>,
    /// Latest progress.
    #[serde(default)]
    pub progress: Option<Progress>,
    /// The result, when succeeded.
    #[serde(default)]
    pub outcome: Option<JobOutcome>,
    /// Why it failed, or was cancelled.
    #[serde(default)]
    pub error: Option<String>,
    /// An inference job's progress.
    #[serde(default)]
    pub serve: Option<ServeState>,
}

impl JobRecord {
    /// A job just submitted: queued, no attempt yet.
    pub fn queued(id: String, spec: JobSpec, submitted_ms: u64, serve: Option<ServeState>) -> Self {
        JobRecord {
            id,
            spec,
            state: JobState::Queued,
            submitted_ms,
            finished_ms: None,
            attempts: Vec::new(),
            checkpoint_epochs: 0,
            checkpoint_version: None,
            progress: None,
            outcome: None,
            error: None,
            serve,
        }
    }

    /// The current assignment, if any.
    pub fn current(&self) -> Option<&Attempt> {
        match self.state {
            JobState::Running => self.attempts.last(),
            _ => None,
        }
    }
}

impl Message for JobRecord {
    const NAME: &'static str = "job record";
}

/// What happened to a job, on `idunno.v1.jobs.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEventKind {
    /// Accepted and queued.
    Submitted,
    /// Given to its first worker.
    Started,
    /// Given to another worker after its worker failed.
    Reassigned,
    /// A data-parallel job's group changed: a worker was lost or joined (the detail says
    /// which, and how many go on).
    Regrouped,
    /// Ended with a result.
    Finished,
    /// Ended with an error.
    Failed,
    /// Ended on request.
    Cancelled,
}

/// A job event, on `idunno.v1.jobs.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: String,
    /// What happened.
    pub event: JobEventKind,
    /// The worker concerned, if any.
    #[serde(default)]
    pub worker: Option<String>,
    /// A human-readable detail (the error, the model version).
    #[serde(default)]
    pub detail: Option<String>,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
}

impl Message for JobEvent {
    const NAME: &'static str = "job event";
}

/// How the coordinator shares the workers among concurrent inference jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QpsPolicy {
    /// Every worker serves every job; each free slot goes to the job with the lowest query
    /// rate over its weight, which minimises the largest weighted rate difference.
    #[default]
    Global,
    /// Each worker serves one job; a job gets workers in proportion to its weight times its
    /// measured cost per query (with fewer workers than jobs, workers are shared as in global).
    Local,
}

/// Cluster-wide settings: the value of key `cluster` in the KV bucket `idunno-settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The fair-time policy.
    pub qps: QpsPolicy,
    /// Copies JetStream keeps of IDunno's buckets and streams, as an operator set it
    /// (`idunno cluster replicas`); `None` (the default): min(3, the NATS cluster's servers).
    #[serde(default)]
    pub replicas: Option<u8>,
}

impl Message for Settings {
    const NAME: &'static str = "cluster settings";
}

/// The coordinator lease: the value of key `coordinator` in the `idunno-coord` bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The coordinating node.
    pub node: String,
    /// Its generation, so a restarted node does not inherit its old lease.
    pub generation: u64,
    /// When it first acquired this lease, milliseconds since the epoch.
    pub since_ms: u64,
}

impl Message for Lease {
    const NAME: &'static str = "coordinator lease";
}

mod group;
mod page;
mod rpc;
pub use group::{Group, GroupMember, LostMember, MAX_LOST};
pub use page::{JobsFilter, MAX_PAGE};
pub use rpc::{JobsErrorKind, JobsReply, JobsRequest, DEFAULT_OUTPUTS, MAX_OUTPUTS};

#[cfg(test)]
mod tests;
