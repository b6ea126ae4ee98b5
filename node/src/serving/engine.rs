//! The worker's inference engine: models and dataset splits loaded once and kept, and batches
//! of queries run through them on blocking threads.

use super::executor::Executor;
use crate::jobs::cache::Cache;
use crate::jobs::JobError;
use crate::metrics::Metrics;
use crate::ml::model::Model;
use crate::ml::train::Samples;
use bus_schemas::serve::{QueryResult, ServeTarget, WorkBatch};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A loaded model, used by one batch at a time.
pub type SharedModel = Arc<Mutex<Model>>;

/// A split in memory, ready to serve.
pub struct SplitData {
    samples: Mutex<Samples>,
    count: u64,
    labels: Option<Vec<i64>>,
    classes: Vec<String>,
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
    model: SharedModel,
    split: Arc<SplitData>,
    exec: Executor,
    /// Model milliseconds per query, smoothed (`f64` bits; 0 until measured).
    cost: Arc<AtomicU64>,
}

/// Loaded models and splits, shared by every job this worker serves.
pub struct Engine {
    cache: Arc<Cache>,
    device: Device,
    metrics: Arc<Metrics>,
    exec: Executor,
    models: tokio::sync::Mutex<HashMap<(String, u64), SharedModel>>,
    splits: tokio::sync::Mutex<HashMap<(String, String), Arc<SplitData>>>,
}

impl Engine {
    /// An engine fetching through `cache`, running on `device`; it lists the models it loaded
    /// in `metrics` (for `workers` and `stat`).
    pub fn new(cache: Arc<Cache>, device: Device, metrics: Arc<Metrics>) -> Engine {
        Engine {
            cache,
            device,
            metrics,
            exec: Executor::new(),
            models: Default::default(),
            splits: Default::default(),
        }
    }

    /// Loads (or finds loaded) what `target` needs, checking that the model fits the split.
    pub async fn prepare(&self, target: &ServeTarget) -> Result<Serving, JobError> {
        let split = self.split(&target.dataset, &target.split).await?;
        let model = self.model(&target.model_file, target.model_version).await?;
        let (m, classes) = (model.clone(), split.classes.len());
        let dataset = target.dataset.clone();
        self.exec
            .run(move || {
                let m = m.lock().expect("model lock");
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
            model,
            split,
            exec: self.exec.clone(),
            cost: Arc::default(),
        })
    }

    /// The thread every inference call of this node runs on.
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// The model `file` at `version`, loaded once and kept.
    pub async fn model(&self, file: &str, version: u64) -> Result<SharedModel, JobError> {
        let key = (file.to_string(), version);
        if let Some(m) = self.models.lock().await.get(&key) {
            return Ok(m.clone());
        }
        let bytes = self.cache.read(file, Some(version)).await?;
        let (what, device) = (format!("{file} v{version}"), self.device);
        let model = self
            .exec
            .run(move || Model::load(&what, &bytes, device))
            .await??;
        let model = Arc::new(Mutex::new(model));
        self.models.lock().await.insert(key, model.clone());
        let name = file.strip_prefix("models/").unwrap_or(file);
        self.metrics.cached_model(&format!("{name} v{version}"));
        Ok(model)
    }

    async fn split(&self, dataset: &str, split: &str) -> Result<Arc<SplitData>, JobError> {
        let key = (dataset.to_string(), split.to_string());
        if let Some(s) = self.splits.lock().await.get(&key) {
            return Ok(s.clone());
        }
        let manifest = self.cache.manifest(dataset).await?;
        let loaded = self.cache.split(dataset, &manifest, split).await?;
        let classes = manifest.classes.clone();
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
        self.splits.lock().await.insert(key, data.clone());
        Ok(data)
    }
}

/// While online requests arrive (one within [`SLICING_WINDOW`]), the longest stretch one piece
/// of a batch holds the inference thread: online requests go first, so they wait at most about
/// this long for a batch job. Without online requests a batch runs whole (fastest).
const SLICE_MS: f64 = 20.0;
const SLICING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Serving {
    /// Runs `batch` on the inference thread (in pieces of about [`SLICE_MS`] each while online
    /// requests arrive).
    pub async fn run(&self, batch: &WorkBatch) -> Result<BatchOutput, JobError> {
        let (first, len) = (batch.first_query, u64::from(batch.len));
        let per_query = f64::from_bits(self.cost.load(Ordering::Relaxed));
        let slicing = self.exec.urgent_within(SLICING_WINDOW);
        let piece = if slicing && per_query > 0.0 {
            ((SLICE_MS / per_query) as u64).clamp(1, len.max(1))
        } else {
            len.max(1)
        };
        let mut out = BatchOutput {
            results: Vec::with_capacity(len as usize),
            correct: self.split.labels.as_ref().map(|_| 0),
            infer_ms: 0.0,
        };
        let mut at = first;
        while at < first + len {
            let n = piece.min(first + len - at);
            let this = self.clone();
            let part = self.exec.run(move || this.run_blocking(at, n)).await??;
            out.results.extend(part.results);
            out.infer_ms += part.infer_ms;
            if let (Some(c), Some(k)) = (out.correct.as_mut(), part.correct) {
                *c += k;
            }
            at += n;
        }
        if len > 0 {
            let now = out.infer_ms / len as f64;
            let cost = if per_query > 0.0 {
                0.8 * per_query + 0.2 * now
            } else {
                now
            };
            self.cost.store(cost.to_bits(), Ordering::Relaxed);
        }
        Ok(out)
    }

    fn run_blocking(&self, first: u64, len: u64) -> Result<BatchOutput, JobError> {
        let count = self.split.count.max(1);
        let samples: Vec<i64> = (first..first + len).map(|q| (q % count) as i64).collect();
        let x = {
            let data = self.split.samples.lock().expect("split lock");
            data.images.index_select(0, &Tensor::from_slice(&samples))
        };
        let started = Instant::now();
        let (pred, score) = {
            let model = self.model.lock().expect("model lock");
            let _guard = tch::no_grad_guard();
            let probs = model.forward(&x, false)?.softmax(-1, Kind::Float);
            let (score, pred) = probs.max_dim(-1, false);
            (pred.to_device(Device::Cpu), score.to_device(Device::Cpu))
        };
        let infer_ms = started.elapsed().as_secs_f64() * 1000.0;
        let bad = |e: tch::TchError| JobError::Internal(e.to_string());
        let pred = Vec::<i64>::try_from(&pred).map_err(bad)?;
        let score = Vec::<f32>::try_from(&score).map_err(bad)?;
        let classes = &self.split.classes;
        let mut correct = self.split.labels.as_ref().map(|_| 0u32);
        let results = (0..len as usize)
            .map(|i| {
                let sample = samples[i] as u64;
                let label = self.split.labels.as_ref().map(|l| l[sample as usize]);
                if let (Some(c), Some(l)) = (correct.as_mut(), label) {
                    *c += u32::from(l == pred[i]);
                }
                QueryResult {
                    query_id: first + i as u64,
                    sample,
                    predicted: pred[i],
                    class_name: classes
                        .get(pred[i] as usize)
                        .cloned()
                        .unwrap_or_else(|| pred[i].to_string()),
                    score: score[i],
                    label,
                }
            })
            .collect();
        Ok(BatchOutput {
            results,
            correct,
            infer_ms,
        })
    }
}
