//! What the detector refuses, and why: implausible messages, a full view, too many relays.

use super::{Detector, Now};
use bus_schemas::membership::{Clock, Implausible};
use rand::Rng;

/// A membership message (or one record of a view) the detector refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A value broke a limit of [`bus_schemas::membership::plausible`].
    #[error("refused a {what}: {reason}")]
    Implausible {
        /// What was refused: `member event`, `view record` or `failure-detector message`.
        what: &'static str,
        /// The limit it broke.
        reason: Implausible,
    },
    /// A new id while the view holds its maximum of live members.
    #[error("refused new member {id:?}: a view holds at most {max} members")]
    ViewFull {
        /// The refused id (a token).
        id: String,
        /// The maximum (`DetectorConfig::max_members`).
        max: usize,
    },
    /// A ping-req while the node relays its maximum of indirect probes.
    #[error(
        "refused a ping-req from {from:?}: a node relays at most {max} indirect probes at a time"
    )]
    TooManyRelays {
        /// The asking node (a token).
        from: String,
        /// The maximum (`DetectorConfig::max_members`).
        max: usize,
    },
}

impl<R: Rng> Detector<R> {
    /// This node's clock for the plausibility checks.
    pub(super) fn clock(&self, now: Now) -> Clock {
        let skew = self.cfg.max_clock_skew.as_millis();
        Clock {
            now_ms: now.wall_ms,
            max_skew_ms: u64::try_from(skew).unwrap_or(u64::MAX),
        }
    }
}

/// Wraps a failed check as a refusal of `what`.
pub(super) fn implausible(what: &'static str, reason: Implausible) -> Refused {
    Refused::Implausible { what, reason }
}
