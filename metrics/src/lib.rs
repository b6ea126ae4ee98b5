//! The node's traffic counters, shared by the subsystems that count and the one that reports.

#![warn(missing_docs)]

pub mod histogram;
pub mod host;
pub mod online;
pub mod process;
pub mod stages;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Monotonic counters of one node's bus traffic. Lock-free: each field is its own atomic.
#[derive(Debug, Default)]
pub struct Metrics {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    member_msgs_in: AtomicU64,
    member_msgs_out: AtomicU64,
    garbage: AtomicU64,
    fd_dropped: AtomicU64,
    membership_refused: AtomicU64,
    shed: AtomicU64,
    infer_pauses: AtomicU64,
    /// Models the inference engine holds in memory (`name vN`).
    models: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Where served batches' time goes.
    pub stages: crate::stages::Stages,
    /// Online inference's requests, latency and batches.
    pub online: crate::online::Online,
    /// Seconds each served batch of an inference job took in the model, by model.
    pub serve_batches: ServeBatches,
    /// What the node runs on, set once at start.
    pub host: std::sync::OnceLock<crate::host::Host>,
}

/// Seconds each served batch took in the model, by model (see [`Metrics::serve_batches`]).
#[derive(Debug)]
pub struct ServeBatches(pub crate::histogram::Family);

impl Default for ServeBatches {
    fn default() -> Self {
        ServeBatches(crate::histogram::Family::new(
            crate::histogram::SECONDS,
            crate::online::MAX_MODELS,
        ))
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Membership messages received.
    pub member_msgs_in: u64,
    /// Membership messages sent.
    pub member_msgs_out: u64,
    /// Malformed payloads dropped.
    pub garbage: u64,
    /// Failure-detector messages dropped by the simulated loss.
    pub fd_dropped: u64,
    /// Membership messages (or view records) refused as implausible or beyond a limit.
    pub membership_refused: u64,
    /// Requests refused at once because a limit of work in progress was reached (answered
    /// `overloaded`).
    pub shed: u64,
    /// Times this node left the online-inference queue group to shed load.
    pub infer_pauses: u64,
}

/// Which subsystem a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Failure detection, member events and view syncs.
    Membership,
    /// Anything else (control requests, …).
    Other,
}

impl Metrics {
    /// Records that the inference engine now holds `model` (`name vN`) in memory.
    pub fn cached_model(&self, model: &str) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.insert(model.to_string());
    }

    /// Records that the inference engine no longer holds `model` (evicted from its cache).
    pub fn evicted_model(&self, model: &str) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.remove(model);
    }

    /// The models the inference engine holds.
    pub fn cached_models(&self) -> Vec<String> {
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.iter().cloned().collect()
    }

    /// Counts a received message of `len` bytes.
    pub fn received(&self, traffic: Traffic, len: usize) {
        self.msgs_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(len as u64, Relaxed);
        if traffic == Traffic::Membership {
            self.member_msgs_in.fetch_add(1, Relaxed);
        }
    }

    /// Counts a sent message of `len` bytes.
    pub fn sent(&self, traffic: Traffic, len: usize) {
        self.msgs_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(len as u64, Relaxed);
        if traffic == Traffic::Membership {
            self.member_msgs_out.fetch_add(1, Relaxed);
        }
    }

    /// Counts a malformed payload that was dropped.
    pub fn garbage(&self) {
        self.garbage.fetch_add(1, Relaxed);
    }

    /// Counts a request shed (answered `overloaded` without being run).
    pub fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }

    /// Counts the node leaving the online-inference queue group to shed load.
    pub fn infer_paused(&self) {
        self.infer_pauses.fetch_add(1, Relaxed);
    }

    /// Counts a failure-detector message dropped by the simulated loss.
    pub fn fd_dropped(&self) {
        self.fd_dropped.fetch_add(1, Relaxed);
    }

    /// Counts a membership message (or view record) refused as implausible or beyond a limit.
    pub fn membership_refused(&self) {
        self.membership_refused.fetch_add(1, Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            msgs_in: self.msgs_in.load(Relaxed),
            msgs_out: self.msgs_out.load(Relaxed),
            member_msgs_in: self.member_msgs_in.load(Relaxed),
            member_msgs_out: self.member_msgs_out.load(Relaxed),
            garbage: self.garbage.load(Relaxed),
            fd_dropped: self.fd_dropped.load(Relaxed),
            membership_refused: self.membership_refused.load(Relaxed),
            shed: self.shed.load(Relaxed),
            infer_pauses: self.infer_pauses.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_traffic_counts_in_both_totals() {
        let m = Metrics::default();
        m.received(Traffic::Membership, 10);
        m.sent(Traffic::Other, 5);
        m.garbage();
        m.membership_refused();
        let c = m.counters();
        assert_eq!((c.msgs_in, c.bytes_in, c.member_msgs_in), (1, 10, 1));
        assert_eq!((c.msgs_out, c.bytes_out, c.member_msgs_out), (1, 5, 0));
        assert_eq!((c.garbage, c.membership_refused), (1, 1));
    }
}
