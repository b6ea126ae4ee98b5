//! The training loop of a built-in architecture: seeded shuffling per epoch, SGD with the
//! schedule of [`super::optim`], checkpoints that hold weights and optimiser state, and
//! evaluation. It is synchronous; the worker runs it on a blocking thread.

use super::history::{EpochMeter, StepRecord, StepReport};
use super::model::{read_tensors, write_tensors, Model, ModelError};
use super::modelfile::{self, Payload};
use super::optim::Sgd;
use std::collections::BTreeMap;
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

/// Training was stopped by the caller.
#[derive(Debug)]
pub struct Stopped;

/// Trains one model.
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    pub(super) opt: Sgd,
    pub(super) data: Samples,
    pub(super) schedule: Schedule,
    /// The sample order of one epoch, once drawn.
    pub(super) order: Option<(u32, Vec<i64>)>,
    /// Every step applied so far, from the job's first.
    pub history: Vec<StepRecord>,
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
            order: None,
            history: Vec::new(),
        })
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.data.len().div_ceil(self.schedule.batch) as u64
    }

    /// Steps in all.
    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * u64::from(self.schedule.epochs)
    }

    /// Runs epoch `epoch` on this worker alone, calling `report` after every step; `report`
    /// returns false to stop.
    pub fn run_epoch(
        &mut self,
        epoch: u32,
        report: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<StepReport, Stopped> {
        let steps = self.steps_per_epoch();
        let mut meter = EpochMeter::new(epoch, steps);
        let mut last = StepReport::default();
        for k in 0..steps {
            let step = u64::from(epoch) * steps + k;
            let sum = self.contribution(step, 0, 1).map_err(|_| Stopped)?;
            let record = self.apply(step, &sum, 1);
            last = meter.add(&record);
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
        let history: Vec<f32> = self.history.iter().flat_map(StepRecord::row).collect();
        let rows = self.history.len() as i64;
        named.insert(
            "hist.steps".into(),
            Tensor::from_slice(&history).view([rows, StepRecord::ROW as i64]),
        );
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
        // The steps before it (a checkpoint from before steps were kept has none: unknown).
        let done = self.steps_per_epoch() * u64::from(header.epochs);
        let kept: Vec<f32> = named
            .get("hist.steps")
            .and_then(|t| Vec::<f32>::try_from(t.to_device(Device::Cpu).view([-1])).ok())
            .unwrap_or_default();
        self.history = StepRecord::from_rows(&kept);
        self.history.resize(done as usize, StepRecord::UNKNOWN);
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
