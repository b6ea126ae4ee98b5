//! Healing a partition. While a machine is cut off, each side declares the other's nodes
//! failed. Once the link is back, nothing crosses on its own (each side stopped probing the
//! other), so every node asks a failed member for its view now and then ([`reclaim`]); one
//! that answers was cut off, not dead.
//!
//! The two views then disagree, each side failed at the other's current generations. The
//! larger side's verdicts stand: a node on the smaller side drops its own verdicts on the
//! members the larger side sees live, and (seeing itself failed) joins again with a new
//! generation. A node on the larger side takes nothing from the smaller side's view but the
//! sender's own record, so the nodes that carried on are never made to rejoin by a minority
//! that could not reach them. Equal sides: the one with the smallest live id wins. For the
//! same reason an event reported by a member this node holds as failed is ignored (its
//! verdicts were reached cut off), unless it is that member's own news of itself.
//!
//! [`reclaim`]: Detector::reclaim

use super::{Detector, Output};
use crate::view::Member;
use bus_schemas::membership::MemberState;
use rand::seq::IndexedRandom;
use rand::Rng;
use std::time::Instant;

/// Where a node stands against a peer whose view it merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The peer is not failed in this node's view: an ordinary merge.
    Same,
    /// The peer was failed here and sees fewer live members: only its own record counts.
    Larger,
    /// The peer was failed here and sees more live members: its verdicts stand.
    Smaller,
}

impl<R: Rng> Detector<R> {
    /// Every [`reclaim_interval`], asks one failed member at random for its view.
    ///
    /// [`reclaim_interval`]: super::DetectorConfig::reclaim_interval
    pub(super) fn reclaim(&mut self, now: Instant, out: &mut Vec<Output>) {
        if now < self.next_reclaim {
            return;
        }
        self.next_reclaim = now + self.cfg.reclaim_interval;
        let failed = self.view.failed_peers(&self.me.id);
        if let Some(peer) = failed.choose(&mut self.rng) {
            out.push(Output::SyncWith(peer.clone()));
        }
    }

    /// Whether `reporter` is a member this node holds as failed (at its latest generation).
    pub(super) fn failed_here(&self, reporter: &str) -> bool {
        reporter != self.me.id
            && (self.view.get(reporter)).is_some_and(|m| m.state == MemberState::Failed)
    }

    /// Which side this node is on against `from`, whose view is `members`.
    pub(super) fn side(&self, from: &str, members: &[Member]) -> Side {
        let theirs_of_from = members.iter().find(|m| m.id == from).map(|m| m.generation);
        let failed = self.view.get(from).is_some_and(|m| {
            m.state == MemberState::Failed && theirs_of_from.is_none_or(|g| g <= m.generation)
        });
        if !failed || from == self.me.id {
            return Side::Same;
        }
        let theirs: Vec<&str> = members
            .iter()
            .filter(|m| m.is_live())
            .map(|m| m.id.as_str())
            .collect();
        let mut mine = self.view.live_peers(&self.me.id);
        mine.push(self.me.id.clone());
        let smallest_theirs = theirs.iter().min().copied();
        let smallest_mine = mine.iter().min().map(String::as_str);
        let they_win = theirs.len() > mine.len()
            || (theirs.len() == mine.len() && smallest_theirs < smallest_mine);
        if they_win {
            Side::Smaller
        } else {
            Side::Larger
        }
    }

    /// On the smaller side: drops this node's verdicts on members `from`'s view holds live
    /// at the same generation.
    pub(super) fn yield_verdicts(&mut self, members: &[Member]) {
        for m in members.iter().filter(|m| m.is_live() && m.id != self.me.id) {
            if self.view.overrule(m.clone()) {
                self.suspicions.remove(&m.id);
            }
        }
    }
}
