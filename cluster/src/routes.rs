//! Model routes in the KV bucket `idunno-models` (one key per model; see
//! [`bus_schemas::models`]). Every change is a compare-and-swap on the key's revision as the
//! stream's leader has it, so two operators' changes never interleave: a promote and a
//! rollback at once end with one of them applied whole and the other refused or applied after.

use super::buckets::open_bucket;
use crate::cas::{leader_entry, Tries};
use crate::error::KvError;
use async_nats::jetstream::kv::Store;
use bus_schemas::models::ModelRoutes;
use bus_schemas::{decode, encode};

/// The bucket's name.
pub const BUCKET: &str = bus_schemas::subjects::MODELS_BUCKET;

/// Why a change of routes was not made.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The bucket failed (a later try may succeed).
    #[error(transparent)]
    Bucket(#[from] KvError),
    /// The change refused (the state does not allow it); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// Other writers kept changing the routes.
    #[error("the routes of {0} kept changing; try again")]
    Contended(String),
}

/// The models bucket.
#[derive(Clone)]
pub struct RoutesStore {
    kv: Store,
}

impl RoutesStore {
    /// Opens (or creates) the bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, KvError> {
        let kv = open_bucket(
            js,
            BUCKET,
            "IDunno model routes",
            replicas,
            Default::default(),
        )
        .await?;
        Ok(Self { kv })
    }

    /// The bucket (for a watch).
    pub fn store(&self) -> &Store {
        &self.kv
    }

    /// The routes of `model` as the leader has them (empty routes if none; a corrupt value
    /// is an error, never read as empty: a change would overwrite it).
    pub async fn get(&self, model: &str) -> Result<(ModelRoutes, Option<u64>), KvError> {
        let Some(entry) = leader_entry(&self.kv, model).await? else {
            return Ok((empty(model), None));
        };
        if entry.deleted {
            return Ok((empty(model), Some(entry.revision)));
        }
        let routes = decode::<ModelRoutes>(&entry.value)
            .map_err(|e| KvError::corrupt(format!("the routes of {model}"), e))?;
        Ok((routes, Some(entry.revision)))
    }

    /// Applies `change` to the routes of `model` as one compare-and-swap (tried again from a
    /// fresh read when another writer came first); returns the routes written. `change` says
    /// why it refuses with `Err`.
    pub async fn modify(
        &self,
        model: &str,
        mut change: impl FnMut(&mut ModelRoutes) -> Result<(), String>,
    ) -> Result<ModelRoutes, RoutesError> {
        let mut tries = Tries::new();
        loop {
            let (mut routes, revision) = self.get(model).await?;
            change(&mut routes).map_err(RoutesError::Refused)?;
            routes.changed_ms = crate::lease::now_ms();
            let bytes = encode(&routes).map_err(|e| KvError::corrupt("routes", e))?;
            let written = match revision {
                Some(r) => {
                    (self.kv.update(model, bytes.into(), r).await).map_err(|e| e.to_string())
                }
                None => (self.kv.create(model, bytes.into()).await).map_err(|e| e.to_string()),
            };
            match written {
                Ok(_) => return Ok(routes),
                Err(e) => tracing::debug!(%model, "routes not written, retrying: {e}"),
            }
            if !tries.next().await {
                return Err(RoutesError::Contended(model.to_string()));
            }
        }
    }
}

fn empty(model: &str) -> ModelRoutes {
    ModelRoutes {
        model: model.to_string(),
        ..Default::default()
    }
}
