//! The membership view and its merge rule (sans-IO).
//!
//! Records are ordered like SWIM's: a higher generation supersedes anything of a lower one;
//! within a generation, `failed` and `left` are final, `suspect` beats `alive` of the same or
//! a lower incarnation, and `alive` beats `suspect` only with a higher incarnation. Because the
//! rule is a join over that order, applying the same records in any order gives the same view.
//! Failed and left members are forgotten after a while; a tombstone (id, generation) keeps a
//! stale record from bringing a forgotten generation back.

use bus_schemas::membership::{MemberRecord, MemberState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The identity and state of one member, without the local "last heard" time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id.
    pub id: String,
    /// Generation (new at each start or rejoin).
    pub generation: u64,
    /// SWIM incarnation.
    pub incarnation: u64,
    /// Current state.
    pub state: MemberState,
    /// Host name.
    pub host: String,
    /// Zone, if the node names one.
    pub zone: Option<String>,
    /// Dashboard address.
    pub http: Option<String>,
    /// When the node's process started (the same across its rejoins), if it says.
    pub started_ms: Option<u64>,
}

impl Member {
    /// Whether `self` carries newer information than `old` about the same node.
    pub fn supersedes(&self, old: &Member) -> bool {
        use MemberState::*;
        if self.generation != old.generation {
            return self.generation > old.generation;
        }
        match (self.state, old.state) {
            (_, Failed | Left) => false,
            (Failed | Left, _) => true,
            (Suspect, Alive) => self.incarnation >= old.incarnation,
            _ => self.incarnation > old.incarnation,
        }
    }

    /// Whether the member takes part in probing (alive or suspect).
    pub fn is_live(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Suspect)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    member: Member,
    last_heard: Option<Instant>,
    /// When this view saw the member's current generation fail or leave.
    ended: Option<Instant>,
}

/// A forgotten member: records of this generation or older are stale.
#[derive(Debug, Clone, Copy)]
struct Tombstone {
    generation: u64,
    at: Instant,
}

/// What [`View::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The view changed.
    Changed,
    /// The view already knew as much (or forgot that generation): nothing changed.
    Stale,
    /// A new id while the view holds its maximum of live members: refused, nothing changed.
    Full,
}

/// Every member a node knows, including failed and left ones until they are forgotten.
///
/// Holds at most `max_members` members and as many tombstones (id and generation of a
/// forgotten member), so neither grows with what peers send.
#[derive(Debug, Clone)]
pub struct View {
    keep: String,
    max_members: usize,
    entries: BTreeMap<String, Entry>,
    tombstones: BTreeMap<String, Tombstone>,
    /// [`View::digest`] until the members change: every ping and ack carries it, so it is not
    /// recomputed over every member each time.
    digest: std::sync::OnceLock<u64>,
}

impl View {
    /// An empty view of at most `max_members` members that never forgets `keep` (this node).
    pub fn new(keep: &str, max_members: usize) -> Self {
        Self {
            keep: keep.to_string(),
            max_members: max_members.max(1),
            entries: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            digest: std::sync::OnceLock::new(),
        }
    }

    /// Applies `member` if it supersedes what the view holds (or forgot).
    pub fn apply(&mut self, member: Member, now: Instant) -> Applied {
        let Some(entry) = self.entries.get_mut(&member.id) else {
            return self.admit(member, now);
        };
        if !member.supersedes(&entry.member) {
            return Applied::Stale;
        }
        let new_generation = entry.member.generation != member.generation;
        if new_generation {
            entry.last_heard = None;
        }
        entry.ended = match (member.is_live(), entry.ended) {
            (true, _) => None,
            (false, Some(t)) if !new_generation => Some(t),
            (false, _) => Some(now),
        };
        entry.member = member;
        self.digest = std::sync::OnceLock::new();
        Applied::Changed
    }

    fn admit(&mut self, member: Member, now: Instant) -> Applied {
        let forgotten = self.tombstones.get(&member.id);
        if forgotten.is_some_and(|t| t.generation >= member.generation) {
            return Applied::Stale;
        }
        if self.entries.len() >= self.max_members && !self.forget_oldest_ended(now) {
            return Applied::Full;
        }
        self.tombstones.remove(&member.id);
        let entry = Entry {
            ended: (!member.is_live()).then_some(now),
            member,
            last_heard: None,
        };
        self.entries.insert(entry.member.id.clone(), entry);
        self.digest = std::sync::OnceLock::new();
        Applied::Changed
    }

    /// Forgets the failed or left member that ended first, to make room; false if none.
    fn forget_oldest_ended(&mut self, now: Instant) -> bool {
        let oldest = self
            .entries
            .values()
            .filter(|e| e.member.id != self.keep)
            .filter_map(|e| Some((e.ended?, e.member.id.clone())))
            .min();
        match oldest {
            Some((_, id)) => self.forget(&id, now),
            None => false,
        }
    }

    fn forget(&mut self, id: &str, now: Instant) -> bool {
        let Some(entry) = self.entries.remove(id) else {
            return false;
        };
        self.digest = std::sync::OnceLock::new();
        if self.tombstones.len() >= self.max_members {
            let oldest = self.tombstones.iter().min_by_key(|(_, t)| t.at);
            if let Some(oldest) = oldest.map(|(id, _)| id.clone()) {
                self.tombstones.remove(&oldest);
            }
        }
        let tombstone = Tombstone {
            generation: entry.member.generation,
            at: now,
        };
        self.tombstones.insert(id.to_string(), tombstone);
        true
    }

    /// Forgets members that failed or left `after` ago or longer; returns their ids.
    pub fn forget_ended(&mut self, now: Instant, after: Duration) -> Vec<String> {
        let due: Vec<String> = self
            .entries
            .values()
            .filter(|e| {
                e.ended
                    .is_some_and(|t| now.saturating_duration_since(t) >= after)
            })
            .filter(|e| e.member.id != self.keep)
            .map(|e| e.member.id.clone())
            .collect();
        for id in &due {
            self.forget(id, now);
        }
        due
    }

    /// How many members the view holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view holds no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The generation of forgotten member `id`, if the view keeps its tombstone.
    pub fn forgotten(&self, id: &str) -> Option<u64> {
        self.tombstones.get(id).map(|t| t.generation)
    }

    /// How many tombstones the view keeps (at most its maximum of members).
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// The member with this id.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.entries.get(id).map(|e| &e.member)
    }

    /// Records that a message came from `id` directly.
    pub fn heard_from(&mut self, id: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.last_heard = Some(now);
        }
    }

    /// Ids of failed members (not yet forgotten) other than `me`.
    pub fn failed_peers(&self, me: &str) -> Vec<String> {
        (self.entries.values())
            .filter(|e| e.member.state == MemberState::Failed && e.member.id != me)
            .map(|e| e.member.id.clone())
            .collect()
    }

    /// Takes `member` (live) over a failure of the same generation this view holds, which
    /// [`View::apply`] never does: a node on the smaller side of a healed partition drops its
    /// verdict. True if the view changed.
    pub fn overrule(&mut self, member: Member) -> bool {
        let Some(entry) = self.entries.get_mut(&member.id) else {
            return false;
        };
        let overruled = member.is_live()
            && entry.member.state == MemberState::Failed
            && entry.member.generation == member.generation;
        if overruled {
            entry.member = member;
            entry.ended = None;
            self.digest = std::sync::OnceLock::new();
        }
        overruled
    }

    /// Takes back every failure the view holds (but `me`'s): members it holds as failed are
    /// alive again, unheard, to be probed and judged afresh. A node that learns it was itself
    /// declared failed was cut off from the others, so its own verdicts of that time are not
    /// to be trusted (nor spread: they would make live nodes rejoin).
    pub fn revive_failed(&mut self, me: &str) {
        self.digest = std::sync::OnceLock::new();
        for e in self.entries.values_mut() {
            if e.member.id != me && e.member.state == MemberState::Failed {
                e.member.state = MemberState::Alive;
                e.ended = None;
                e.last_heard = None;
            }
        }
    }

    /// Ids of live (alive or suspect) members other than `me`.
    pub fn live_peers(&self, me: &str) -> Vec<String> {
        self.entries
            .values()
            .filter(|e| e.member.is_live() && e.member.id != me)
            .map(|e| e.member.id.clone())
            .collect()
    }

    /// Up to `n` alive members other than `me` and `except`, picked at random (only those
    /// picked are copied: at a thousand members this runs for every ping that went unanswered).
    pub fn some_alive_peers_except(
        &self,
        me: &str,
        except: &str,
        n: usize,
        rng: &mut impl rand::Rng,
    ) -> Vec<String> {
        use rand::seq::IteratorRandom;
        let alive = (self.entries.values())
            .map(|e| &e.member)
            .filter(|m| m.state == MemberState::Alive && m.id != me && m.id != except);
        let mut picked: Vec<String> = alive
            .choose_multiple(rng, n)
            .into_iter()
            .map(|m| m.id.clone())
            .collect();
        picked.sort();
        picked
    }

    /// All members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.entries.values().map(|e| &e.member)
    }

    /// A 64-bit FNV-1a digest of every (id, generation, incarnation, state): equal views have
    /// equal digests, so peers notice divergence without sending their views.
    pub fn digest(&self) -> u64 {
        *self.digest.get_or_init(|| self.compute_digest())
    }

    fn compute_digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for m in self.members() {
            eat(m.id.as_bytes());
            eat(&m.generation.to_le_bytes());
            eat(&m.incarnation.to_le_bytes());
            eat(m.state.as_str().as_bytes());
        }
        hash
    }

    /// The view as wire records, with "last heard" relative to `now`.
    pub fn records(&self, now: Instant) -> Vec<MemberRecord> {
        self.entries
            .values()
            .map(|e| MemberRecord {
                id: e.member.id.clone(),
                generation: e.member.generation,
                incarnation: e.member.incarnation,
                state: e.member.state,
                host: e.member.host.clone(),
                zone: e.member.zone.clone(),
                http: e.member.http.clone(),
                last_heard_ms: e
                    .last_heard
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                started_ms: e.member.started_ms,
            })
            .collect()
    }
}

impl From<&MemberRecord> for Member {
    fn from(r: &MemberRecord) -> Self {
        Member {
            id: r.id.clone(),
            generation: r.generation,
            incarnation: r.incarnation,
            state: r.state,
            host: r.host.clone(),
            zone: r.zone.clone(),
            http: r.http.clone(),
            started_ms: r.started_ms,
        }
    }
}

#[cfg(test)]
mod tests;
