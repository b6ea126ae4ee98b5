//! Control of one node, on `idunno.v1.nodes.<id>.ctl.<op>` (request/reply).

use crate::codec::Message;
use crate::membership::MemberRecord;
use serde::{Deserialize, Serialize};

/// A command for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Reply `done` at once: is the node's process there (a cheap liveness probe)?
    Ping,
    /// Reply with the node's membership view.
    Members,
    /// Reply with the node's statistics.
    Stat,
    /// Drop this fraction (0 to 1) of the node's incoming failure-detector messages.
    DropRate {
        /// The fraction to drop.
        rate: f64,
    },
    /// Empty the node's log files.
    ClearLog,
    /// Leave the cluster (the process keeps running and can join again).
    Leave,
    /// Join the cluster again with a new generation, after a leave.
    Join,
    /// Reply with the figures of the arms of `model`'s rollouts this node answered.
    Rollout {
        /// The model.
        model: String,
    },
}

impl ControlRequest {
    /// The operation: the last token of its subject ([`crate::subjects::node_control`]) and
    /// the payload's `op`.
    pub fn op(&self) -> &'static str {
        match self {
            ControlRequest::Ping => "ping",
            ControlRequest::Members => "members",
            ControlRequest::Stat => "stat",
            ControlRequest::DropRate { .. } => "drop_rate",
            ControlRequest::ClearLog => "clear_log",
            ControlRequest::Leave => "leave",
            ControlRequest::Join => "join",
            ControlRequest::Rollout { .. } => "rollout",
        }
    }
}

impl Message for ControlRequest {
    const NAME: &'static str = "control request";
}

/// A node's counters and rates, for `idunno stat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node id.
    pub node: String,
    /// The node's current generation.
    pub generation: u64,
    /// The node's current incarnation.
    pub incarnation: u64,
    /// Whether the node is a member now (false after `leave`).
    pub member: bool,
    /// Milliseconds since the process started.
    pub uptime_ms: u64,
    /// Bytes received from the bus, in all.
    pub bytes_in: u64,
    /// Bytes sent to the bus, in all.
    pub bytes_out: u64,
    /// Messages received from the bus, in all.
    pub msgs_in: u64,
    /// Messages sent to the bus, in all.
    pub msgs_out: u64,
    /// Bytes received per second over the last few seconds.
    pub bytes_in_per_s: f64,
    /// Bytes sent per second over the last few seconds.
    pub bytes_out_per_s: f64,
    /// Messages received per second over the last few seconds.
    pub msgs_in_per_s: f64,
    /// Messages sent per second over the last few seconds.
    pub msgs_out_per_s: f64,
    /// Membership messages (failure detector, events, view syncs) received, in all.
    pub member_msgs_in: u64,
    /// Membership messages sent, in all.
    pub member_msgs_out: u64,
    /// Direct probes sent.
    pub probes_sent: u64,
    /// Members this node declared failed.
    pub failures_detected: u64,
    /// Malformed payloads received and dropped.
    pub garbage_dropped: u64,
    /// Incoming failure-detector messages dropped on purpose (`droprate`).
    pub fd_dropped: u64,
    /// Membership messages (or view records) refused as implausible or beyond a limit.
    #[serde(default)]
    pub membership_refused: u64,
    /// The current simulated loss rate.
    pub drop_rate: f64,
    /// Models this node's inference engine holds in memory (`name vN`).
    #[serde(default)]
    pub cached_models: Vec<String>,
    /// What the node runs on (absent from nodes older than this field).
    #[serde(default)]
    pub resources: Option<NodeResources>,
}

/// A node's resources at one moment, as `ray status` shows them: what `idunno workers`, the
/// Workers page and `/metrics` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResources {
    /// CPU the node's process used over the last 5 s, in cores (1.0: one core busy).
    pub cpu_cores: f64,
    /// CPUs the process may run on.
    pub cpus: u32,
    /// Resident memory of the process, bytes.
    pub rss_bytes: u64,
    /// Free bytes on the file system of the node's data directory (0: unknown).
    pub disk_free_bytes: u64,
    /// Size of that file system, bytes (0: unknown).
    pub disk_total_bytes: u64,
    /// Threads libtorch computes with (`--threads`).
    pub tch_threads: u32,
    /// The device models run on: `cpu` or `cuda`.
    pub device: String,
}

/// What a node answers to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    /// The node's membership view.
    Members {
        /// The node that answered.
        node: String,
        /// The node currently coordinating, once there is one.
        #[serde(default)]
        coordinator: Option<String>,
        /// Every member the node knows.
        members: Vec<MemberRecord>,
    },
    /// The node's statistics.
    Stats {
        /// The counters.
        stats: NodeStats,
    },
    /// The figures of a model's rollout arms on the node.
    Rollout {
        /// The node that answered.
        node: String,
        /// One per arm (of each rollout the node still has figures of).
        figures: Vec<crate::models::ArmFigures>,
    },
    /// The command was carried out.
    Done {
        /// The node that answered.
        node: String,
        /// One line saying what changed.
        message: String,
    },
    /// The command was refused; nothing changed.
    Error {
        /// The node that answered.
        node: String,
        /// What kind of error, for callers to match.
        kind: ControlErrorKind,
        /// One clear sentence.
        message: String,
    },
}

impl Message for ControlReply {
    const NAME: &'static str = "control reply";
}

/// Kinds of refused control commands. Readers of an older version see kinds added later as
/// [`ControlErrorKind::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlErrorKind {
    /// The request could not be decoded.
    BadRequest,
    /// An argument is out of range.
    InvalidArgument,
    /// The command does not apply in the node's current state (e.g. join while a member).
    WrongState,
    /// The node failed to carry out the command (e.g. an I/O error).
    Internal,
    /// A kind this reader does not know (a newer writer's).
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::round_trip;

    #[test]
    fn every_request_round_trips() {
        for req in [
            ControlRequest::Members,
            ControlRequest::Stat,
            ControlRequest::Ping,
            ControlRequest::DropRate { rate: 0.3 },
            ControlRequest::ClearLog,
            ControlRequest::Leave,
            ControlRequest::Join,
        ] {
            round_trip(req);
        }
    }

    #[test]
    fn every_reply_round_trips() {
        round_trip(ControlReply::Members {
            node: "n".into(),
            coordinator: Some("c".into()),
            members: vec![],
        });
        round_trip(ControlReply::Stats {
            stats: NodeStats {
                node: "n".into(),
                drop_rate: 0.03,
                probes_sent: 5,
                resources: Some(NodeResources {
                    cpu_cores: 0.25,
                    cpus: 2,
                    rss_bytes: 1 << 30,
                    disk_free_bytes: 5 << 30,
                    disk_total_bytes: 10 << 30,
                    tch_threads: 1,
                    device: "cpu".into(),
                }),
                ..NodeStats::default()
            },
        });
        round_trip(ControlReply::Done {
            node: "n".into(),
            message: "ok".into(),
        });
        round_trip(ControlReply::Error {
            node: "n".into(),
            kind: ControlErrorKind::WrongState,
            message: "no".into(),
        });
    }
}
