//! Job records in the JetStream KV bucket `idunno-jobs`, one entry per job id. Every change is
//! a compare-and-swap on the entry's revision, so a coordinator and a worker (or two
//! coordinators for a moment) never overwrite each other's update.

use async_nats::jetstream::kv::{self, Store};
use bus_schemas::jobs::JobRecord;
use bus_schemas::{decode, encode};
use futures::TryStreamExt;

/// The bucket's name.
pub const BUCKET: &str = "idunno-jobs";

/// Opens (or creates) a KV bucket with `history` 1.
pub async fn open_bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    description: &str,
    replicas: usize,
    max_age: std::time::Duration,
) -> anyhow::Result<Store> {
    if let Ok(kv) = js.get_key_value(name).await {
        return Ok(kv);
    }
    let config = kv::Config {
        bucket: name.into(),
        description: description.into(),
        history: 1,
        num_replicas: replicas,
        max_age,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Another node created it at the same moment.
        Err(_) => Ok(js.get_key_value(name).await?),
    }
}

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

    /// A job and its entry revision.
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<(JobRecord, u64)>> {
        let Some(entry) = self.kv.entry(id).await? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let job = decode::<JobRecord>(&entry.value)
            .map_err(|e| anyhow::anyhow!("corrupt job record {id}: {e}"))?;
        Ok(Some((job, entry.revision)))
    }

    /// Every job whose record decodes (a corrupt one is logged and skipped).
    pub async fn list(&self) -> anyhow::Result<Vec<JobRecord>> {
        let keys: Vec<String> = self.kv.keys().await?.try_collect().await?;
        let mut jobs = Vec::with_capacity(keys.len());
        for key in keys {
            match self.get(&key).await {
                Ok(Some((job, _))) => jobs.push(job),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        Ok(jobs)
    }

    /// Stores a new job; fails if the id exists.
    pub async fn create(&self, job: &JobRecord) -> anyhow::Result<()> {
        self.kv.create(&job.id, encode(job)?.into()).await?;
        Ok(())
    }

    /// Applies `change` with compare-and-swap, retrying on races. `change` returns false to
    /// leave the record as it is. Returns the record stored, or None if unchanged or absent.
    pub async fn modify<F>(&self, id: &str, mut change: F) -> anyhow::Result<Option<JobRecord>>
    where
        F: FnMut(&mut JobRecord) -> bool,
    {
        for _ in 0..32 {
            let Some((mut job, revision)) = self.get(id).await? else {
                return Ok(None);
            };
            if !change(&mut job) {
                return Ok(None);
            }
            match self.kv.update(id, encode(&job)?.into(), revision).await {
                Ok(_) => return Ok(Some(job)),
                Err(e) => tracing::debug!(%id, "job record write lost a race, retrying: {e}"),
            }
        }
        anyhow::bail!("the record of job {id} kept changing; try again")
    }
}
