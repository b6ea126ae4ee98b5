//! Online inference's figures on one node, per model and outcome: requests answered, how long
//! each took from arrival to answer and waited to be batched, and the images per batch run.

use crate::histogram::{Family, Snapshot, SECONDS, SIZES};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Models counted apart; requests for further models are counted under [`Family::OTHER`].
pub const MAX_MODELS: usize = 64;

/// How an online request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered with predictions.
    Ok,
    /// Refused as malformed.
    BadInput,
    /// No such model or version.
    UnknownModel,
    /// Its deadline passed first.
    Timeout,
    /// Shed: the node was at a limit.
    Overloaded,
    /// The node failed.
    Internal,
}

impl Outcome {
    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadInput => "bad_input",
            Outcome::UnknownModel => "unknown_model",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::Internal => "internal",
        }
    }
}

/// One node's online-inference figures.
#[derive(Debug)]
pub struct Online {
    requests: Mutex<BTreeMap<(String, Outcome), u64>>,
    /// Seconds from a request's arrival to its answer, by model.
    pub duration: Family,
    /// Seconds a request waited before its batch started, by model.
    pub queued: Family,
    /// Images in each batch run, by model.
    pub batch: Family,
    /// The node's online-inference subscription has been set up (readiness).
    subscribed: std::sync::atomic::AtomicBool,
}

impl Default for Online {
    fn default() -> Self {
        Online {
            subscribed: std::sync::atomic::AtomicBool::new(false),
            requests: Mutex::new(BTreeMap::new()),
            duration: Family::new(SECONDS, MAX_MODELS),
            queued: Family::new(SECONDS, MAX_MODELS),
            batch: Family::new(SIZES, MAX_MODELS),
        }
    }
}

impl Online {
    /// Records that the node takes online requests (its queue subscription is up).
    pub fn set_subscribed(&self) {
        self.subscribed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the node's online-inference subscription has been set up since it started
    /// (it stays so while the node pauses to shed load: it comes back by itself).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a request for `model` that ended with `outcome` after `seconds`.
    pub fn request(&self, model: &str, outcome: Outcome, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let models = requests.keys().filter(|(_, o)| *o == Outcome::Ok).count();
        let known = requests.contains_key(&(model.to_string(), Outcome::Ok));
        // A model is counted apart once a request for it was answered (so it exists), at
        // most MAX_MODELS of them; a failure for a model never answered counts under "".
        let label = match outcome {
            _ if known => model,
            Outcome::Ok if models < MAX_MODELS => model,
            Outcome::Ok => Family::OTHER,
            _ => "",
        };
        *requests.entry((label.to_string(), outcome)).or_insert(0) += 1;
        if outcome == Outcome::Ok {
            // The Ok entry exists for every model counted apart: the limit counts those.
            drop(requests);
            self.duration.observe(label, seconds);
        }
    }

    /// Every (model, outcome)'s count of requests.
    pub fn requests(&self) -> Vec<(String, &'static str, u64)> {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests
            .iter()
            .map(|((m, o), n)| (m.clone(), o.name(), *n))
            .collect()
    }

    /// The three histograms now: duration, queued, batch size.
    pub fn histograms(&self) -> [Vec<(String, Snapshot)>; 3] {
        [
            self.duration.snapshot(),
            self.queued.snapshot(),
            self.batch.snapshot(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_model_and_outcome_and_time_the_answered() {
        let o = Online::default();
        o.request("cnn", Outcome::Ok, 0.002);
        o.request("cnn", Outcome::Ok, 0.004);
        o.request("cnn", Outcome::Timeout, 10.0);
        o.request("nope", Outcome::UnknownModel, 0.001);
        assert_eq!(
            o.requests(),
            vec![
                ("".into(), "unknown_model", 1),
                ("cnn".into(), "ok", 2),
                ("cnn".into(), "timeout", 1),
            ]
        );
        let [duration, _, _] = o.histograms();
        assert_eq!(duration.len(), 1);
        assert_eq!(duration[0].1.count, 2);
    }
}
