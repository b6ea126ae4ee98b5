//! Cluster-wide settings in the KV bucket `idunno-settings` (key `cluster`): the fair-time
//! policy. Any node answers `qps`; the coordinator reads the policy on every pass.

use super::buckets::open_bucket;
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
    ) -> anyhow::Result<Self> {
        let kv = open_bucket(js, BUCKET, "IDunno settings", replicas, Default::default()).await?;
        Ok(Self { kv })
    }

    /// The settings in force (the defaults if none were stored, or if the stored value is
    /// corrupt, which is logged).
    pub async fn get(&self) -> anyhow::Result<Settings> {
        let Some(bytes) = self.kv.get(KEY).await? else {
            return Ok(Settings::default());
        };
        Ok(decode::<Settings>(&bytes).unwrap_or_else(|e| {
            tracing::warn!("corrupt settings in {BUCKET}, using the defaults: {e}");
            Settings::default()
        }))
    }

    /// Sets the JetStream replication (`None`: automatic).
    pub async fn set_replicas(&self, replicas: Option<u8>) -> anyhow::Result<Settings> {
        let mut settings = self.get().await?;
        settings.replicas = replicas;
        self.kv.put(KEY, encode(&settings)?.into()).await?;
        Ok(settings)
    }

    /// Sets the fair-time policy.
    pub async fn set_qps(&self, qps: QpsPolicy) -> anyhow::Result<Settings> {
        let mut settings = self.get().await?;
        settings.qps = qps;
        self.kv.put(KEY, encode(&settings)?.into()).await?;
        Ok(settings)
    }
}
