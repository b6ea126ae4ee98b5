//! Where a served batch's time goes: each stage's total time on this node, counted for
//! `/metrics` (`idunno_serve_stage_seconds_total{stage}`, `idunno_serve_batches_total`), so that
//! an operator (and the `pytorch` bench) can divide by the batches and see the cost per batch.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A stage of one batch's way through a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for an inference lane after the worker took the batch.
    Queued,
    /// Copying the batch's slice of the split and normalising it.
    Input,
    /// The model's forward pass.
    Forward,
    /// Softmax, best class and its score, copied out of libtorch.
    Classify,
    /// Building the results (one per query, with class names and labels).
    Results,
    /// Encoding the results message.
    Encode,
    /// Publishing the results to the stream until its acknowledgement.
    Publish,
    /// Sending the answer to the coordinator.
    Reply,
    /// The coordinator's handling of the answer (counting, recording; on the coordinator).
    Coordinate,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 9] = [
        Stage::Queued,
        Stage::Input,
        Stage::Forward,
        Stage::Classify,
        Stage::Results,
        Stage::Encode,
        Stage::Publish,
        Stage::Reply,
        Stage::Coordinate,
    ];

    /// Its label in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Input => "input",
            Stage::Forward => "forward",
            Stage::Classify => "classify",
            Stage::Results => "results",
            Stage::Encode => "encode",
            Stage::Publish => "publish",
            Stage::Reply => "reply",
            Stage::Coordinate => "coordinate",
        }
    }
}

/// Total nanoseconds per stage and the batches served, lock-free.
#[derive(Debug, Default)]
pub struct Stages {
    nanos: [AtomicU64; 9],
    batches: AtomicU64,
}

impl Stages {
    /// Adds `took` to `stage`.
    pub fn add(&self, stage: Stage, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[stage as usize].fetch_add(ns, Relaxed);
    }

    /// Counts a batch served (results stored) on this node.
    pub fn batch(&self) {
        self.batches.fetch_add(1, Relaxed);
    }

    /// Each stage's total seconds, in [`Stage::ALL`]'s order, and the batches served.
    pub fn totals(&self) -> (Vec<(Stage, f64)>, u64) {
        let secs = Stage::ALL
            .iter()
            .map(|&s| (s, self.nanos[s as usize].load(Relaxed) as f64 / 1e9))
            .collect();
        (secs, self.batches.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_separately() {
        let s = Stages::default();
        s.add(Stage::Forward, Duration::from_millis(3));
        s.add(Stage::Forward, Duration::from_millis(2));
        s.add(Stage::Coordinate, Duration::from_micros(500));
        s.batch();
        let (secs, batches) = s.totals();
        assert_eq!(batches, 1);
        assert_eq!(secs.len(), Stage::ALL.len());
        let get = |st: Stage| secs.iter().find(|(s, _)| *s == st).unwrap().1;
        assert!((get(Stage::Forward) - 0.005).abs() < 1e-9);
        assert!((get(Stage::Coordinate) - 0.0005).abs() < 1e-9);
        assert_eq!(get(Stage::Input), 0.0);
    }
}
