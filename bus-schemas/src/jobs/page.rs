//! Pages of lists: which jobs a list names and how many a page holds.

use serde::{Deserialize, Serialize};

/// The most jobs (or files) a list request answers at once: a client pages with `after`.
pub const MAX_PAGE: u32 = 1000;

/// Which jobs a [`JobsRequest::List`] names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobsFilter {
    /// Every job the cluster keeps.
    #[default]
    All,
    /// Jobs that have not ended (queued or running).
    Live,
    /// Jobs that have ended (`completed`).
    Ended,
}

impl JobsFilter {
    /// Whether a job that has ended (or not) is among these.
    pub fn admits(self, ended: bool) -> bool {
        match self {
            JobsFilter::All => true,
            JobsFilter::Live => !ended,
            JobsFilter::Ended => ended,
        }
    }
}
