//! The membership view and its merge rule (sans-IO).
//!
//! Records are ordered like SWIM's: a higher generation supersedes anything of a lower one;
//! within a generation, `failed` and `left` are final, `suspect` beats `alive` of the same or
//! a lower incarnation, and `alive` beats `suspect` only with a higher incarnation. Because the
//! rule is a join over that order, applying the same records in any order gives the same view.

use bus_schemas::membership::{MemberRecord, MemberState};
use std::collections::BTreeMap;
use std::time::Instant;

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
    /// Dashboard address.
    pub http: Option<String>,
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
}

/// Every member a node knows, including failed and left ones.
#[derive(Debug, Clone, Default)]
pub struct View {
    entries: BTreeMap<String, Entry>,
}

impl View {
    /// Applies `member` if it supersedes what the view holds; returns whether it changed.
    pub fn apply(&mut self, member: Member) -> bool {
        match self.entries.get_mut(&member.id) {
            Some(entry) if !member.supersedes(&entry.member) => false,
            Some(entry) => {
                if entry.member.generation != member.generation {
                    entry.last_heard = None;
                }
                entry.member = member;
                true
            }
            None => {
                let id = member.id.clone();
                let entry = Entry {
                    member,
                    last_heard: None,
                };
                self.entries.insert(id, entry);
                true
            }
        }
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

    /// Ids of live (alive or suspect) members other than `me`.
    pub fn live_peers(&self, me: &str) -> Vec<String> {
        self.entries
            .values()
            .filter(|e| e.member.id != me && e.member.is_live())
            .map(|e| e.member.id.clone())
            .collect()
    }

    /// Ids of alive members other than `me` and `except`.
    pub fn alive_peers_except(&self, me: &str, except: &str) -> Vec<String> {
        self.entries
            .values()
            .map(|e| &e.member)
            .filter(|m| m.id != me && m.id != except && m.state == MemberState::Alive)
            .map(|m| m.id.clone())
            .collect()
    }

    /// All members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.entries.values().map(|e| &e.member)
    }

    /// A 64-bit FNV-1a digest of every (id, generation, incarnation, state): equal views have
    /// equal digests, so peers notice divergence without sending their views.
    pub fn digest(&self) -> u64 {
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
                http: e.member.http.clone(),
                last_heard_ms: e
                    .last_heard
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
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
            http: r.http.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;

    fn m(generation: u64, incarnation: u64, state: MemberState) -> Member {
        Member {
            id: "a".into(),
            generation,
            incarnation,
            state,
            host: String::new(),
            http: None,
        }
    }

    #[test]
    fn swim_order_within_a_generation() {
        assert!(m(1, 0, Suspect).supersedes(&m(1, 0, Alive)));
        assert!(!m(1, 0, Alive).supersedes(&m(1, 0, Suspect)));
        assert!(m(1, 1, Alive).supersedes(&m(1, 0, Suspect)));
        assert!(m(1, 0, Failed).supersedes(&m(1, 5, Alive)));
        assert!(!m(1, 9, Alive).supersedes(&m(1, 0, Failed)));
        assert!(!m(1, 0, Failed).supersedes(&m(1, 0, Left)));
    }

    #[test]
    fn a_new_generation_beats_a_final_state() {
        assert!(m(2, 0, Alive).supersedes(&m(1, 0, Failed)));
        assert!(!m(1, 0, Failed).supersedes(&m(2, 0, Alive)));
    }

    #[test]
    fn last_heard_belongs_to_one_generation() {
        let mut view = View::default();
        let now = Instant::now();
        view.apply(m(1, 0, Alive));
        view.heard_from("a", now);
        assert_eq!(view.records(now)[0].last_heard_ms, Some(0));
        view.apply(m(1, 1, Alive));
        assert_eq!(view.records(now)[0].last_heard_ms, Some(0));
        view.apply(m(2, 0, Alive));
        assert_eq!(view.records(now)[0].last_heard_ms, None);
    }

    #[test]
    fn merge_is_order_independent() {
        let updates = [
            m(1, 0, Alive),
            m(1, 0, Suspect),
            m(1, 1, Alive),
            m(1, 1, Failed),
            m(2, 0, Alive),
        ];
        let mut forward = View::default();
        let mut backward = View::default();
        for u in updates.iter() {
            forward.apply(u.clone());
        }
        for u in updates.iter().rev() {
            backward.apply(u.clone());
        }
        assert_eq!(forward.get("a"), backward.get("a"));
        assert_eq!(forward.digest(), backward.digest());
        assert_eq!(forward.get("a").unwrap().generation, 2);
    }
}
