//! The jobs API on `idunno.v1.jobs.rpc.<op>`: requests, replies and error kinds.

use super::{JobRecord, JobSpec, JobsFilter, QpsPolicy};
use crate::codec::Message;
use serde::{Deserialize, Serialize};

/// A request on `idunno.v1.jobs.rpc.<op>`; any node answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum JobsRequest {
    /// Check and queue a job.
    Submit {
        /// The job.
        spec: JobSpec,
    },
    /// A page of jobs: running and queued first, then ended ones, each newest first (by
    /// submission). An older writer's bare `list` reads as the first page of every job.
    List {
        /// Which jobs.
        #[serde(default)]
        which: JobsFilter,
        /// At most this many (default and largest: [`super::MAX_PAGE`]).
        #[serde(default)]
        limit: Option<u32>,
        /// The cursor of the page before (its reply's `next`); none for the first page.
        #[serde(default)]
        after: Option<String>,
    },
    /// One job.
    Get {
        /// The job id.
        id: String,
    },
    /// Stop a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Change a running inference job's batch size (for batches cut from now on).
    Batch {
        /// The job id.
        id: String,
        /// Queries per batch.
        size: u32,
    },
    /// Read the fair-time policy, or set it when `policy` is given.
    Qps {
        /// The new policy.
        policy: Option<QpsPolicy>,
    },
    /// One job and the newest outputs of an inference job: the last `limit` results of the
    /// last batch stored (default [`DEFAULT_OUTPUTS`], at most [`MAX_OUTPUTS`]). Nodes older
    /// than this request answer it with an error.
    Outputs {
        /// The job id.
        id: String,
        /// How many outputs.
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A model's routes (aliases, rollout) with the running rollout's figures. Nodes older
    /// than model routes answer this and the four below with an error.
    Routes {
        /// The model.
        model: String,
    },
    /// Points `alias` of `model` at `version`, or removes it (`None`).
    Alias {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
        /// The version, or none to remove the alias.
        version: Option<u64>,
    },
    /// Starts a canary rollout: `percent` of the requests for `alias` go to `version`.
    Rollout {
        /// The model.
        model: String,
        /// The alias whose requests are split.
        alias: String,
        /// The new version.
        version: u64,
        /// Its share, in percent (above 0, at most 100).
        percent: f64,
    },
    /// Ends the rollout on `alias`: the alias names the canary from now on.
    Promote {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
    },
    /// Ends the rollout on `alias` without the canary; with no rollout running, points the
    /// alias back at the version it named before its last change.
    Rollback {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
    },
}

/// Outputs an [`JobsRequest::Outputs`] gives unless it says.
pub const DEFAULT_OUTPUTS: u32 = 10;
/// The most outputs an [`JobsRequest::Outputs`] gives.
pub const MAX_OUTPUTS: u32 = 1000;

impl JobsRequest {
    /// The operation: the last token of its subject ([`crate::subjects::jobs_rpc`]). It is the
    /// payload's `op`, except that a `qps` request that sets the policy is `set_qps`, so that
    /// NATS permissions can allow reading the policy and not setting it.
    pub fn op(&self) -> &'static str {
        match self {
            JobsRequest::Submit { .. } => "submit",
            JobsRequest::List { .. } => "list",
            JobsRequest::Get { .. } => "get",
            JobsRequest::Cancel { .. } => "cancel",
            JobsRequest::Batch { .. } => "batch",
            JobsRequest::Qps { policy: None } => "qps",
            JobsRequest::Qps { policy: Some(_) } => "set_qps",
            JobsRequest::Outputs { .. } => "outputs",
            JobsRequest::Routes { .. } => "routes",
            JobsRequest::Alias { .. } => "alias",
            JobsRequest::Rollout { .. } => "rollout",
            JobsRequest::Promote { .. } => "promote",
            JobsRequest::Rollback { .. } => "rollback",
        }
    }
}

impl Message for JobsRequest {
    const NAME: &'static str = "jobs request";
}

/// Why a jobs request was refused. Readers of an older version see kinds added later as
/// [`JobsErrorKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobsErrorKind {
    /// No such job.
    NotFound,
    /// No such model architecture or model.
    UnknownModel,
    /// No such dataset.
    UnknownDataset,
    /// An argument is out of range.
    BadArgument,
    /// The job has already ended.
    AlreadyEnded,
    /// The change conflicts with the state (no rollout to promote, one already running).
    Conflict,
    /// The request could not be decoded.
    BadRequest,
    /// A node-side failure (bus, storage).
    Internal,
    /// A kind this reader does not know (a newer writer's).
    #[serde(other)]
    Unknown,
}

/// The answer to a [`JobsRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum JobsReply {
    /// The job was queued.
    Submitted {
        /// Its id.
        id: String,
    },
    /// A page of jobs.
    Jobs {
        /// The records.
        jobs: Vec<JobRecord>,
        /// The cursor of the next page, when there is one (absent from older nodes, whose
        /// lists were whole).
        #[serde(default)]
        next: Option<String>,
    },
    /// One job.
    Job {
        /// The record.
        job: Box<JobRecord>,
    },
    /// One job and its newest outputs.
    Outputs {
        /// The record.
        job: Box<JobRecord>,
        /// The newest outputs, in query order (empty for a job that is not an inference job,
        /// or before its first batch).
        outputs: Vec<crate::serve::QueryResult>,
    },
    /// The fair-time policy in force.
    Qps {
        /// The policy.
        policy: QpsPolicy,
    },
    /// A model's routes and its rollout's figures.
    Routes {
        /// The routes, the versions kept and the figures.
        status: Box<crate::models::RoutesStatus>,
    },
    /// Refused.
    Error {
        /// Why, as a kind.
        kind: JobsErrorKind,
        /// Why, in one sentence.
        message: String,
    },
}

impl Message for JobsReply {
    const NAME: &'static str = "jobs reply";
}
