//! A batch of inference work and the limits a worker checks it against: checked on every
//! [`WorkBatch`] before it sizes anything, so a hostile or buggy batch is refused with a typed
//! error naming the limit.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One batch of queries, sent to `idunno.v1.jobs.<job_id>.work.<node_id>`. Query `first_query + i`
/// reads sample `(first_query + i) mod count` of the split, so a batch is the same whichever
/// worker runs it and however often it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkBatch {
    /// The job.
    pub job_id: String,
    /// The batch, unique within the job; kept when the batch is sent again.
    pub batch_id: u64,
    /// The first query id.
    pub first_query: u64,
    /// Queries in the batch.
    pub len: u32,
}

/// Most queries in one work batch: the largest batch the coordinator cuts (`serve --batch`,
/// `idunno batch <job> <size>`) and the largest a worker runs.
pub const MAX_BATCH_QUERIES: u32 = 4096;

/// Why a worker refused a [`WorkBatch`] without running it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// `len` is 0 or above [`MAX_BATCH_QUERIES`].
    #[error("a work batch holds 1 to {MAX_BATCH_QUERIES} queries, not {0}")]
    Len(u32),
    /// `first_query + len` does not fit in a query id (u64).
    #[error("a work batch's query ids must fit in 64 bits: {first} + {len} overflows")]
    Overflow {
        /// The batch's first query.
        first: u64,
        /// Its length.
        len: u32,
    },
    /// The job id is not a token.
    #[error("a work batch's job id {0:?} is not a job id")]
    BadJobId(String),
    /// The batch names another job than the one whose subject it came on.
    #[error("a batch of job {got:?} on the work subject of job {want:?}")]
    OtherJob {
        /// The job the batch names.
        got: String,
        /// The job whose work subject it came on.
        want: String,
    },
}

impl WorkBatch {
    /// Checks the batch against the limits, for the job whose work subject it came on.
    pub fn check(&self, job_id: &str) -> Result<(), BatchError> {
        if crate::validate_token(&self.job_id).is_err() {
            let shown: String = self.job_id.chars().take(80).collect();
            return Err(BatchError::BadJobId(shown));
        }
        if self.job_id != job_id {
            return Err(BatchError::OtherJob {
                got: self.job_id.clone(),
                want: job_id.into(),
            });
        }
        if !(1..=MAX_BATCH_QUERIES).contains(&self.len) {
            return Err(BatchError::Len(self.len));
        }
        if self.first_query.checked_add(u64::from(self.len)).is_none() {
            return Err(BatchError::Overflow {
                first: self.first_query,
                len: self.len,
            });
        }
        Ok(())
    }
}

/// Why a worker answered a batch with an error, as a kind callers can match. Readers of an
/// older version see kinds added later as [`WorkErrorKind::Other`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkErrorKind {
    /// The batch breaks a limit or was malformed; sending it again will not help.
    BadBatch,
    /// The worker is busy (its queues are full); another worker or a later try may succeed.
    Overloaded,
    /// The model or the results stream failed; the batch may be sent again.
    Failed,
    /// A kind this reader does not know (or a writer that sent none).
    #[default]
    #[serde(other)]
    Other,
}

impl From<&BatchError> for WorkErrorKind {
    fn from(_: &BatchError) -> Self {
        WorkErrorKind::BadBatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::WorkReply;
    use crate::{decode, encode};
    use proptest::prelude::*;

    fn batch(job_id: &str, first_query: u64, len: u32) -> WorkBatch {
        WorkBatch {
            job_id: job_id.into(),
            batch_id: 1,
            first_query,
            len,
        }
    }

    #[test]
    fn boundary_batches_are_refused_with_the_limit() {
        assert_eq!(batch("j", 0, MAX_BATCH_QUERIES).check("j"), Ok(()));
        let e = batch("j", 0, u32::MAX).check("j").unwrap_err();
        assert_eq!(e, BatchError::Len(u32::MAX));
        assert!(
            e.to_string().contains("1 to 4096 queries, not 4294967295"),
            "{e}"
        );
        assert_eq!(batch("j", 0, 0).check("j"), Err(BatchError::Len(0)));
        assert!(matches!(
            batch("j", u64::MAX, 1).check("j"),
            Err(BatchError::Overflow { .. })
        ));
        assert_eq!(batch("j", u64::MAX - 64, 64).check("j"), Ok(()));
        assert!(matches!(
            batch("k", 0, 1).check("j"),
            Err(BatchError::OtherJob { .. })
        ));
        assert!(matches!(
            batch("a.b", 0, 1).check("a.b"),
            Err(BatchError::BadJobId(_))
        ));
    }

    #[test]
    fn an_unknown_error_kind_reads_as_other() {
        #[derive(Serialize)]
        struct Future {
            schema_version: u16,
            reply: &'static str,
            batch_id: u64,
            worker: &'static str,
            message: &'static str,
            kind: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            schema_version: crate::SCHEMA_VERSION,
            reply: "error",
            batch_id: 1,
            worker: "n1",
            message: "m",
            kind: "melted",
        })
        .unwrap();
        let reply: WorkReply = decode(&bytes).unwrap();
        assert!(matches!(
            reply,
            WorkReply::Error {
                kind: WorkErrorKind::Other,
                ..
            }
        ));
        let sent = WorkReply::Error {
            batch_id: 1,
            worker: "n1".into(),
            message: "m".into(),
            kind: WorkErrorKind::Overloaded,
        };
        assert_eq!(decode::<WorkReply>(&encode(&sent).unwrap()).unwrap(), sent);
    }

    proptest! {
        #[test]
        fn any_batch_is_accepted_only_within_the_limits(
            job in "[a-z.]{0,5}", first in any::<u64>(), len in any::<u32>(),
        ) {
            let b = batch(&job, first, len);
            match b.check(&job) {
                Ok(()) => {
                    prop_assert!((1..=MAX_BATCH_QUERIES).contains(&len));
                    prop_assert!(first.checked_add(u64::from(len)).is_some());
                    prop_assert!(crate::validate_token(&job).is_ok());
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn arbitrary_bytes_as_a_work_batch_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            if let Ok(b) = decode::<WorkBatch>(&bytes) {
                let _ = b.check("j");
            }
        }
    }
}
