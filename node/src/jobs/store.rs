//! Job records in the JetStream KV bucket `idunno-jobs`, one entry per job id. Every change is
//! a compare-and-swap on the entry's revision, so a coordinator and a worker (or two
//! coordinators for a moment) never overwrite each other's update.

use crate::cluster::buckets::open_bucket;
use crate::cluster::error::KvError;
use async_nats::jetstream::kv::Store;
use bus_schemas::jobs::JobRecord;
use bus_schemas::{decode, encode};

/// The bucket's name.
pub const BUCKET: &str = bus_schemas::subjects::JOBS_BUCKET;

/// The job records.
#[derive(Clone)]
pub struct JobStore {
    kv: Store,
}

impl JobStore {
    /// Opens the bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, KvError> {
        let kv = open_bucket(
            js,
            BUCKET,
            "IDunno job records",
            replicas,
            Default::default(),
        )
        .await?;
        Ok(Self { kv })
    }

    /// The bucket, for watching.
    pub fn kv(&self) -> &Store {
        &self.kv
    }

    /// A job and its entry revision, as the bucket's leader has it (see [`crate::cas`]).
    pub async fn get(&self, id: &str) -> Result<Option<(JobRecord, u64)>, KvError> {
        match crate::cas::leader_entry(&self.kv, id).await? {
            Some(e) if !e.deleted => {
                let job = decode::<JobRecord>(&e.value)
                    .map_err(|err| KvError::corrupt(format!("the record of job {id}"), err))?;
                Ok(Some((job, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Stores a new job; fails if the id exists.
    pub async fn create(&self, job: &JobRecord) -> Result<(), KvError> {
        let what = || format!("the record of job {}", job.id);
        let bytes = encode(job).map_err(|e| KvError::corrupt(what(), e))?;
        (self.kv.create(&job.id, bytes.into()).await).map_err(|e| KvError::new(what(), e))?;
        Ok(())
    }

    /// Applies `change` with compare-and-swap, retrying on races and while the bucket is
    /// briefly unavailable (see [`crate::cas`]; `change` must be idempotent: a write whose
    /// answer was lost may have been applied). `change` returns false to leave the record as
    /// it is. Returns the record stored, or None if unchanged or absent.
    pub async fn modify<F>(&self, id: &str, mut change: F) -> Result<Option<JobRecord>, KvError>
    where
        F: FnMut(&mut JobRecord) -> bool,
    {
        let mut tries = crate::cas::Tries::new();
        loop {
            let e = match self.get(id).await {
                Ok(None) => return Ok(None),
                Ok(Some((mut job, revision))) => {
                    if !change(&mut job) {
                        return Ok(None);
                    }
                    let what = || format!("the record of job {id}");
                    let bytes = encode(&job).map_err(|e| KvError::corrupt(what(), e))?;
                    match self.kv.update(id, bytes.into(), revision).await {
                        Ok(_) => return Ok(Some(job)),
                        Err(e) => KvError::new(what(), e),
                    }
                }
                Err(e) => e,
            };
            tracing::debug!(%id, tries = tries.tried(), "job record not written, retrying: {e}");
            if !tries.next().await {
                let what = format!("cannot write the record of job {id}");
                return Err(KvError::with_kind(what, e.kind(), e));
            }
        }
    }
}
