//! Job records in the JetStream KV bucket `idunno-jobs`, one entry per job id. Every change is
//! a compare-and-swap on the entry's revision, so a coordinator and a worker (or two
//! coordinators for a moment) never overwrite each other's update.

use crate::cluster::buckets::open_bucket;
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
    ) -> anyhow::Result<Self> {
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
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<(JobRecord, u64)>> {
        match crate::cas::leader_entry(&self.kv, id).await? {
            Some(e) if !e.deleted => {
                let job = decode::<JobRecord>(&e.value)
                    .map_err(|err| anyhow::anyhow!("corrupt job record {id}: {err}"))?;
                Ok(Some((job, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Stores a new job; fails if the id exists.
    pub async fn create(&self, job: &JobRecord) -> anyhow::Result<()> {
        self.kv.create(&job.id, encode(job)?.into()).await?;
        Ok(())
    }

    /// Applies `change` with compare-and-swap, retrying on races and while the bucket is
    /// briefly unavailable (see [`crate::cas`]; `change` must be idempotent: a write whose
    /// answer was lost may have been applied). `change` returns false to leave the record as
    /// it is. Returns the record stored, or None if unchanged or absent.
    pub async fn modify<F>(&self, id: &str, mut change: F) -> anyhow::Result<Option<JobRecord>>
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
                    match self.kv.update(id, encode(&job)?.into(), revision).await {
                        Ok(_) => return Ok(Some(job)),
                        Err(e) => anyhow::Error::from(e),
                    }
                }
                Err(e) => e,
            };
            tracing::debug!(%id, tries = tries.tried(), "job record not written, retrying: {e:#}");
            if !tries.next().await {
                anyhow::bail!("cannot write the record of job {id}: {e:#}")
            }
        }
    }
}
