//! The error of work a node does for jobs: fetching files, training, serving.

use bus_client::sdfs::SdfsError;
use bus_schemas::sdfs::SdfsErrorKind;
use idunno_cluster::error::BoxError;
use std::path::Path;

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
    /// SDFS or the job bucket failed (a bus or metadata error: it may pass).
    #[error("file store: {what}: {source}")]
    Storage {
        /// What was read or written.
        what: String,
        /// Why.
        source: BoxError,
    },
    /// No replica of an SDFS file delivered its bytes intact (all corrupt, or none recorded
    /// or answering): trying again soon would meet the same.
    #[error("file store: {file}: {source}")]
    Unreadable {
        /// The file.
        file: String,
        /// What the replicas answered.
        source: SdfsError,
    },
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
            JobError::Storage { .. } | JobError::Timeout(_) | JobError::Overloaded(_)
        )
    }

    /// A failure of the file store or the job bucket about `what`.
    pub fn storage(what: impl Into<String>, source: impl Into<BoxError>) -> JobError {
        JobError::Storage {
            what: what.into(),
            source: source.into(),
        }
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

impl JobError {
    /// An SDFS failure about file `name`.
    pub fn from_sdfs(name: &str, e: SdfsError) -> JobError {
        match e.kind() {
            Some(SdfsErrorKind::NotFound) => {
                JobError::NotFound(format!("no file {name:?} in SDFS"))
            }
            // Refusals that every try meets the same way.
            Some(SdfsErrorKind::BadName | SdfsErrorKind::Limit | SdfsErrorKind::BadRequest) => {
                JobError::BadInput(format!("{name}: {e}"))
            }
            _ if matches!(e, SdfsError::Unavailable { .. } | SdfsError::Corrupt(_)) => {
                JobError::Unreadable {
                    file: name.into(),
                    source: e,
                }
            }
            _ => JobError::storage(name, e),
        }
    }
}

/// Why a node could not start, or why it stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A flag or setting is out of range.
    #[error(transparent)]
    Config(#[from] crate::flags::ConfigError),
    /// The dashboard's address cannot be served.
    #[error("cannot serve the dashboard on {addr}: {source}")]
    Http {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The dashboard's certificate or key.
    #[error(transparent)]
    Tls(#[from] crate::dashboard::TlsError),
    /// The bus options (credentials, TLS files, server list) cannot be used.
    #[error("bus: {0}")]
    BusOptions(#[from] bus_client::ConnectError),
    /// The bus refused the connection.
    #[error("bus: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// A subscription could not be made (the connection is gone).
    #[error("subscribing: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// This node's SDFS could not start.
    #[error(transparent)]
    Sdfs(#[from] idunno_sdfs::SdfsNodeError),
    /// A subsystem failed, ended or panicked while the node ran.
    #[error(transparent)]
    Stopped(#[from] idunno_cluster::tasks::TaskError),
    /// A task could not be joined (it panicked or was aborted).
    #[error("a task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The log files cannot be opened or the logger installed.
    #[error("logging: {0}")]
    Logging(String),
}
