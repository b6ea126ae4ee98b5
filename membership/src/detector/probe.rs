//! Probing: one peer per period, and indirect probes when the direct one gets no ack.

use super::{Detector, Now, Output, Probe};
use crate::view::Member;
use bus_schemas::membership::FdMessage;
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Instant;

impl<R: Rng> Detector<R> {
    pub(super) fn advance_probe(&mut self, now: Now, out: &mut Vec<Output>) {
        let Some(probe) = &mut self.probe else { return };
        let elapsed = now.mono.saturating_duration_since(probe.started);
        if elapsed >= self.cfg.period {
            let target = probe.target.clone();
            self.probe = None;
            if !self.quiet(now.mono) {
                self.suspect(&target, now, out);
            }
        } else if elapsed >= self.cfg.ping_timeout && !probe.indirect_sent {
            probe.indirect_sent = true;
            let (target, seq) = (probe.target.clone(), probe.seq);
            let n = self.cfg.indirect_probes;
            let helpers =
                (self.view).some_alive_peers_except(&self.me.id, &target, n, &mut self.rng);
            for helper in helpers {
                let msg = FdMessage::PingReq {
                    from: self.me.id.clone(),
                    from_generation: self.me.generation,
                    seq,
                    target: target.clone(),
                };
                out.push(Output::Send { to: helper, msg });
            }
            out.push(Output::Send {
                to: target,
                msg: self.ping(seq),
            });
        }
    }

    pub(super) fn ping(&self, seq: u64) -> FdMessage {
        FdMessage::Ping {
            from: self.me.id.clone(),
            from_generation: self.me.generation,
            seq,
            digest: self.view.digest(),
        }
    }

    pub(super) fn start_probe(&mut self, now: Instant, out: &mut Vec<Output>) {
        let target = loop {
            let Some(candidate) = self.order.pop() else {
                self.order = self.view.live_peers(&self.me.id);
                self.order.shuffle(&mut self.rng);
                match self.order.pop() {
                    Some(c) => break c,
                    None => return,
                }
            };
            if self.view.get(&candidate).is_some_and(Member::is_live) {
                break candidate;
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.next_probe = now + self.cfg.period;
        self.stats.probes_sent = self.stats.probes_sent.saturating_add(1);
        out.push(Output::Send {
            to: target.clone(),
            msg: self.ping(self.seq),
        });
        self.probe = Some(Probe {
            target,
            seq: self.seq,
            started: now,
            indirect_sent: false,
        });
    }
}
