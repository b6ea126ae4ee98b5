//! A client of the cluster's jobs API (`idunno.v1.jobs.rpc`).

use crate::request::{request, RequestError};
use bus_schemas::jobs::{
    JobRecord, JobSpec, JobsErrorKind, JobsFilter, JobsReply, JobsRequest, QpsPolicy,
};
use bus_schemas::models::RoutesStatus;
use bus_schemas::subjects;
use std::time::Duration;
use thiserror::Error;

/// Why a jobs request failed.
#[derive(Debug, Error)]
pub enum JobsError {
    /// The bus failed or nobody answered.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The cluster refused.
    #[error("{message}")]
    Refused {
        /// Why, as a kind.
        kind: JobsErrorKind,
        /// Why, in one sentence.
        message: String,
    },
    /// An answer of the wrong kind.
    #[error("unexpected answer from the cluster: {0}")]
    Unexpected(String),
}

/// A page of a job list.
#[derive(Debug, Clone)]
pub struct JobsPage {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Submits and inspects jobs.
#[derive(Clone)]
pub struct JobsClient {
    client: async_nats::Client,
    timeout: Duration,
}

impl JobsClient {
    /// A client on `client`; requests wait at most `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// Sends a request to any node. The queue group may hand it to a node that has just died,
    /// so requests that are safe to repeat are retried (three tries within the timeout); a
    /// submission is sent once.
    async fn rpc(&self, req: &JobsRequest) -> Result<JobsReply, JobsError> {
        // A submission, and a rollout change that another one may follow (promote twice
        // would fail the second time), are sent once.
        let repeatable = !matches!(
            req,
            JobsRequest::Submit { .. }
                | JobsRequest::Rollout { .. }
                | JobsRequest::Promote { .. }
                | JobsRequest::Rollback { .. }
        );
        let (tries, each) = if repeatable {
            (3, self.timeout / 3)
        } else {
            (1, self.timeout)
        };
        let mut result = request(&self.client, subjects::jobs_rpc(req.op()), req, each).await;
        for _ in 1..tries {
            if !matches!(result, Err(RequestError::Timeout { .. })) {
                break;
            }
            result = request(&self.client, subjects::jobs_rpc(req.op()), req, each).await;
        }
        match result? {
            JobsReply::Error { kind, message } => Err(JobsError::Refused { kind, message }),
            other => Ok(other),
        }
    }

    /// Queues a job; returns its id.
    pub async fn submit(&self, spec: JobSpec) -> Result<String, JobsError> {
        match self.rpc(&JobsRequest::Submit { spec }).await? {
            JobsReply::Submitted { id } => Ok(id),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// One page of jobs: at most `limit` (at most [`bus_schemas::jobs::MAX_PAGE`]) after the
    /// cursor `after`, and the cursor of the next page if there is one.
    pub async fn page(
        &self,
        which: JobsFilter,
        limit: Option<u32>,
        after: Option<String>,
    ) -> Result<JobsPage, JobsError> {
        let req = JobsRequest::List {
            which,
            limit,
            after,
        };
        match self.rpc(&req).await? {
            JobsReply::Jobs { jobs, next } => Ok(JobsPage { jobs, next }),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Every job the cluster keeps, page after page.
    pub async fn list(&self) -> Result<Vec<JobRecord>, JobsError> {
        self.list_all(JobsFilter::All, None).await
    }

    /// Every job of `which`, page after page (of `limit` each, or as many as a page holds).
    pub async fn list_all(
        &self,
        which: JobsFilter,
        limit: Option<u32>,
    ) -> Result<Vec<JobRecord>, JobsError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.page(which, limit, after).await?;
            all.extend(page.jobs);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<JobRecord, JobsError> {
        match self.rpc(&JobsRequest::Get { id: id.into() }).await? {
            JobsReply::Job { job } => Ok(*job),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A job and the newest `limit` outputs of an inference job (see
    /// [`JobsRequest::Outputs`]).
    pub async fn outputs(
        &self,
        id: &str,
        limit: Option<u32>,
    ) -> Result<(JobRecord, Vec<bus_schemas::serve::QueryResult>), JobsError> {
        let req = JobsRequest::Outputs {
            id: id.into(),
            limit,
        };
        match self.rpc(&req).await? {
            JobsReply::Outputs { job, outputs } => Ok((*job, outputs)),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Changes an inference job's batch size; returns its record.
    pub async fn batch(&self, id: &str, size: u32) -> Result<JobRecord, JobsError> {
        match self
            .rpc(&JobsRequest::Batch {
                id: id.into(),
                size,
            })
            .await?
        {
            JobsReply::Job { job } => Ok(*job),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The fair-time policy; sets it first when `policy` is given.
    pub async fn qps(&self, policy: Option<QpsPolicy>) -> Result<QpsPolicy, JobsError> {
        match self.rpc(&JobsRequest::Qps { policy }).await? {
            JobsReply::Qps { policy } => Ok(policy),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Cancels a job; returns its record.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, JobsError> {
        match self.rpc(&JobsRequest::Cancel { id: id.into() }).await? {
            JobsReply::Job { job } => Ok(*job),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A model's routes and rollout figures (`routes`), or changes them (`alias`, `rollout`,
    /// `promote`, `rollback`) and returns them as they are after the change.
    pub async fn routes(&self, req: JobsRequest) -> Result<RoutesStatus, JobsError> {
        match self.rpc(&req).await? {
            JobsReply::Routes { status } => Ok(*status),
            other => Err(JobsError::Unexpected(format!("{other:?}"))),
        }
    }
}
