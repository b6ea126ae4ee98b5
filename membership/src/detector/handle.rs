//! The detector's handling of incoming failure-detector messages, events and view syncs.

use super::heal::Side;
use super::refused::{implausible, Refused};
use super::{Detector, Now, Output, Relay};
use crate::view::{Applied, Member};
use bus_schemas::membership::plausible::MAX_INCARNATION;
use bus_schemas::membership::{FdMessage, MemberEvent, MemberEventKind, MemberRecord, MemberState};
use rand::Rng;

impl<R: Rng> Detector<R> {
    /// Handles a ping, ping-req or ack addressed to this node; refuses one whose ids are not
    /// tokens or whose generations are implausible.
    pub fn handle_fd(&mut self, msg: FdMessage, now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.active {
            return out;
        }
        if let Err(reason) = msg.check(self.clock(now)) {
            let refused = implausible("failure-detector message", reason);
            return vec![Output::Refused(refused)];
        }
        match msg {
            FdMessage::Ping {
                from, seq, digest, ..
            } => {
                self.view.heard_from(&from, now.mono);
                self.check_digest(&from, digest, now, &mut out);
                let ack = self.ack(seq, self.me.id.clone(), self.me.generation);
                out.push(Output::Send { to: from, msg: ack });
            }
            FdMessage::PingReq {
                from, seq, target, ..
            } => {
                self.view.heard_from(&from, now.mono);
                if self.relays.len() >= self.cfg.max_members {
                    let max = self.cfg.max_members;
                    let refused = Refused::TooManyRelays { from, max };
                    return vec![Output::Refused(refused)];
                }
                self.seq = self.seq.wrapping_add(1);
                let relay = Relay {
                    requester: from,
                    requester_seq: seq,
                    target: target.clone(),
                    expires: now.mono + self.cfg.period,
                };
                self.relays.insert(self.seq, relay);
                out.push(Output::Send {
                    to: target,
                    msg: self.ping(self.seq),
                });
            }
            FdMessage::Ack {
                from,
                seq,
                target,
                target_generation,
                digest,
                ..
            } => {
                self.view.heard_from(&from, now.mono);
                self.handle_ack(seq, target, target_generation, &mut out);
                if from != self.me.id {
                    self.check_digest(&from, digest, now, &mut out);
                }
            }
        }
        out
    }

    fn ack(&self, seq: u64, target: String, target_generation: u64) -> FdMessage {
        FdMessage::Ack {
            from: self.me.id.clone(),
            from_generation: self.me.generation,
            seq,
            target,
            target_generation,
            digest: self.view.digest(),
        }
    }

    fn handle_ack(&mut self, seq: u64, target: String, target_gen: u64, out: &mut Vec<Output>) {
        if let Some(relay) = self.relays.remove(&seq) {
            if relay.target == target {
                let ack = self.ack(relay.requester_seq, target, target_gen);
                out.push(Output::Send {
                    to: relay.requester,
                    msg: ack,
                });
            }
            return;
        }
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.seq == seq && p.target == target)
        {
            self.probe = None;
        }
    }

    /// Syncs with `peer` once its digests have differed from this node's for
    /// [`DetectorConfig::sync_settle`]: a view that differs only while an event is on its way (a
    /// few milliseconds) is no reason to fetch a whole view, which at a thousand members is a
    /// thousand records per node after every change. Tracked per peer, so a peer that alone
    /// holds news (a refutation others missed) is still asked.
    fn check_digest(&mut self, peer: &str, digest: u64, now: Now, out: &mut Vec<Output>) {
        if digest == self.view.digest() {
            self.mismatches.remove(peer);
            return;
        }
        if !self.mismatches.contains_key(peer) && self.mismatches.len() >= self.cfg.max_members {
            // Bounded whatever peers claim to be: forget the oldest difference.
            let oldest = self
                .mismatches
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                self.mismatches.remove(&oldest);
            }
        }
        let since = *self.mismatches.entry(peer.to_string()).or_insert(now.mono);
        if now.mono.saturating_duration_since(since) < self.cfg.sync_settle {
            return;
        }
        let recent = self
            .last_sync
            .is_some_and(|t| now.mono.saturating_duration_since(t) < self.cfg.sync_interval);
        if !recent {
            self.last_sync = Some(now.mono);
            self.mismatches.remove(peer);
            out.push(Output::SyncWith(peer.to_string()));
        }
    }

    /// Applies an event from the member events subject, unless it is implausible.
    pub fn handle_event(&mut self, ev: &MemberEvent, now: Now) -> Vec<Output> {
        if let Err(reason) = ev.check(self.clock(now)) {
            return vec![Output::Refused(implausible("member event", reason))];
        }
        if ev.reporter != ev.node && self.failed_here(&ev.reporter) {
            return Vec::new(); // reached while cut off from this node's side
        }
        let member = Member {
            id: ev.node.clone(),
            generation: ev.generation,
            incarnation: ev.incarnation,
            state: ev.kind.state(),
            host: ev.host.clone(),
            zone: ev.zone.clone(),
            http: ev.http.clone(),
            started_ms: ev.started_ms,
        };
        self.merge(member, Some(&ev.reporter), now)
    }

    /// Merges the whole view of peer `from`, record by record, refusing implausible records;
    /// after a partition, the larger side's verdicts stand (see [`super::heal`]).
    pub fn merge_records(&mut self, from: &str, records: &[MemberRecord], now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        let clock = self.clock(now);
        let mut members = Vec::with_capacity(records.len());
        for r in records {
            match r.check(clock) {
                Ok(()) => members.push(Member::from(r)),
                Err(reason) => out.push(Output::Refused(implausible("view record", reason))),
            }
        }
        match self.side(from, &members) {
            Side::Same => {}
            Side::Larger => members.retain(|m| m.id == from),
            Side::Smaller => self.yield_verdicts(&members),
        }
        for m in members {
            out.extend(self.merge(m, None, now));
        }
        out
    }

    fn merge(&mut self, member: Member, reporter: Option<&str>, now: Now) -> Vec<Output> {
        if member.id == self.me.id {
            return self.about_me(member, now);
        }
        if member.state == MemberState::Suspect && self.heard_suspect(&member, reporter) {
            return Vec::new(); // a confirmation of a suspicion this node holds
        }
        match self.view.apply(member.clone(), now.mono) {
            Applied::Changed => {}
            Applied::Stale => return Vec::new(),
            Applied::Full => {
                let max = self.cfg.max_members;
                let refused = Refused::ViewFull { id: member.id, max };
                return vec![Output::Refused(refused)];
            }
        }
        match member.state {
            // Back up the suspecting node: if it dies, fail the suspect a bit later.
            MemberState::Suspect => self.back_up(&member, reporter, now.mono),
            _ => {
                self.suspicions.remove(&member.id);
            }
        }
        Vec::new()
    }

    /// Answers news about this node: a suspicion of the current generation is refuted with a
    /// higher incarnation; a failure or leave of it, or any claim of a newer generation (a
    /// forged event, or an older process of this id), makes the node join again with a
    /// generation above it. Claims are plausible (checked before), so that generation is too.
    fn about_me(&mut self, member: Member, now: Now) -> Vec<Output> {
        if !self.active || member.generation < self.me.generation {
            return Vec::new();
        }
        if member.generation > self.me.generation {
            self.me.generation = member.generation;
            return self.rejoin(now);
        }
        match member.state {
            MemberState::Suspect if member.incarnation >= self.me.incarnation => {
                self.refute(member.incarnation, now)
            }
            MemberState::Failed => {
                // Cut off from those who declared it: its own verdicts are not to be trusted.
                self.view.revive_failed(&self.me.id);
                self.suspicions.clear();
                self.rejoin(now)
            }
            MemberState::Left => self.rejoin(now),
            _ => Vec::new(),
        }
    }

    /// Refutes a suspicion at `incarnation` with a higher one, or with a new generation when
    /// the incarnation is at its maximum.
    pub(super) fn refute(&mut self, incarnation: u64, now: Now) -> Vec<Output> {
        if incarnation >= MAX_INCARNATION {
            return self.rejoin(now);
        }
        self.me.incarnation = incarnation + 1;
        self.view.apply(self.me.clone(), now.mono);
        let alive = self.event(MemberEventKind::Alive, &self.me.clone(), now);
        vec![Output::Broadcast(alive)]
    }
}
