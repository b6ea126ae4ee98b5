//! One work batch through a job's model: checked against the limits first, run on the
//! inference thread in pieces, and the model's output checked before it is read.

use super::engine::{BatchOutput, Serving};
use super::output::check_shape;
use crate::error::JobError;
use crate::stages::Stage;
use bus_schemas::serve::{QueryResult, WorkBatch, MAX_BATCH_QUERIES};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// While online requests arrive (one within [`SLICING_WINDOW`]), the longest stretch one piece
/// of a batch holds the inference thread: online requests go first, so they wait at most about
/// this long for a batch job. Without online requests a batch runs whole (fastest).
const SLICE_MS: f64 = 20.0;
const SLICING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl Serving {
    /// Runs `batch` on the inference thread (in pieces of about [`SLICE_MS`] each while online
    /// requests arrive). A batch breaking the limits is refused before anything is sized.
    pub async fn run(&self, batch: &WorkBatch) -> Result<BatchOutput, JobError> {
        batch
            .check(&self.target.job_id)
            .map_err(|e| JobError::BadInput(e.to_string()))?;
        let (first, len) = (batch.first_query, u64::from(batch.len));
        let end = first
            .checked_add(len)
            .ok_or_else(|| JobError::BadInput("query ids overflow".into()))?;
        let per_query = f64::from_bits(self.cost.load(Ordering::Relaxed));
        let slicing = self.exec.urgent_within(SLICING_WINDOW);
        let piece = if slicing && per_query > 0.0 {
            ((SLICE_MS / per_query) as u64).clamp(1, len.max(1))
        } else {
            len.max(1)
        };
        let mut out = BatchOutput {
            // `len` is at most MAX_BATCH_QUERIES (checked above).
            results: Vec::with_capacity(len.min(u64::from(MAX_BATCH_QUERIES)) as usize),
            correct: self.split.labels.as_ref().map(|_| 0),
            infer_ms: 0.0,
        };
        let mut at = first;
        while at < end {
            let n = piece.min(end - at);
            let this = self.clone();
            let submitted = Instant::now();
            // Only the model's work runs on an inference lane; the results are built here.
            let part = self
                .exec
                .run(move || {
                    this.metrics.stages.add(Stage::Queued, submitted.elapsed());
                    this.run_blocking(at, n)
                })
                .await??;
            out.infer_ms += part.infer_ms;
            let building = Instant::now();
            self.results_into(at, &part, &mut out);
            self.metrics.stages.add(Stage::Results, building.elapsed());
            at += n;
        }
        let model = self.target.model_file.trim_start_matches("models/");
        let seconds = out.infer_ms / 1000.0;
        self.metrics.serve_batches.0.observe(model, seconds);
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

    /// Appends one result per query of `part` (which starts at query `first`) to `out`.
    fn results_into(&self, first: u64, part: &Classified, out: &mut BatchOutput) {
        let classes = &self.split.classes;
        let labels = self.split.labels.as_ref();
        for (i, (&sample, (&predicted, &score))) in part
            .samples
            .iter()
            .zip(part.pred.iter().zip(&part.score))
            .enumerate()
        {
            let sample = sample as u64;
            let label = labels.and_then(|l| l.get(sample as usize).copied());
            if let (Some(c), Some(l)) = (out.correct.as_mut(), label) {
                *c += u32::from(l == predicted);
            }
            out.results.push(QueryResult {
                query_id: first + i as u64,
                sample,
                predicted,
                class_name: usize::try_from(predicted)
                    .ok()
                    .and_then(|p| classes.get(p).cloned())
                    .unwrap_or_else(|| predicted.to_string()),
                score,
                label,
            });
        }
    }

    /// The model's part of a piece of a batch, on an inference lane: the inputs, the forward
    /// pass (without a lock when the model is prepared), the best class and its probability.
    fn run_blocking(&self, first: u64, len: u64) -> Result<Classified, JobError> {
        let count = self.split.count.max(1);
        let samples: Vec<i64> = (0..len)
            .map(|i| (first.wrapping_add(i) % count) as i64)
            .collect();
        let stages = &self.metrics.stages;
        let started = Instant::now();
        let _guard = tch::no_grad_guard();
        let x = {
            let data = self.split.samples.lock().unwrap_or_else(|e| e.into_inner());
            data.images.index_select(0, &Tensor::from_slice(&samples))
        };
        // The prepared model runs without the lock (it may be swapped in meanwhile: the next
        // piece takes it).
        let runner = self.model.lock().runner();
        let x = match &runner {
            Some(runner) => runner.normalize(&x),
            None => x,
        };
        let forward = Instant::now();
        stages.add(Stage::Input, forward - started);
        let logits = match &runner {
            Some(runner) => runner.run(&x)?,
            None => self.model.lock().forward(&x, false)?,
        };
        let classify = Instant::now();
        stages.add(Stage::Forward, classify - forward);
        check_shape(&logits.size(), samples.len(), self.split.classes.len())?;
        let (score, pred) = logits.softmax(-1, Kind::Float).max_dim(-1, false);
        let bad = |e: tch::TchError| JobError::Internal(e.to_string());
        let pred = Vec::<i64>::try_from(&pred.to_device(Device::Cpu)).map_err(bad)?;
        let score = Vec::<f32>::try_from(&score.to_device(Device::Cpu)).map_err(bad)?;
        stages.add(Stage::Classify, classify.elapsed());
        let infer_ms = started.elapsed().as_secs_f64() * 1000.0;
        if pred.len() != samples.len() || score.len() != samples.len() {
            return Err(JobError::BadInput(format!(
                "the model returned {} rows for {} inputs",
                pred.len().min(score.len()),
                samples.len()
            )));
        }
        Ok(Classified {
            samples,
            pred,
            score,
            infer_ms,
        })
    }
}

/// What the model made of a piece of a batch.
struct Classified {
    samples: Vec<i64>,
    pred: Vec<i64>,
    score: Vec<f32>,
    /// Model time in milliseconds.
    infer_ms: f64,
}
