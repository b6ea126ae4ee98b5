//! Suspicions whose timeout shrinks as independent reporters confirm them (Lifeguard's
//! "local health suspicion", as HashiCorp memberlist does it).
//!
//! A suspicion raised by one node alone waits `suspect_timeout_max` for a refutation: a slow
//! bus or a starved process on one side (a machine lost, its server's streams re-electing,
//! two cores shared by a dozen processes) delays the refutation by hundreds of milliseconds,
//! and a single node's failed probe is weak evidence. Each further node whose own probe failed
//! confirms it (a `suspect` event of the same generation and incarnation from another
//! reporter), and the timeout falls logarithmically to `suspect_timeout` once `confirmations`
//! others agree. A crashed node is probed by every survivor within a round, so it is confirmed
//! and failed about as fast as before; a live node one peer could not reach has time to answer.

use super::{Detector, DetectorConfig, Now, Output};
use crate::view::Member;
use bus_schemas::membership::{MemberEventKind, MemberState};
use rand::Rng;
use std::time::{Duration, Instant};

/// One member under suspicion, as this node tracks it.
#[derive(Debug)]
pub(super) struct Suspicion {
    generation: u64,
    incarnation: u64,
    started: Instant,
    /// Whether this node's own probe failed: it then decides at the timeout; otherwise it
    /// backs up the reporters one `suspect_timeout` later (in case they died meanwhile).
    own: bool,
    /// Distinct reporters heard (this node too, when `own`), at most `confirmations + 1`.
    reporters: Vec<String>,
    /// No failure before this: a grace period pushes it back.
    not_before: Instant,
}

impl Suspicion {
    fn new(m: &Member, reporter: Option<&str>, own: bool, now: Instant) -> Self {
        Self {
            generation: m.generation,
            incarnation: m.incarnation,
            started: now,
            own,
            reporters: reporter.map(str::to_string).into_iter().collect(),
            not_before: now,
        }
    }

    fn of(&self, m: &Member) -> bool {
        (self.generation, self.incarnation) == (m.generation, m.incarnation)
    }

    /// Counts `reporter`, up to `cap` reporters; whether it was new and counted.
    fn confirm(&mut self, reporter: &str, cap: usize) -> bool {
        if self.reporters.iter().any(|r| r == reporter) || self.reporters.len() >= cap {
            return false;
        }
        self.reporters.push(reporter.to_string());
        true
    }

    /// When this node declares the member failed, with `k` confirmations possible.
    fn deadline(&self, cfg: &DetectorConfig, k: usize) -> Instant {
        let confirmations = self.reporters.len().saturating_sub(1);
        let mut wait = timeout(cfg, confirmations, k);
        if !self.own {
            wait += cfg.suspect_timeout;
        }
        (self.started + wait).max(self.not_before)
    }

    /// Pushes the deadline to at least `t`.
    pub(super) fn hold_until(&mut self, t: Instant) {
        self.not_before = self.not_before.max(t);
    }
}

/// The suspicion timeout after `c` confirmations when `k` are possible: from
/// `suspect_timeout_max` down to `suspect_timeout`, logarithmically in `c`.
pub(super) fn timeout(cfg: &DetectorConfig, c: usize, k: usize) -> Duration {
    let (min, max) = (
        cfg.suspect_timeout,
        cfg.suspect_timeout_max.max(cfg.suspect_timeout),
    );
    if k == 0 || c >= k {
        return min;
    }
    let frac = ((c + 1) as f64).ln() / ((k + 1) as f64).ln();
    max.saturating_sub((max - min).mul_f64(frac)).max(min)
}

impl<R: Rng> Detector<R> {
    /// Confirmations possible: at most `confirmations`, and no more than the live members
    /// other than the suspect and the first reporter.
    fn confirmations_possible(&self) -> usize {
        let live = self.view.members().filter(|m| m.is_live()).count();
        self.cfg.confirmations.min(live.saturating_sub(2))
    }

    /// This node's probe of `id` failed: suspect it, or confirm a suspicion others raised
    /// (announced, so that they count it too, while confirmations are still needed).
    pub(super) fn suspect(&mut self, id: &str, now: Now, out: &mut Vec<Output>) {
        let Some(member) = self.view.get(id).cloned() else {
            return;
        };
        let me = self.me.id.clone();
        let cap = self.confirmations_possible() + 1;
        match member.state {
            MemberState::Alive => {
                let suspect = Member {
                    state: MemberState::Suspect,
                    ..member
                };
                self.view.apply(suspect.clone(), now.mono);
                let s = Suspicion::new(&suspect, Some(&me), true, now.mono);
                self.suspicions.insert(id.to_string(), s);
                let ev = self.event(MemberEventKind::Suspect, &suspect, now);
                out.push(Output::Broadcast(ev));
            }
            MemberState::Suspect => {
                let held = self.suspicions.get(id).is_some_and(|s| s.of(&member));
                if !held {
                    let s = Suspicion::new(&member, None, false, now.mono);
                    self.suspicions.insert(id.to_string(), s);
                }
                let Some(s) = self.suspicions.get_mut(id) else {
                    return;
                };
                s.own = true;
                if s.confirm(&me, cap) {
                    let ev = self.event(MemberEventKind::Suspect, &member, now);
                    out.push(Output::Broadcast(ev));
                }
            }
            MemberState::Failed | MemberState::Left => {}
        }
    }

    /// Another node (`reporter`, or a view record when `None`) says `m` is suspect. Returns
    /// whether it only confirmed the suspicion this node already holds. Only live members
    /// confirm: names nobody knows (a forger's) do not shorten anyone's timeout.
    pub(super) fn heard_suspect(&mut self, m: &Member, reporter: Option<&str>) -> bool {
        let cap = self.confirmations_possible() + 1;
        let reporter = reporter.filter(|r| self.view.get(r).is_some_and(Member::is_live));
        let Some(s) = self.suspicions.get_mut(&m.id).filter(|s| s.of(m)) else {
            return false;
        };
        if let Some(r) = reporter {
            s.confirm(r, cap);
        }
        true
    }

    /// Starts backing up a suspicion another node raised.
    pub(super) fn back_up(&mut self, m: &Member, reporter: Option<&str>, now: Instant) {
        let s = Suspicion::new(m, reporter, false, now);
        self.suspicions.insert(m.id.clone(), s);
    }

    /// Declares failed every suspect whose suspicion ran out unrefuted.
    pub(super) fn expire_suspicions(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.quiet(now.mono) || self.suspicions.is_empty() {
            return;
        }
        let k = self.confirmations_possible();
        let due: Vec<String> = (self.suspicions.iter())
            .filter(|(_, s)| s.deadline(&self.cfg, k) <= now.mono)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(s) = self.suspicions.remove(&id) else {
                continue;
            };
            let Some(member) = self.view.get(&id).cloned() else {
                continue;
            };
            if member.generation != s.generation || member.state != MemberState::Suspect {
                continue;
            }
            let failed = Member {
                state: MemberState::Failed,
                ..member
            };
            self.view.apply(failed.clone(), now.mono);
            self.stats.failures_detected = self.stats.failures_detected.saturating_add(1);
            let ev = self.event(MemberEventKind::Fail, &failed, now);
            out.push(Output::Broadcast(ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::Sim;
    use super::*;

    #[test]
    fn only_live_members_confirm_a_suspicion() {
        let mut sim = Sim::new(5, 3);
        sim.run_for(Duration::from_secs(2));
        let now = sim.now;
        let suspect = Member {
            state: MemberState::Suspect,
            ..sim.nodes[2].me().clone()
        };
        for reporter in ["n0", "x1", "x2", "n0", "n3", "n4"] {
            let mut ev = sim.nodes[0].event(MemberEventKind::Suspect, &suspect, now);
            ev.reporter = reporter.into();
            let _ = sim.nodes[1].handle_event(&ev, now);
        }
        // Forged names count for nothing, a repeat once, and no more than 2 confirmations.
        let s = &sim.nodes[1].suspicions["n2"];
        assert_eq!(s.reporters, ["n0", "n3", "n4"]);
        assert!(!s.own);
    }

    #[test]
    fn the_timeout_falls_from_max_to_min_with_confirmations() {
        let cfg = DetectorConfig::default();
        let (min, max) = (cfg.suspect_timeout, cfg.suspect_timeout_max);
        assert_eq!(timeout(&cfg, 0, 2), max);
        let one = timeout(&cfg, 1, 2);
        assert!(min < one && one < max, "{one:?}");
        assert_eq!(timeout(&cfg, 2, 2), min);
        assert_eq!(timeout(&cfg, 5, 2), min);
        // Nobody else could confirm: no reason to wait longer.
        assert_eq!(timeout(&cfg, 0, 0), min);
    }
}
