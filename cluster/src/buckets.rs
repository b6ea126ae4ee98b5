//! Opening IDunno's KV buckets.

use crate::error::KvError;
use async_nats::jetstream::kv::{self, Store};

/// Opens (or creates) a KV bucket with `history` 1.
pub async fn open_bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
    description: &str,
    replicas: usize,
    max_age: std::time::Duration,
) -> Result<Store, KvError> {
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
        Err(_) => {
            (js.get_key_value(name).await).map_err(|e| KvError::new(format!("opening {name}"), e))
        }
    }
}
