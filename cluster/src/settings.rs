//! Cluster-wide settings in the KV bucket `idunno-settings` (key `cluster`): the fair-time
//! policy. Any node answers `qps`; the coordinator reads the policy on every pass.

use super::buckets::open_bucket;
use crate::error::KvError;
use async_nats::jetstream::kv::Store;
use bus_schemas::jobs::{QpsPolicy, Settings};
use bus_schemas::{decode, encode};

/// The bucket's name.
pub const BUCKET: &str = bus_schemas::subjects::SETTINGS_BUCKET;
const KEY: &str = "cluster";

/// The settings bucket.
#[derive(Clone)]
pub struct SettingsStore {
    kv: Store,
}

impl SettingsStore {
    /// Opens (or creates) the bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, KvError> {
        let kv = open_bucket(js, BUCKET, "IDunno settings", replicas, Default::default()).await?;
        Ok(Self { kv })
    }

    /// The settings in force (the defaults if none were stored, or if the stored value is
    /// corrupt, which is logged).
    pub async fn get(&self) -> Result<Settings, KvError> {
        let read = self.kv.get(KEY).await;
        let Some(bytes) = read.map_err(|e| KvError::new("reading the settings", e))? else {
            return Ok(Settings::default());
        };
        Ok(decode::<Settings>(&bytes).unwrap_or_else(|e| {
            tracing::warn!("corrupt settings in {BUCKET}, using the defaults: {e}");
            Settings::default()
        }))
    }

    /// Sets the JetStream replication (`None`: automatic).
    pub async fn set_replicas(&self, replicas: Option<u8>) -> Result<Settings, KvError> {
        let mut settings = self.get().await?;
        settings.replicas = replicas;
        self.put(settings).await
    }

    /// Sets the fair-time policy.
    pub async fn set_qps(&self, qps: QpsPolicy) -> Result<Settings, KvError> {
        let mut settings = self.get().await?;
        settings.qps = qps;
        self.put(settings).await
    }

    async fn put(&self, settings: Settings) -> Result<Settings, KvError> {
        let bytes = encode(&settings).map_err(|e| KvError::corrupt("the settings", e))?;
        (self.kv.put(KEY, bytes.into()).await)
            .map_err(|e| KvError::new("writing the settings", e))?;
        Ok(settings)
    }
}
