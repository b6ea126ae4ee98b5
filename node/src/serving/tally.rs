//! What each arm of a rollout answered on this node: requests answered and failed, latency
//! buckets, and the accuracy of the queries whose labels the requests gave. The jobs API sums
//! every node's tallies (`routes`) to show the two versions side by side.

use bus_schemas::infer::Prediction;
use bus_schemas::models::{Arm, ArmFigures, LATENCY_BOUNDS_MS};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Arms a node keeps figures of; beyond, the oldest rollouts' go.
pub const MAX_ARMS: usize = 128;

/// Key: model, rollout id, arm.
type Key = (String, u64, Arm);

/// One node's rollout figures.
#[derive(Debug, Default)]
pub struct Tally {
    arms: Mutex<BTreeMap<Key, ArmFigures>>,
}

/// One answered request of a rollout.
pub struct Answered<'a> {
    /// The model.
    pub model: &'a str,
    /// The rollout and arm it went to.
    pub arm: (u64, Arm),
    /// The version that arm names.
    pub version: u64,
    /// The predictions, or `None` for an error.
    pub predictions: Option<&'a [Prediction]>,
    /// The labels the request gave (empty, or one per query).
    pub labels: &'a [i64],
    /// From arrival to answer.
    pub seconds: f64,
}

impl Tally {
    /// Counts one request.
    pub fn record(&self, a: Answered<'_>) {
        let Ok(mut arms) = self.arms.lock() else {
            return;
        };
        let key = (a.model.to_string(), a.arm.0, a.arm.1);
        if arms.len() >= MAX_ARMS && !arms.contains_key(&key) {
            let oldest = arms.keys().min_by_key(|k| k.1).cloned();
            oldest.and_then(|k| arms.remove(&k));
        }
        let f = arms.entry(key).or_insert_with(|| ArmFigures {
            rollout: a.arm.0,
            arm: Some(a.arm.1),
            version: a.version,
            latency: vec![0; LATENCY_BOUNDS_MS.len()],
            ..Default::default()
        });
        let ms = a.seconds * 1000.0;
        let bucket = LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b);
        if let Some(n) = bucket.and_then(|i| f.latency.get_mut(i)) {
            *n += 1;
        }
        let Some(predictions) = a.predictions else {
            f.errors += 1;
            return;
        };
        f.ok += 1;
        if a.labels.len() == predictions.len() {
            f.labelled += a.labels.len() as u64;
            let right = predictions
                .iter()
                .zip(a.labels)
                .filter(|(p, l)| p.class == **l);
            f.correct += right.count() as u64;
        }
    }

    /// The figures of every arm of `model`'s rollouts this node answered.
    pub fn figures(&self, model: &str) -> Vec<ArmFigures> {
        let Ok(arms) = self.arms.lock() else {
            return Vec::new();
        };
        (arms.iter())
            .filter(|(k, _)| k.0 == model)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(class: i64) -> Prediction {
        Prediction {
            class,
            class_name: class.to_string(),
            score: 1.0,
            scores: vec![],
        }
    }

    #[test]
    fn arms_count_answers_errors_latency_and_accuracy() {
        let t = Tally::default();
        let p = [prediction(1), prediction(2)];
        let answered = |arm, predictions, labels, seconds| Answered {
            model: "m",
            arm: (5, arm),
            version: if arm == Arm::Canary { 2 } else { 1 },
            predictions,
            labels,
            seconds,
        };
        t.record(answered(Arm::Canary, Some(&p), &[1, 3], 0.004));
        t.record(answered(Arm::Canary, None, &[], 0.0009));
        t.record(answered(Arm::Baseline, Some(&p), &[], 0.02));
        t.record(answered(Arm::Baseline, Some(&p), &[1], 0.02)); // labels that do not fit
        let f = t.figures("m");
        assert_eq!(f.len(), 2);
        let (base, canary) = (&f[0], &f[1]);
        assert_eq!(
            (base.arm, base.version, base.ok, base.errors),
            (Some(Arm::Baseline), 1, 2, 0)
        );
        assert_eq!(base.accuracy(), None);
        assert_eq!(
            (canary.ok, canary.errors, canary.labelled, canary.correct),
            (1, 1, 2, 1)
        );
        assert_eq!(canary.latency_ms(0.5), Some(1.0));
        assert_eq!(canary.latency_ms(1.0), Some(5.0));
        assert!(t.figures("other").is_empty());
    }

    #[test]
    fn old_rollouts_make_room() {
        let t = Tally::default();
        for id in 0..(MAX_ARMS as u64 + 10) {
            t.record(Answered {
                model: "m",
                arm: (id, Arm::Canary),
                version: 1,
                predictions: None,
                labels: &[],
                seconds: 0.0,
            });
        }
        let f = t.figures("m");
        assert_eq!(f.len(), MAX_ARMS);
        assert_eq!(f.iter().map(|a| a.rollout).min(), Some(10));
    }
}
