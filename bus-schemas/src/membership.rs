//! Membership messages: failure-detector traffic, public member events, view snapshots.

use crate::codec::Message;
use serde::{Deserialize, Serialize};

pub mod plausible;

pub use plausible::{Clock, Implausible};

/// What a node's view says of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe round; declared failed unless it refutes in time.
    Suspect,
    /// Declared failed; a new generation of the node may join again.
    Failed,
    /// Left the cluster on purpose (SIGTERM, SIGINT or `idunno leave`).
    Left,
}

impl MemberState {
    /// The lower-case name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Failed => "failed",
            MemberState::Left => "left",
        }
    }
}

/// One member as a node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The node id (`--id`).
    pub id: String,
    /// New at each start or rejoin of the node (milliseconds since the epoch, strictly rising).
    pub generation: u64,
    /// SWIM incarnation: bumped by the node to refute a suspicion.
    pub incarnation: u64,
    /// The member's state in this view.
    pub state: MemberState,
    /// The host the node runs on.
    #[serde(default)]
    pub host: String,
    /// The node's zone (a rack, a room, a data centre), if it names one (`--zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The node's dashboard address, if it serves one.
    #[serde(default)]
    pub http: Option<String>,
    /// Milliseconds since the answering node last heard from this member directly.
    #[serde(default)]
    pub last_heard_ms: Option<u64>,
    /// When the node's process started (its first generation): the same across the rejoins
    /// of one process, new when the process restarts. Absent from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
}

impl MemberRecord {
    /// The member with where it runs.
    pub fn placed(&self) -> Placed {
        Placed {
            id: self.id.clone(),
            host: self.host.clone(),
            zone: self.zone.clone().unwrap_or_default(),
        }
    }
}

/// A member and where it runs, for placement: its host and its zone (empty if it names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The node id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its zone, or empty.
    pub zone: String,
}

/// A failure-detector message, sent to `idunno.v1.members.fd.<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FdMessage {
    /// "Are you alive?" The receiver answers with an [`FdMessage::Ack`] to `from`.
    Ping {
        /// The sender's id.
        from: String,
        /// The sender's generation.
        from_generation: u64,
        /// Matches the answer to the probe.
        seq: u64,
        /// Digest of the sender's view, to notice divergent views cheaply.
        digest: u64,
    },
    /// "Please ping `target` for me": the indirect probe of SWIM.
    PingReq {
        /// The asking node's id.
        from: String,
        /// The asking node's generation.
        from_generation: u64,
        /// The asking node's probe sequence number, echoed in the forwarded ack.
        seq: u64,
        /// The node to probe.
        target: String,
    },
    /// "`target` is alive", answering a ping, or forwarded for a ping-req.
    Ack {
        /// The sender's id.
        from: String,
        /// The sender's generation.
        from_generation: u64,
        /// The probe's sequence number.
        seq: u64,
        /// The node that answered the probe.
        target: String,
        /// The generation of `target`.
        target_generation: u64,
        /// Digest of the sender's view.
        digest: u64,
    },
}

impl Message for FdMessage {
    const NAME: &'static str = "failure-detector message";
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberEventKind {
    /// A node (a new generation of it) joined.
    Join,
    /// A node refuted a suspicion (its incarnation rose).
    Alive,
    /// A node missed a probe round.
    Suspect,
    /// A node was declared failed.
    Fail,
    /// A node left on purpose.
    Leave,
}

impl MemberEventKind {
    /// The member state this event puts the node in.
    pub fn state(self) -> MemberState {
        match self {
            MemberEventKind::Join | MemberEventKind::Alive => MemberState::Alive,
            MemberEventKind::Suspect => MemberState::Suspect,
            MemberEventKind::Fail => MemberState::Failed,
            MemberEventKind::Leave => MemberState::Left,
        }
    }
}

/// Published on `idunno.v1.members.events` (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEvent {
    /// What happened.
    pub kind: MemberEventKind,
    /// The node it happened to.
    pub node: String,
    /// That node's generation.
    pub generation: u64,
    /// That node's incarnation.
    pub incarnation: u64,
    /// That node's host.
    #[serde(default)]
    pub host: String,
    /// That node's zone, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// That node's dashboard address.
    #[serde(default)]
    pub http: Option<String>,
    /// When that node's process started (see [`MemberRecord::started_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// The node that reports the event.
    pub reporter: String,
    /// Wall-clock time of the report, milliseconds since the epoch.
    pub at_ms: u64,
}

impl Message for MemberEvent {
    const NAME: &'static str = "member event";
}

/// Asks for a node's membership view (on `idunno.v1.members.list` or a node's control subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRequest {
    /// Who asks (a node id, or `cli`).
    pub from: String,
}

impl Message for ViewRequest {
    const NAME: &'static str = "view request";
}

/// A node's whole membership view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewSnapshot {
    /// The node that answered.
    pub node: String,
    /// The node currently coordinating, once there is a coordinator.
    #[serde(default)]
    pub coordinator: Option<String>,
    /// Every member the node knows, including failed and left ones.
    pub members: Vec<MemberRecord>,
    /// How many times the answering node's view has changed since its process started: of
    /// two views from one node, the one with the higher version is the newer (0 from a node
    /// that does not say).
    #[serde(default)]
    pub version: u64,
}

/// One member's record as a node's view has it right after a change, and the view's version
/// then ([`ViewSnapshot::version`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The view's version after the change.
    pub version: u64,
    /// The member's record.
    pub member: MemberRecord,
}

impl Message for MemberChange {
    const NAME: &'static str = "member change";
}

impl Message for ViewSnapshot {
    const NAME: &'static str = "view snapshot";
}

impl ViewSnapshot {
    /// The ids of the members alive in this view.
    pub fn alive_ids(&self) -> Vec<String> {
        let alive = self
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive);
        alive.map(|m| m.id.clone()).collect()
    }

    /// The alive members with where they run.
    pub fn alive_places(&self) -> Vec<Placed> {
        let alive = self
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive);
        alive.map(MemberRecord::placed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, round_trip};

    fn record() -> MemberRecord {
        MemberRecord {
            started_ms: None,
            id: "n1".into(),
            generation: 7,
            incarnation: 2,
            state: MemberState::Suspect,
            host: "h".into(),
            zone: None,
            http: Some("127.0.0.1:8080".into()),
            last_heard_ms: Some(12),
        }
    }

    #[test]
    fn fd_messages_round_trip() {
        round_trip(FdMessage::Ping {
            from: "a".into(),
            from_generation: 1,
            seq: 2,
            digest: u64::MAX,
        });
        round_trip(FdMessage::PingReq {
            from: "a".into(),
            from_generation: 1,
            seq: 2,
            target: "b".into(),
        });
        round_trip(FdMessage::Ack {
            from: "a".into(),
            from_generation: 1,
            seq: 2,
            target: "b".into(),
            target_generation: 3,
            digest: 4,
        });
    }

    #[test]
    fn events_and_views_round_trip() {
        round_trip(MemberEvent {
            started_ms: None,
            kind: MemberEventKind::Fail,
            node: "n1".into(),
            generation: 1,
            incarnation: 0,
            host: "h".into(),
            zone: None,
            http: None,
            reporter: "n2".into(),
            at_ms: 99,
        });
        round_trip(ViewRequest { from: "cli".into() });
        round_trip(ViewSnapshot {
            node: "n2".into(),
            coordinator: None,
            members: vec![record()],
            version: 3,
        });
        round_trip(MemberChange {
            version: 4,
            member: record(),
        });
    }

    #[test]
    fn fd_message_is_tagged_by_type() {
        let bytes = encode(&FdMessage::PingReq {
            from: "a".into(),
            from_generation: 1,
            seq: 2,
            target: "b".into(),
        })
        .unwrap();
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        let tag: Tag = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(tag.kind, "ping_req");
    }
}
