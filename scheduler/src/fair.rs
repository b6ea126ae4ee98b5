//! The `qps local` policy's division of workers among inference jobs: each job gets a number
//! of workers in proportion to its weight times its measured cost per query, so that the
//! query rates come out in proportion to the weights while every worker keeps to one model.

use std::collections::{BTreeMap, BTreeSet};

/// One job's claim: its weight times its cost per query (`None` while not yet measured).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The job.
    pub job: String,
    /// Its weight.
    pub weight: f64,
    /// Milliseconds of worker time per query, once measured.
    pub cost: Option<f64>,
}

/// Divides `workers` (each with its host) among the jobs of `claims`. Every job gets at least
/// one worker; with fewer workers than jobs every job gets every worker (they are shared as
/// under `global`). Workers stay with the job they served in `previous` where the new counts
/// allow, so a worker's cached model keeps being used; new ones are taken on the hosts where
/// the job has the fewest, so that losing a machine takes a part of each job's workers.
pub fn partition(
    workers: &BTreeMap<String, String>,
    claims: &[Claim],
    previous: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    if claims.is_empty() {
        return BTreeMap::new();
    }
    let all: BTreeSet<String> = workers.keys().cloned().collect();
    if workers.len() < claims.len() {
        return claims
            .iter()
            .map(|c| (c.job.clone(), all.clone()))
            .collect();
    }
    let counts = counts(workers.len(), &demands(claims));
    let mut free: BTreeSet<String> = all;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (claim, &n) in claims.iter().zip(&counts) {
        let kept: BTreeSet<String> = previous
            .get(&claim.job)
            .into_iter()
            .flatten()
            .filter(|w| free.contains(*w))
            .take(n)
            .cloned()
            .collect();
        free.retain(|w| !kept.contains(w));
        out.insert(claim.job.clone(), kept);
    }
    for (claim, &n) in claims.iter().zip(&counts) {
        let set = out.get_mut(&claim.job).expect("inserted above");
        while set.len() < n {
            let on = |host: &str| set.iter().filter(|w| host_of(workers, w) == host).count();
            let w = (free.iter())
                .min_by_key(|w| on(host_of(workers, w)))
                .cloned()
                .expect("counts add up to the workers");
            free.remove(&w);
            set.insert(w);
        }
    }
    out
}

/// The host of worker `w` (itself if unknown).
fn host_of<'a>(workers: &'a BTreeMap<String, String>, w: &'a str) -> &'a str {
    workers.get(w).map_or(w, String::as_str)
}

/// Weight times cost; a job not yet measured is taken to cost the mean of the measured ones.
fn demands(claims: &[Claim]) -> Vec<f64> {
    let known: Vec<f64> = claims.iter().filter_map(|c| c.cost).collect();
    let typical = if known.is_empty() {
        1.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    claims
        .iter()
        .map(|c| c.weight.max(f64::MIN_POSITIVE) * c.cost.unwrap_or(typical).max(1e-9))
        .collect()
}

/// Splits `n >= demands.len()` workers in proportion to `demands` (largest remainder), each
/// at least one.
fn counts(n: usize, demands: &[f64]) -> Vec<usize> {
    let total: f64 = demands.iter().sum();
    let ideal: Vec<f64> = demands.iter().map(|d| n as f64 * d / total).collect();
    let mut counts: Vec<usize> = ideal.iter().map(|x| (x.floor() as usize).max(1)).collect();
    let gap = |c: &[usize], i: usize| ideal[i] - c[i] as f64;
    while counts.iter().sum::<usize>() < n {
        let i = (0..counts.len())
            .max_by(|&a, &b| gap(&counts, a).total_cmp(&gap(&counts, b)))
            .expect("at least one job");
        counts[i] += 1;
    }
    while counts.iter().sum::<usize>() > n {
        let i = (0..counts.len())
            .filter(|&i| counts[i] > 1)
            .min_by(|&a, &b| gap(&counts, a).total_cmp(&gap(&counts, b)))
            .expect("n >= jobs, so some job has two");
        counts[i] -= 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` workers, each on a host of its own.
    fn workers(n: usize) -> BTreeMap<String, String> {
        (1..=n)
            .map(|i| (format!("n{i}"), format!("n{i}")))
            .collect()
    }

    fn claim(job: &str, weight: f64, cost: Option<f64>) -> Claim {
        Claim {
            job: job.into(),
            weight,
            cost,
        }
    }

    fn sizes(p: &BTreeMap<String, BTreeSet<String>>) -> Vec<usize> {
        p.values().map(BTreeSet::len).collect()
    }

    #[test]
    fn workers_follow_cost_times_weight() {
        let none = BTreeMap::new();
        let claims = [claim("a", 1.0, Some(1.0)), claim("b", 1.0, Some(3.0))];
        assert_eq!(sizes(&partition(&workers(4), &claims, &none)), [1, 3]);
        let claims = [claim("a", 3.0, Some(1.0)), claim("b", 1.0, Some(1.0))];
        assert_eq!(sizes(&partition(&workers(8), &claims, &none)), [6, 2]);
        // Unmeasured jobs count as the typical cost: an even split.
        let claims = [claim("a", 1.0, None), claim("b", 1.0, None)];
        assert_eq!(sizes(&partition(&workers(4), &claims, &none)), [2, 2]);
    }

    #[test]
    fn every_job_gets_a_worker_and_every_worker_a_job() {
        let none = BTreeMap::new();
        let claims = [
            claim("a", 1.0, Some(100.0)),
            claim("b", 1.0, Some(1.0)),
            claim("c", 1.0, Some(1.0)),
        ];
        let p = partition(&workers(3), &claims, &none);
        assert_eq!(sizes(&p), [1, 1, 1]);
        let all: BTreeSet<String> = p.values().flatten().cloned().collect();
        assert_eq!(all, workers(3).into_keys().collect());
    }

    #[test]
    fn fewer_workers_than_jobs_share_every_worker() {
        let claims = [claim("a", 1.0, Some(1.0)), claim("b", 1.0, Some(2.0))];
        let p = partition(&workers(1), &claims, &BTreeMap::new());
        assert_eq!(p["a"], workers(1).into_keys().collect());
        assert_eq!(p["b"], workers(1).into_keys().collect());
    }

    #[test]
    fn workers_stay_with_their_job() {
        let claims = [claim("a", 1.0, Some(1.0)), claim("b", 1.0, Some(1.0))];
        let previous = BTreeMap::from([
            (
                "a".to_string(),
                BTreeSet::from(["n4".to_string(), "n3".to_string()]),
            ),
            ("b".to_string(), BTreeSet::from(["n1".to_string()])),
        ]);
        let p = partition(&workers(4), &claims, &previous);
        assert_eq!(p["a"], BTreeSet::from(["n3".to_string(), "n4".to_string()]));
        assert_eq!(p["b"], BTreeSet::from(["n1".to_string(), "n2".to_string()]));
    }

    #[test]
    fn each_job_gets_workers_on_every_host() {
        // Machines a, b, c with two workers each; two equal jobs get one of each.
        let w: BTreeMap<String, String> = ["a1", "a2", "b1", "b2", "c1", "c2"]
            .iter()
            .map(|w| (w.to_string(), w[..1].to_string()))
            .collect();
        let claims = [claim("x", 1.0, Some(1.0)), claim("y", 1.0, Some(1.0))];
        let p = partition(&w, &claims, &BTreeMap::new());
        for (job, set) in &p {
            let mut hosts: Vec<&str> = set.iter().map(|w| &w[..1]).collect();
            hosts.dedup();
            assert_eq!(hosts, ["a", "b", "c"], "{job}: {set:?}");
        }
    }
}
