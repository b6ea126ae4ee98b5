//! Model routes on this node: one task follows the `idunno-models` bucket (a KV watch feeding
//! a book it owns, as the job index follows the jobs) and publishes the table of every model's
//! routes after each change; online requests read the table as published, so a promote or a
//! rollback takes effect on every node as soon as the watch delivers it.
//!
//! A canary's share is kept exact on each node by counting the requests of the rollout: request
//! `n` goes to the canary when `floor((n + 1) · p) > floor(n · p)` ([`Rollout::arm`]).

use crate::error::JobError;
use crate::kv_index::{self, Applied};
use async_nats::jetstream::kv::{Entry, Operation};
use bus_schemas::models::{Arm, ModelRef, ModelRoutes, Pick, DEFAULT_ALIAS};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use bus_schemas::models::Rollout;

/// Every model's routes, once loaded (`None` before).
pub type Table = Option<Arc<BTreeMap<String, ModelRoutes>>>;

/// How long a request waits for the table to load when the node has just started.
const LOAD_WAIT: Duration = Duration::from_secs(3);
/// Rollouts whose request counters a node keeps; the oldest beyond go.
const MAX_COUNTERS: usize = 256;

/// The book the watch feeds.
struct Book {
    routes: BTreeMap<String, ModelRoutes>,
    table: watch::Sender<Table>,
}

impl kv_index::Book for Book {
    fn take(&mut self, entry: Entry) -> Applied {
        if entry.operation != Operation::Put {
            return match self.routes.remove(&entry.key) {
                Some(_) => Applied::Changed,
                None => Applied::Same,
            };
        }
        match bus_schemas::decode::<ModelRoutes>(&entry.value) {
            // Keyed by the entry's key: a value naming another model is not trusted for it.
            Ok(routes) if routes.model == entry.key => {
                self.routes.insert(entry.key, routes);
                Applied::Changed
            }
            Ok(_) | Err(_) => {
                tracing::warn!(key = %entry.key, "corrupt model routes kept out of the table");
                Applied::Corrupt
            }
        }
    }

    fn settled(&mut self) {
        self.table.send_replace(Some(Arc::new(self.routes.clone())));
    }

    fn reset(&mut self) {
        self.routes.clear();
    }
}

/// Follows `store` until `shutdown`, publishing the table to `table`.
pub async fn run(
    store: async_nats::jetstream::kv::Store,
    table: watch::Sender<Table>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let (_handle, runner) = kv_index::new::<Book>(store, "the model routes");
    let make = move || Book {
        routes: BTreeMap::new(),
        table: table.clone(),
    };
    kv_index::run(runner, make, move || metrics.garbage(), shutdown).await
}

/// The version a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The version (`None`: the newest).
    pub version: Option<u64>,
    /// The rollout and arm it was sent to, if a rollout split its alias.
    pub arm: Option<(u64, Arm)>,
}

/// Resolves model references against the published table.
pub struct Routes {
    table: watch::Receiver<Table>,
    /// Requests counted per (model, rollout).
    counters: Mutex<HashMap<(String, u64), u64>>,
}

impl Routes {
    /// Reads the table `table` publishes.
    pub fn new(table: watch::Receiver<Table>) -> Self {
        Routes {
            table,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// The table, waiting a little for it to load.
    pub async fn table(&self) -> Result<Arc<BTreeMap<String, ModelRoutes>>, JobError> {
        let mut rx = self.table.clone();
        let loaded = tokio::time::timeout(LOAD_WAIT, rx.wait_for(Option::is_some)).await;
        match loaded {
            Ok(Ok(t)) => Ok(t.clone().unwrap_or_default()),
            _ => Err(JobError::Overloaded(
                "this node has not loaded the model routes yet; try again".into(),
            )),
        }
    }

    /// The version `r` asks for now; a request for an alias with a rollout is counted and
    /// sent to its arm.
    pub async fn pick(&self, r: &ModelRef) -> Result<Choice, JobError> {
        self.resolve(r, true).await
    }

    /// The version `r` names without counting a request: an alias with a rollout names its
    /// baseline (what batch jobs and model descriptions take). `None`: the newest.
    pub async fn version_of(&self, r: &ModelRef) -> Result<Option<u64>, JobError> {
        Ok(self.resolve(r, false).await?.version)
    }

    /// `r` through the table; a rollout splits the request when `count`, else gives its
    /// baseline.
    async fn resolve(&self, r: &ModelRef, count: bool) -> Result<Choice, JobError> {
        let alias = match &r.pick {
            Pick::Version(v) => return Ok(fixed(Some(*v))),
            Pick::Alias(a) => a.as_str(),
            Pick::Default => DEFAULT_ALIAS,
        };
        let table = self.table().await?;
        let routes = table.get(&r.name);
        if let Some(rollout) = routes.and_then(|m| m.rollout_on(alias)) {
            if !count {
                return Ok(fixed(Some(rollout.baseline)));
            }
            let arm = rollout.arm(self.count(&r.name, rollout));
            let version = Some(rollout.version(arm));
            let arm = Some((rollout.id, arm));
            return Ok(Choice { version, arm });
        }
        match routes.and_then(|m| m.aliases.get(alias)) {
            Some(v) => Ok(fixed(Some(*v))),
            None if r.pick == Pick::Default => Ok(fixed(None)),
            None => Err(no_alias(&r.name, alias)),
        }
    }

    /// The number of this request among the rollout's on this node.
    fn count(&self, model: &str, rollout: &Rollout) -> u64 {
        let Ok(mut counters) = self.counters.lock() else {
            return 0;
        };
        if counters.len() >= MAX_COUNTERS && !counters.contains_key(&key(model, rollout)) {
            let oldest = counters.keys().min_by_key(|(_, id)| *id).cloned();
            oldest.and_then(|k| counters.remove(&k));
        }
        let n = counters.entry(key(model, rollout)).or_insert(0);
        let this = *n;
        *n += 1;
        this
    }
}

fn no_alias(model: &str, alias: &str) -> JobError {
    JobError::UnknownModel(format!(
        "model {model:?} has no alias {alias:?} (see `idunno model status {model}`)"
    ))
}

fn key(model: &str, rollout: &Rollout) -> (String, u64) {
    (model.to_string(), rollout.id)
}

fn fixed(version: Option<u64>) -> Choice {
    Choice { version, arm: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: ModelRoutes) -> watch::Receiver<Table> {
        let map = BTreeMap::from([(routes.model.clone(), routes)]);
        watch::channel(Some(Arc::new(map))).1
    }

    fn with_rollout(percent: f64) -> ModelRoutes {
        let mut m = ModelRoutes {
            model: "m".into(),
            ..Default::default()
        };
        m.aliases.insert("production".into(), 1);
        m.aliases.insert("staging".into(), 4);
        m.rollout = Some(Rollout {
            id: 7,
            alias: "production".into(),
            baseline: 1,
            canary: 2,
            percent,
            ended: None,
        });
        m
    }

    async fn pick(routes: &Routes, text: &str) -> Result<Choice, JobError> {
        routes.pick(&ModelRef::parse(text).unwrap()).await
    }

    #[tokio::test]
    async fn references_resolve_through_aliases_and_the_rollout() {
        let routes = Routes::new(table(with_rollout(10.0)));
        assert_eq!(pick(&routes, "m:3").await.unwrap(), fixed(Some(3)));
        assert_eq!(pick(&routes, "m@staging").await.unwrap(), fixed(Some(4)));
        assert!(matches!(
            pick(&routes, "m@nope").await,
            Err(JobError::UnknownModel(_))
        ));
        // Unknown models and models without the default alias take the newest.
        assert_eq!(pick(&routes, "other").await.unwrap(), fixed(None));
        let mut canary = 0;
        for _ in 0..1000 {
            // A bare name follows `production`, and so does its rollout.
            for text in ["m", "m@production"] {
                let c = pick(&routes, text).await.unwrap();
                let (id, arm) = c.arm.unwrap();
                assert_eq!(id, 7);
                assert_eq!(c.version, Some(if arm == Arm::Canary { 2 } else { 1 }));
                canary += usize::from(arm == Arm::Canary);
            }
        }
        assert_eq!(canary, 200, "exactly 10% of 2000");
        // Batch jobs and descriptions take the baseline, uncounted.
        let m = ModelRef::parse("m@production").unwrap();
        assert_eq!(routes.version_of(&m).await.unwrap(), Some(1));
        let n = pick(&routes, "m").await.unwrap().arm.unwrap();
        assert_eq!(n.1, Arm::Baseline, "request 2000 of the rollout, not 2001");
    }

    #[tokio::test]
    async fn a_table_not_loaded_is_a_refusal_to_retry() {
        let (_tx, rx) = watch::channel(None);
        let routes = Routes::new(rx);
        tokio::time::pause();
        let e = pick(&routes, "m").await.unwrap_err();
        assert!(matches!(e, JobError::Overloaded(_)), "{e}");
        assert_eq!(pick(&routes, "m:2").await.unwrap(), fixed(Some(2)));
    }
}
