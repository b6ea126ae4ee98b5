//! What the dispatcher does to one inference job: cut a batch into the job's record, count an
//! answered one (each batch once), tell workers to leave, and the statistics it keeps.

use super::Ctx;
use bus_schemas::jobs::JobState;
use bus_schemas::serve::{AssignReply, AssignRequest};
use bus_schemas::subjects;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

/// One batch: `(batch_id, first_query, len)`.
pub type Batch = (u64, u64, u32);

/// Tells `workers` to leave job `job` (in the background; a worker that is gone is ignored).
pub fn leave(ctx: &Ctx, job: &str, workers: &BTreeSet<String>) {
    for worker in workers {
        let (client, worker, job) = (ctx.client.clone(), worker.clone(), job.to_string());
        tokio::spawn(async move {
            let req = AssignRequest::Leave { job_id: job };
            let _: Result<AssignReply, _> = bus_client::request(
                &client,
                subjects::node_assign(&worker),
                &req,
                Duration::from_secs(5),
            )
            .await;
        });
    }
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

/// Cuts up to `n` of the job's next batches and records them as pending, in one write; empty
/// when every query is cut (or the job is no longer running).
pub async fn cut(ctx: &Ctx, id: &str, n: usize) -> anyhow::Result<Vec<Batch>> {
    let mut batches = Vec::new();
    let changed = ctx
        .store
        .modify(id, |j| {
            batches.clear();
            let Some(s) = j.serve.as_mut().filter(|_| j.state == JobState::Running) else {
                return false;
            };
            for _ in 0..n {
                let left = s.total.map_or(u64::MAX, |t| t.saturating_sub(s.next_query));
                if left == 0 {
                    break;
                }
                let len = u64::from(s.batch).min(left) as u32;
                let b = (s.next_batch, s.next_query, len);
                s.pending.push(b);
                s.next_batch += 1;
                s.next_query += u64::from(len);
                batches.push(b);
            }
            !batches.is_empty()
        })
        .await?;
    if changed.is_none() {
        batches.clear();
    }
    Ok(batches)
}

/// An answered batch waiting to be counted.
#[derive(Debug, Clone)]
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

/// Counts answered batches, each once (only while it is pending), in one write; returns
/// whether the job has answered every query.
pub async fn count(ctx: &Ctx, id: &str, answered: &[Answered]) -> anyhow::Result<bool> {
    let mut complete = false;
    ctx.store
        .modify(id, |j| {
            complete = false;
            let Some(s) = j.serve.as_mut().filter(|_| j.state == JobState::Running) else {
                return false;
            };
            let mut changed = false;
            for a in answered {
                let Some(pos) = s.pending.iter().position(|b| b.0 == a.batch.0) else {
                    continue; // already counted
                };
                s.pending.remove(pos);
                s.deaths.retain(|d| d.batch_id != a.batch.0);
                s.done += u64::from(a.queries);
                *s.by_worker.entry(a.worker.clone()).or_default() += u64::from(a.queries);
                if let (Some(c), Some(k)) = (s.correct.as_mut(), a.correct) {
                    *c += u64::from(k);
                }
                changed = true;
            }
            complete = changed && s.total.is_some_and(|t| s.done >= t) && s.pending.is_empty();
            changed
        })
        .await?;
    Ok(complete)
}

/// Mean, std, median, p90, p95, p99 of `v` (empty if `v` is).
pub fn percentiles(v: &VecDeque<f64>) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mean = s.iter().sum::<f64>() / n;
    let std = (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let at = |p: f64| s[((p * (n - 1.0)).round() as usize).min(s.len() - 1)];
    vec![mean, std, at(0.5), at(0.9), at(0.95), at(0.99)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_series() {
        let v: VecDeque<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!(p[0], 50.5);
        assert_eq!((p[2], p[3], p[5]), (51.0, 90.0, 99.0));
        assert!(percentiles(&VecDeque::new()).is_empty());
    }

    #[test]
    fn deadlines_follow_the_median_within_bounds() {
        assert_eq!(deadline(median(&VecDeque::new())), Duration::from_secs(3));
        let slow: VecDeque<f64> = vec![20_000.0; 5].into();
        assert_eq!(deadline(median(&slow)), Duration::from_secs(60));
        let mid: VecDeque<f64> = vec![1_000.0, 1_000.0, 9.0].into();
        assert_eq!(deadline(median(&mid)), Duration::from_secs(5));
    }
}
