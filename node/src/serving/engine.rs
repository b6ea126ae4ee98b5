//! The worker's inference engine: models and dataset splits loaded once and kept (at most
//! `--serving-cache-bytes` of them, least recently used evicted first), and batches of
//! queries run through them on the inference thread (see `batch`).

use super::executor::Executor;
use super::lru::ByteLru;
use crate::cache::Cache;
use crate::error::JobError;
use crate::metrics::Metrics;
use crate::ml::model::Model;
use crate::ml::train::Samples;
use bus_schemas::serve::{QueryResult, ServeTarget};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use tch::Device;

/// A loaded model, shared by the jobs and requests that use it.
pub type SharedModel = Arc<Copies>;

/// A model in one copy per inference lane while it runs as stored (a module run as stored
/// takes one batch at a time, so lanes sharing one copy would take turns), then, once
/// prepared, as one prepared module every copy is a handle on (run without a lock).
pub struct Copies {
    copies: Vec<Mutex<Model>>,
}

impl Copies {
    /// `copies` of a model (at least one).
    pub fn new(copies: Vec<Model>) -> Copies {
        Copies {
            copies: copies.into_iter().map(Mutex::new).collect(),
        }
    }

    /// A copy for one batch: a free one, or else the first once it is free. A lane holds at
    /// most one at a time, so with a copy per lane a lane never waits for another.
    pub fn lock(&self) -> MutexGuard<'_, Model> {
        for copy in &self.copies {
            match copy.try_lock() {
                Ok(model) => return model,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        lock_model(&self.copies[0])
    }

    /// Puts `prepared` (a prepared model) in place of every copy.
    fn replace(&self, prepared: Model) {
        for copy in self.copies.iter().skip(1) {
            if let Some(shared) = prepared.share_prepared() {
                *lock_model(copy) = shared;
            }
        }
        *lock_model(&self.copies[0]) = prepared;
    }
}

/// Locks a model; a lock poisoned by a panic (libtorch's, caught on the inference thread) is
/// taken over, since a forward pass changes nothing in the model.
fn lock_model(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|e| e.into_inner())
}

/// A split in memory, ready to serve.
pub struct SplitData {
    pub(super) samples: Mutex<Samples>,
    pub(super) count: u64,
    pub(super) labels: Option<Vec<i64>>,
    pub(super) classes: Vec<String>,
}

/// What the engine keeps: a model (file, version) or a split (dataset, split).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Model(String, u64),
    Split(String, String),
}

#[derive(Clone)]
enum Loaded {
    Model(SharedModel),
    Split(Arc<SplitData>),
}

/// What one batch produced.
pub struct BatchOutput {
    /// One per query.
    pub results: Vec<QueryResult>,
    /// Correct predictions, when labelled.
    pub correct: Option<u32>,
    /// Model time in milliseconds.
    pub infer_ms: f64,
}

/// A job being served: its model and split.
#[derive(Clone)]
pub struct Serving {
    /// What to serve.
    pub target: ServeTarget,
    /// The model: as stored at first, then prepared for inference once that is done beside.
    pub(super) model: SharedModel,
    /// Where the batches' time goes is counted here.
    pub(super) metrics: Arc<Metrics>,
    pub(super) split: Arc<SplitData>,
    pub(super) exec: Executor,
    /// Model milliseconds per query, smoothed (`f64` bits; 0 until measured).
    pub(super) cost: Arc<AtomicU64>,
}

/// Loaded models and splits, shared by every job this worker serves.
pub struct Engine {
    cache: Arc<Cache>,
    device: Device,
    metrics: Arc<Metrics>,
    exec: Executor,
    loaded: tokio::sync::Mutex<ByteLru<Key, Loaded>>,
    /// Whether models are prepared for inference when loaded.
    prepare: bool,
    lanes: usize,
}

impl Engine {
    /// An engine fetching through `cache`, running on `device`, keeping at most
    /// `cfg.cache_bytes` of models and splits, giving online requests `cfg.online_share` of
    /// its time while jobs run; it lists the models it holds in `metrics` (for `workers` and
    /// `stat`).
    pub fn new(
        cache: Arc<Cache>,
        device: Device,
        metrics: Arc<Metrics>,
        cfg: &crate::serving::args::InferConfig,
    ) -> Engine {
        Engine {
            cache,
            device,
            metrics,
            exec: Executor::with_share(cfg.online_share, cfg.lanes),
            loaded: tokio::sync::Mutex::new(ByteLru::new(cfg.cache_bytes)),
            prepare: cfg.prepare_models,
            lanes: cfg.lanes.count.max(1),
        }
    }

    /// Bytes of models and splits held now (estimated from file and tensor sizes).
    pub async fn cached_bytes(&self) -> u64 {
        self.loaded.lock().await.bytes()
    }

    /// Keeps `value` of `bytes`, evicting the least recently used others beyond the budget.
    async fn keep(&self, key: Key, value: Loaded, bytes: u64) {
        let evicted = self.loaded.lock().await.insert(key, value, bytes);
        for key in evicted {
            match key {
                Key::Model(file, version) => {
                    tracing::info!(%file, version, "model evicted from the serving cache");
                    self.metrics.evicted_model(&model_label(&file, version));
                }
                Key::Split(dataset, split) => {
                    tracing::info!(%dataset, %split, "split evicted from the serving cache");
                }
            }
        }
    }

    /// Loads (or finds loaded) what `target` needs, checking that the model fits the split.
    pub async fn prepare(&self, target: &ServeTarget) -> Result<Serving, JobError> {
        let split = self.split(&target.dataset, &target.split).await?;
        let model = self.model(&target.model_file, target.model_version).await?;
        let (m, classes) = (model.clone(), split.classes.len());
        let dataset = target.dataset.clone();
        self.exec
            .run_other(move || {
                let m = m.lock();
                if classes > 0 && m.header.classes.len() != classes {
                    return Err(JobError::BadInput(format!(
                        "the model has {} classes but {dataset} has {classes}",
                        m.header.classes.len()
                    )));
                }
                m.check_fits(&dataset).map_err(JobError::from)
            })
            .await??;
        Ok(Serving {
            target: target.clone(),
            metrics: self.metrics.clone(),
            model,
            split,
            exec: self.exec.clone(),
            cost: Arc::default(),
        })
    }

    /// How many batches run at once (the inference lanes).
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// The lanes every inference call of this node runs on.
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// The model `file` at `version`, loaded once and kept. It is loaded as stored, one copy
    /// per lane (quick), and serves at once; with `--prepare-models` it is prepared for
    /// inference (traced, frozen, optimised: a few hundred milliseconds) beside the lanes
    /// meanwhile, and the prepared module takes the copies' place when it is ready.
    pub async fn model(&self, file: &str, version: u64) -> Result<SharedModel, JobError> {
        let key = Key::Model(file.to_string(), version);
        if let Some(Loaded::Model(m)) = self.loaded.lock().await.get(&key) {
            return Ok(m);
        }
        let bytes = Arc::new(self.cache.read(file, Some(version)).await?);
        // The file holds the weights: its size is what a copy takes in memory, roughly.
        let size = (bytes.len() as u64).saturating_mul(self.lanes as u64);
        let (what, device, file_bytes) = (format!("{file} v{version}"), self.device, bytes.clone());
        let (name, lanes) = (what.clone(), self.lanes);
        let copies = self
            .exec
            .run_other(move || {
                (0..lanes)
                    .map(|_| Model::load_for_inference(&name, &file_bytes, device, false))
                    .collect::<Result<Vec<Model>, _>>()
            })
            .await??;
        let model = Arc::new(Copies::new(copies));
        if self.prepare && device == Device::Cpu {
            prepare_beside(model.clone(), what, bytes, device);
        }
        self.keep(key, Loaded::Model(model.clone()), size).await;
        self.metrics.cached_model(&model_label(file, version));
        Ok(model)
    }

    async fn split(&self, dataset: &str, split: &str) -> Result<Arc<SplitData>, JobError> {
        let key = Key::Split(dataset.to_string(), split.to_string());
        if let Some(Loaded::Split(s)) = self.loaded.lock().await.get(&key) {
            return Ok(s);
        }
        let manifest = self.cache.manifest(dataset).await?;
        let loaded = self.cache.split(dataset, &manifest, split).await?;
        let classes = manifest.classes.clone();
        // The pixels (one byte each, copied into a tensor) and the labels (a list and a tensor).
        let labels = loaded.labels.as_ref().map_or(0, Vec::len) as u64;
        let size = (loaded.pixels.len() as u64).saturating_add(labels * 16);
        // Copying the pixels into a tensor takes a while for a large split: off the runtime.
        let data = tokio::task::spawn_blocking(move || SplitData {
            count: loaded.count as u64,
            samples: Mutex::new(Samples::from_split(&loaded, None)),
            labels: loaded.labels,
            classes,
        })
        .await
        .map_err(|e| JobError::Internal(e.to_string()))?;
        let data = Arc::new(data);
        self.keep(key, Loaded::Split(data.clone()), size).await;
        Ok(data)
    }
}

/// Prepares model `what` (its file's `bytes`) for inference beside the lanes, on the runtime's
/// blocking pool (which the node waits for when it stops; on a one-lane node the lane keeps
/// serving with the model as stored), and puts the prepared model in `model`'s place when it
/// is ready; a model that cannot be prepared keeps running as stored.
fn prepare_beside(model: SharedModel, what: String, bytes: Arc<Vec<u8>>, device: Device) {
    tokio::task::spawn_blocking(move || {
        let began = std::time::Instant::now();
        match Model::load_for_inference(&what, &bytes, device, true) {
            Ok(prepared) if prepared.is_prepared() => {
                model.replace(prepared);
                let took = began.elapsed();
                tracing::info!(model = %what, ?took, "prepared for inference");
            }
            Ok(_) => {} // it could not be frozen: it runs as stored (said when loading)
            Err(e) => tracing::warn!(model = %what, "cannot prepare for inference: {e}"),
        }
    });
}

/// How `workers` and `stat` name a model: `name vN`.
fn model_label(file: &str, version: u64) -> String {
    let name = file.strip_prefix("models/").unwrap_or(file);
    format!("{name} v{version}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::arch::Arch;

    fn plain(file: &[u8]) -> Model {
        Model::load("m", file, Device::Cpu).unwrap()
    }

    #[test]
    fn lanes_take_free_copies_until_one_prepared_module_replaces_them() {
        let mut h = crate::ml::model::tests::header(4);
        h.shape = [1, 16, 16];
        let file = Model::builtin(Arch::Cnn, h, Device::Cpu).to_file(None);
        let copies = Copies::new(vec![plain(&file), plain(&file)]);
        {
            let a = copies.lock();
            let b = copies.lock();
            assert!(
                !std::ptr::eq(&*a, &*b),
                "a second lane takes the other copy"
            );
            assert!(!a.is_prepared() && !b.is_prepared());
        }
        let mut prepared = plain(&file);
        prepared.prepare("m", &file).unwrap();
        copies.replace(prepared);
        let (a, b) = (copies.lock(), copies.lock());
        assert!(
            a.is_prepared() && b.is_prepared(),
            "every copy is a handle on it"
        );
        let x = tch::Tensor::zeros([2, 1, 16, 16], (tch::Kind::Uint8, Device::Cpu));
        let same = a
            .forward(&x, false)
            .unwrap()
            .equal(&b.forward(&x, false).unwrap());
        assert!(same);
    }
}
