//! What the dispatcher does to an inference job's record: cut batches into it and count answered
//! ones (each once), and the statistics of batches' processing times. The shell applies these
//! inside its compare-and-swap writes of the record.

use bus_schemas::serve::{PendingBatch, ProcStats, ServeState};
use std::collections::VecDeque;
use std::time::Duration;

/// One batch: its id, first query and length.
pub type Batch = PendingBatch;

/// An answered batch waiting to be counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The batch.
    pub batch: Batch,
    /// Who answered it: the worker it was sent to.
    pub worker: String,
    /// The results stream's sequence number of that worker's results of the batch.
    pub stream_seq: u64,
    /// Queries it held.
    pub queries: u32,
    /// Correct predictions, when labelled.
    pub correct: Option<u32>,
}

/// Cuts up to `n` of the job's next batches (of its current batch size) into `s.pending`;
/// empty when every query is cut.
pub fn cut(s: &mut ServeState, n: usize) -> Vec<Batch> {
    let mut batches = Vec::new();
    for _ in 0..n {
        let left = s.total.map_or(u64::MAX, |t| t.saturating_sub(s.next_query));
        if left == 0 {
            break;
        }
        let len = u64::from(s.batch.max(1)).min(left) as u32;
        let b = Batch::new(s.next_batch, s.next_query, len);
        s.pending.push(b);
        s.next_batch += 1;
        s.next_query += u64::from(len);
        batches.push(b);
    }
    batches
}

/// What counting did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Some batch was pending and is now counted.
    pub changed: bool,
    /// Every query of the job is answered.
    pub complete: bool,
}

/// Counts answered batches, each once (only while it is pending).
pub fn count(s: &mut ServeState, answered: &[Answered]) -> Counted {
    let mut changed = false;
    for a in answered {
        let Some(pos) = (s.pending.iter()).position(|b| b.batch_id == a.batch.batch_id) else {
            continue; // already counted
        };
        s.pending.remove(pos);
        s.deaths.retain(|d| d.batch_id != a.batch.batch_id);
        s.done += u64::from(a.queries);
        *s.by_worker.entry(a.worker.clone()).or_default() += u64::from(a.queries);
        if let (Some(c), Some(k)) = (s.correct.as_mut(), a.correct) {
            *c += u64::from(k);
        }
        changed = true;
    }
    Counted {
        changed,
        complete: changed && complete(s),
    }
}

/// Whether every query of the job is answered and counted.
pub fn complete(s: &ServeState) -> bool {
    s.total.is_some_and(|t| s.done >= t) && s.pending.is_empty()
}

/// A batch's deadline: 5× the median processing time, at least 3 s, at most 60 s.
pub fn deadline(median_ms: f64) -> Duration {
    Duration::from_millis((median_ms * 5.0) as u64)
        .clamp(Duration::from_secs(3), Duration::from_secs(60))
}

/// The median of `v` (0 when empty).
pub fn median(v: &VecDeque<f64>) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Mean, std, median, p90, p95, p99 of `v` (none if `v` is empty).
pub fn percentiles(v: &VecDeque<f64>) -> Option<ProcStats> {
    if v.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mean = s.iter().sum::<f64>() / n;
    let std = (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let at = |p: f64| s[((p * (n - 1.0)).round() as usize).min(s.len() - 1)];
    Some(ProcStats {
        mean,
        std,
        median: at(0.5),
        p90: at(0.9),
        p95: at(0.95),
        p99: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let v: VecDeque<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v).expect("some");
        assert_eq!(p.mean, 50.5);
        assert_eq!((p.median, p.p90, p.p99), (51.0, 90.0, 99.0));
        assert!(percentiles(&VecDeque::new()).is_none());
    }

    #[test]
    fn deadlines_follow_the_median_within_bounds() {
        assert_eq!(deadline(median(&VecDeque::new())), Duration::from_secs(3));
        let slow: VecDeque<f64> = vec![20_000.0; 5].into();
        assert_eq!(deadline(median(&slow)), Duration::from_secs(60));
        let mid: VecDeque<f64> = vec![1_000.0, 1_000.0, 9.0].into();
        assert_eq!(deadline(median(&mid)), Duration::from_secs(5));
    }

    fn answered(batch: Batch, worker: &str) -> Answered {
        Answered {
            batch,
            worker: worker.into(),
            stream_seq: 1,
            queries: batch.len,
            correct: Some(batch.len),
        }
    }

    #[test]
    fn batches_are_cut_at_the_current_size_and_counted_once() {
        let mut s = ServeState {
            total: Some(50),
            batch: 20,
            correct: Some(0),
            ..Default::default()
        };
        let first = cut(&mut s, 1);
        assert_eq!(first, [Batch::new(0, 0, 20)]);
        s.batch = 8; // the batch size changed
        let rest = cut(&mut s, 8);
        let b = Batch::new;
        assert_eq!(rest, [b(1, 20, 8), b(2, 28, 8), b(3, 36, 8), b(4, 44, 6)]);
        assert!(cut(&mut s, 1).is_empty(), "every query is cut");
        let all: Vec<Answered> = first
            .iter()
            .chain(&rest)
            .map(|b| answered(*b, "w"))
            .collect();
        let c = count(&mut s, &all[..2]);
        assert_eq!((c.changed, c.complete, s.done), (true, false, 28));
        assert!(!count(&mut s, &all[..2]).changed, "counted once");
        let c = count(&mut s, &all);
        assert_eq!((c.changed, c.complete, s.done), (true, true, 50));
        assert_eq!((s.correct, s.by_worker["w"]), (Some(50), 50));
    }
}
