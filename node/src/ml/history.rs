//! What training steps leave behind: each applied step's record (the history every worker of
//! a job keeps alike) and an epoch's running figures made from them.

use std::time::Instant;

/// What one applied step did, as every worker computed it from the step's sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRecord {
    /// Mean loss over the step's batch.
    pub loss: f32,
    /// Training accuracy over the step's batch.
    pub accuracy: f32,
    /// Samples in the batch.
    pub samples: u32,
    /// Workers that took the step.
    pub workers: u32,
}

impl StepRecord {
    /// Values of one record as floats ([`StepRecord::row`]).
    pub const ROW: usize = 4;

    /// A step of which nothing is known (kept by a checkpoint from before steps were kept).
    pub const UNKNOWN: StepRecord = StepRecord {
        loss: f32::NAN,
        accuracy: f32::NAN,
        samples: 0,
        workers: 0,
    };

    /// The record as floats: loss, accuracy, samples, workers.
    pub fn row(&self) -> [f32; StepRecord::ROW] {
        [
            self.loss,
            self.accuracy,
            self.samples as f32,
            self.workers as f32,
        ]
    }

    /// Records from rows of [`StepRecord::row`] (a trailing partial row is ignored).
    pub fn from_rows(values: &[f32]) -> Vec<StepRecord> {
        values
            .chunks_exact(StepRecord::ROW)
            .map(|c| StepRecord {
                loss: c[0],
                accuracy: c[1],
                samples: c[2] as u32,
                workers: c[3] as u32,
            })
            .collect()
    }
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

/// An epoch's running figures, from its steps' records.
pub struct EpochMeter {
    epoch: u32,
    steps: u64,
    done: u64,
    loss_sum: f64,
    correct: f64,
    seen: u64,
    /// Samples of the steps counted since `started` (for the rate).
    timed: u64,
    started: Instant,
}

impl EpochMeter {
    /// A meter of epoch `epoch` of `steps` steps, starting now.
    pub fn new(epoch: u32, steps: u64) -> EpochMeter {
        EpochMeter::replaying(epoch, steps, &[])
    }

    /// A meter of epoch `epoch` whose steps `before` were taken already (they count in the
    /// means, not in the rate).
    pub fn replaying(epoch: u32, steps: u64, before: &[StepRecord]) -> EpochMeter {
        let mut m = EpochMeter {
            epoch,
            steps,
            done: 0,
            loss_sum: 0.0,
            correct: 0.0,
            seen: 0,
            timed: 0,
            started: Instant::now(),
        };
        for r in before.iter().filter(|r| !r.loss.is_nan()) {
            m.count(r);
        }
        m.done = before.len() as u64;
        m
    }

    /// The epoch, from 0.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn count(&mut self, r: &StepRecord) {
        let n = u64::from(r.samples);
        self.done += 1;
        self.loss_sum += f64::from(r.loss) * n as f64;
        self.correct += f64::from(r.accuracy) * n as f64;
        self.seen += n;
    }

    /// Counts a step of the epoch; the epoch's report so far.
    pub fn add(&mut self, r: &StepRecord) -> StepReport {
        self.count(r);
        self.timed += u64::from(r.samples);
        let seen = self.seen.max(1) as f64;
        StepReport {
            epoch: self.epoch,
            step: self.done,
            steps: self.steps,
            loss: self.loss_sum / seen,
            accuracy: self.correct / seen,
            images_per_s: self.timed as f64 / self.started.elapsed().as_secs_f64().max(1e-9),
        }
    }
}
