//! The detector's handling of incoming failure-detector messages, events and view syncs.

use super::{Detector, Now, Output, Relay};
use crate::membership::view::Member;
use bus_schemas::membership::{FdMessage, MemberEvent, MemberEventKind, MemberRecord, MemberState};
use rand::Rng;

impl<R: Rng> Detector<R> {
    /// Handles a ping, ping-req or ack addressed to this node.
    pub fn handle_fd(&mut self, msg: FdMessage, now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.active {
            return out;
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
                self.seq += 1;
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

    fn check_digest(&mut self, peer: &str, digest: u64, now: Now, out: &mut Vec<Output>) {
        if digest == self.view.digest() {
            return;
        }
        let recent = self
            .last_sync
            .is_some_and(|t| now.mono.saturating_duration_since(t) < self.cfg.sync_interval);
        if !recent {
            self.last_sync = Some(now.mono);
            out.push(Output::SyncWith(peer.to_string()));
        }
    }

    /// Applies an event from the member events subject.
    pub fn handle_event(&mut self, ev: &MemberEvent, now: Now) -> Vec<Output> {
        let member = Member {
            id: ev.node.clone(),
            generation: ev.generation,
            incarnation: ev.incarnation,
            state: ev.kind.state(),
            host: ev.host.clone(),
            http: ev.http.clone(),
        };
        self.merge(member, ev.reporter == self.me.id, now)
    }

    /// Merges a peer's whole view.
    pub fn merge_records(&mut self, records: &[MemberRecord], now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        for r in records {
            out.extend(self.merge(Member::from(r), false, now));
        }
        out
    }

    fn merge(&mut self, member: Member, own_report: bool, now: Now) -> Vec<Output> {
        if member.id == self.me.id {
            return self.about_me(member, now);
        }
        if !self.view.apply(member.clone()) {
            return Vec::new();
        }
        match member.state {
            MemberState::Suspect if !own_report => {
                // Back up the suspecting node: if it dies, fail the suspect a bit later.
                let deadline = now.mono + self.cfg.suspect_timeout * 2;
                let suspicion = super::Suspicion {
                    generation: member.generation,
                    deadline,
                };
                self.suspicions.insert(member.id.clone(), suspicion);
            }
            MemberState::Suspect => {}
            _ => {
                self.suspicions.remove(&member.id);
            }
        }
        Vec::new()
    }

    fn about_me(&mut self, member: Member, now: Now) -> Vec<Output> {
        if !self.active || member.generation < self.me.generation {
            return Vec::new();
        }
        match member.state {
            MemberState::Suspect if member.incarnation >= self.me.incarnation => {
                self.me.incarnation = member.incarnation + 1;
                self.view.apply(self.me.clone());
                let alive = self.event(MemberEventKind::Alive, &self.me.clone(), now);
                vec![Output::Broadcast(alive)]
            }
            MemberState::Failed => self.rejoin(now),
            MemberState::Left if member.generation == self.me.generation => self.rejoin(now),
            _ => {
                if member.generation > self.me.generation {
                    // Another process claims our id with a newer generation: outrun it.
                    self.me.generation = member.generation;
                    return self.rejoin(now);
                }
                Vec::new()
            }
        }
    }
}
