//! Histograms with fixed buckets, lock-free to observe, read whole at a scrape (rendered as
//! Prometheus histograms by the dashboard), and families of them by label.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Upper bounds in seconds for request and batch durations: 1 ms to 10 s.
pub const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds for counts of images in a batch: 1 to 1024.
pub const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// One histogram: a count per bucket (not cumulative), the sum and the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then one for values above the last.
    counts: Vec<AtomicU64>,
    /// The sum of observed values, as `f64` bits.
    sum: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Each bucket's upper bound and the observations at or below it (cumulative), the last
    /// bucket being `+Inf` (all observations).
    pub buckets: Vec<(f64, u64)>,
    /// The sum of observed values.
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one value (a NaN is not recorded).
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// The histogram now.
    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Relaxed);
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        Snapshot {
            buckets,
            sum: f64::from_bits(self.sum.load(Relaxed)),
            count: total,
        }
    }
}

/// Histograms by a label value (a model's name), at most `max` of them: observations for
/// further values are kept under [`Family::OTHER`], so that no input makes the series grow
/// without bound.
#[derive(Debug)]
pub struct Family {
    bounds: &'static [f64],
    max: usize,
    by: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
}

impl Family {
    /// The label value observations beyond the limit are kept under.
    pub const OTHER: &'static str = "_other";

    /// An empty family of histograms with `bounds`, at most `max` label values.
    pub fn new(bounds: &'static [f64], max: usize) -> Family {
        Family {
            bounds,
            max,
            by: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records `value` for label value `label`.
    pub fn observe(&self, label: &str, value: f64) {
        let h = {
            let mut by = self.by.lock().unwrap_or_else(|e| e.into_inner());
            let key = if by.contains_key(label) || by.len() < self.max {
                label
            } else {
                Self::OTHER
            };
            by.entry(key.to_string())
                .or_insert_with(|| std::sync::Arc::new(Histogram::new(self.bounds)))
                .clone()
        };
        h.observe(value);
    }

    /// Every label value's histogram now.
    pub fn snapshot(&self) -> Vec<(String, Snapshot)> {
        let by = self.by.lock().unwrap_or_else(|e| e.into_inner());
        by.iter().map(|(k, h)| (k.clone(), h.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_cumulative_buckets() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (2.0, 3), (f64::INFINITY, 4)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 6.0).abs() < 1e-9);
    }

    #[test]
    fn a_family_keeps_at_most_its_limit_of_label_values() {
        let f = Family::new(SIZES, 2);
        for m in ["a", "b", "c", "d", "a"] {
            f.observe(m, 1.0);
        }
        let labels: Vec<(String, u64)> = f
            .snapshot()
            .into_iter()
            .map(|(k, s)| (k, s.count))
            .collect();
        assert_eq!(
            labels,
            vec![("_other".into(), 2), ("a".into(), 2), ("b".into(), 1)]
        );
    }
}
