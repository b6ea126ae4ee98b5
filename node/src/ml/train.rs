//! The training loop of a built-in architecture: seeded shuffling per epoch, SGD with the
//! schedule of [`super::optim`], checkpoints that hold weights and optimiser state, and
//! evaluation. It is synchronous; the worker runs it on a blocking thread.

use super::model::{read_tensors, write_tensors, Model, ModelError};
use super::modelfile::{self, Payload};
use super::optim::{lr_at, Sgd};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// A split in memory: u8 pixels N×C×H×W on the CPU and labels.
pub struct Samples {
    /// Pixels.
    pub images: Tensor,
    /// Class indices, when labelled.
    pub labels: Option<Tensor>,
}

impl Samples {
    /// From a split read by `idunno_datasets::load_split`, keeping at most `limit` samples.
    pub fn from_split(split: &idunno_datasets::Split, limit: Option<u64>) -> Samples {
        let n = limit.map_or(split.count, |l| split.count.min(l as usize));
        let [c, h, w] = split.shape.map(|d| d as i64);
        let per = (c * h * w) as usize;
        let images = Tensor::from_slice(&split.pixels[..n * per]).view([n as i64, c, h, w]);
        let labels = split.labels.as_ref().map(|l| Tensor::from_slice(&l[..n]));
        Samples { images, labels }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.images.size()[0] as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hyper-parameters.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Epochs in all.
    pub epochs: u32,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed of the sample order.
    pub seed: u64,
}

/// What a step reports.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    /// The epoch, from 0.
    pub epoch: u32,
    /// Steps done in this epoch.
    pub step: u64,
    /// Steps per epoch.
    pub steps: u64,
    /// Mean loss of the epoch so far.
    pub loss: f64,
    /// Training accuracy of the epoch so far.
    pub accuracy: f64,
    /// Images per second since the epoch began.
    pub images_per_s: f64,
}

/// Training was stopped by the caller.
#[derive(Debug)]
pub struct Stopped;

/// Trains one model.
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    opt: Sgd,
    data: Samples,
    schedule: Schedule,
}

impl Trainer {
    /// A trainer of `model` (a built-in architecture) on `data`, which must be labelled.
    pub fn new(model: Model, data: Samples, schedule: Schedule) -> Result<Trainer, ModelError> {
        let vs = model
            .var_store()
            .ok_or_else(|| ModelError::Mismatch("only built-in architectures train".into()))?;
        if data.labels.is_none() || data.is_empty() {
            return Err(ModelError::Mismatch(
                "the training split has no labelled samples".into(),
            ));
        }
        let opt = Sgd::new(vs);
        Ok(Trainer {
            model,
            opt,
            data,
            schedule,
        })
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.data.len().div_ceil(self.schedule.batch) as u64
    }

    /// Runs epoch `epoch`, calling `report` after every step; `report` returns false to stop.
    pub fn run_epoch(
        &mut self,
        epoch: u32,
        report: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<StepReport, Stopped> {
        let n = self.data.len();
        let mut order: Vec<i64> = (0..n as i64).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            self.schedule.seed ^ (u64::from(epoch) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        order.shuffle(&mut rng);
        let steps = self.steps_per_epoch();
        let total = steps * u64::from(self.schedule.epochs);
        let labels = self.data.labels.as_ref().expect("checked at new");
        let device = self.model.device();
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        let mut last = StepReport::default();
        for (step, chunk) in order.chunks(self.schedule.batch).enumerate() {
            let idx = Tensor::from_slice(chunk);
            let x = self.data.images.index_select(0, &idx);
            let y = labels.index_select(0, &idx).to_device(device);
            self.opt.zero_grad();
            let logits = self.model.forward(&x, true).expect("a built-in model runs");
            let loss = logits.cross_entropy_for_logits(&y);
            loss.backward();
            let global = u64::from(epoch) * steps + step as u64;
            self.opt.step(lr_at(self.schedule.lr, global, total));
            let b = chunk.len();
            loss_sum += loss.double_value(&[]) * b as f64;
            correct += logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
            seen += b;
            last = StepReport {
                epoch,
                step: step as u64 + 1,
                steps,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_s: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
            };
            if !report(&last) {
                return Err(Stopped);
            }
        }
        Ok(last)
    }

    /// A checkpoint after `epochs_done` epochs: weights and optimiser state.
    pub fn checkpoint(&self, epochs_done: u32) -> Vec<u8> {
        let mut named: BTreeMap<String, Tensor> = self
            .model
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("m.{n}"), t))
            .collect();
        for (n, t) in self.opt.state() {
            named.insert(format!("opt.{n}"), t.shallow_clone());
        }
        let mut header = self.model.header.clone();
        header.payload = Payload::Checkpoint;
        header.epochs = epochs_done;
        modelfile::encode(header, &write_tensors(&named))
    }

    /// Restores a checkpoint; returns the epochs it had completed.
    pub fn restore(&mut self, what: &str, bytes: &[u8]) -> Result<u32, ModelError> {
        let (header, payload) = modelfile::decode_kind(what, bytes, &[Payload::Checkpoint])?;
        if header.arch != self.model.header.arch || header.classes != self.model.header.classes {
            return Err(ModelError::Mismatch(format!(
                "{what} is a checkpoint of {} on {} classes, not of this job's {}",
                header.arch,
                header.classes.len(),
                self.model.header.arch
            )));
        }
        let named = read_tensors(what, payload, self.model.device())?;
        self.model.set_weights(what, &named, "m.")?;
        let opt: BTreeMap<String, Tensor> = named
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix("opt.")
                    .map(|k| (k.to_string(), t.shallow_clone()))
            })
            .collect();
        self.opt
            .restore(&opt)
            .map_err(|e| ModelError::Mismatch(format!("{what}: {e}")))?;
        Ok(header.epochs)
    }
}

/// Predictions over a split.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// The predicted class of each sample.
    pub predicted: Vec<i64>,
    /// The softmax score of the predicted class.
    pub score: Vec<f32>,
    /// Correct predictions, when labelled.
    pub correct: Option<u64>,
}

impl Evaluation {
    /// Accuracy (0 to 1), when labelled.
    pub fn accuracy(&self) -> Option<f64> {
        self.correct
            .map(|c| c as f64 / self.predicted.len().max(1) as f64)
    }
}

/// Runs `model` over every sample of `data` in batches of `batch`.
pub fn evaluate(model: &Model, data: &Samples, batch: usize) -> Result<Evaluation, ModelError> {
    let _guard = tch::no_grad_guard();
    let n = data.len() as i64;
    let mut eval = Evaluation::default();
    let mut start = 0;
    while start < n {
        let len = (batch as i64).min(n - start);
        let x = data.images.narrow(0, start, len);
        let probs = model.forward(&x, false)?.softmax(-1, Kind::Float);
        let (score, pred) = probs.max_dim(-1, false);
        let pred = pred.to_device(Device::Cpu);
        let score = score.to_device(Device::Cpu);
        eval.predicted
            .extend(Vec::<i64>::try_from(&pred).map_err(|e| ModelError::Mismatch(e.to_string()))?);
        eval.score
            .extend(Vec::<f32>::try_from(&score).map_err(|e| ModelError::Mismatch(e.to_string()))?);
        start += len;
    }
    if let Some(labels) = &data.labels {
        let labels =
            Vec::<i64>::try_from(labels).map_err(|e| ModelError::Mismatch(e.to_string()))?;
        let correct = labels
            .iter()
            .zip(&eval.predicted)
            .filter(|(a, b)| a == b)
            .count();
        eval.correct = Some(correct as u64);
    }
    Ok(eval)
}
