//! The cluster's JetStream replication, on `idunno.v1.cluster.rpc.<op>` (any node answers): how many
//! copies the NATS cluster keeps of IDunno's buckets and streams, and whether each copy is
//! current.
//!
//! The number is one cluster-wide setting (key `cluster` of the `idunno-settings` bucket,
//! [`crate::jobs::Settings::replicas`]): automatic by default, which is min(3, the servers of the
//! NATS cluster), or a number an operator set. Every node raises a bucket or stream below it.

use crate::codec::Message;
use serde::{Deserialize, Serialize};

/// The most copies a setting may ask for (JetStream's own limit).
pub const MAX_REPLICAS: u8 = 5;

/// A request on `idunno.v1.cluster.rpc.<op>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterRequest {
    /// The servers, the setting, and every bucket and stream with its copies.
    Status,
    /// Sets the replication (1 to [`MAX_REPLICAS`]), or makes it automatic again (`None`);
    /// answers the status once the buckets and streams were changed.
    Replicas {
        /// Copies, or automatic.
        replicas: Option<u8>,
    },
    /// Takes a server out of every bucket and stream before it is removed for good:
    /// JetStream places each copy it held on another server (if there is one) and catches it
    /// up; answers the status.
    RemoveServer {
        /// The server's name (`server_name` in its config).
        server: String,
    },
}

impl ClusterRequest {
    /// The operation: the last token of its subject ([`crate::subjects::cluster_rpc`]) and the
    /// payload's `op`.
    pub fn op(&self) -> &'static str {
        match self {
            ClusterRequest::Status => "status",
            ClusterRequest::Replicas { .. } => "replicas",
            ClusterRequest::RemoveServer { .. } => "remove_server",
        }
    }
}

impl Message for ClusterRequest {
    const NAME: &'static str = "cluster request";
}

/// One copy of a bucket or stream, on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    /// The server's name.
    pub server: String,
    /// Whether it holds the leader's copy (the leader's always does).
    pub current: bool,
    /// Whether the server is unreachable.
    pub offline: bool,
    /// Operations it is behind the leader.
    pub lag: u64,
}

/// One of IDunno's buckets or streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// The bucket's or stream's name.
    pub name: String,
    /// `kv` or `stream`.
    pub kind: String,
    /// Copies configured (0 if it could not be read).
    pub replicas: u8,
    /// The server of the leader's copy.
    pub leader: Option<String>,
    /// Every copy, the leader's first.
    pub copies: Vec<Copy>,
    /// Why it could not be read or changed, if so.
    pub error: Option<String>,
}

impl Asset {
    /// Whether it has `wanted` copies, all current.
    pub fn healthy(&self, wanted: u8) -> bool {
        self.error.is_none()
            && self.replicas >= wanted
            && self.copies.iter().all(|c| c.current && !c.offline)
    }
}

/// What the cluster keeps, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// The nats-server that node is connected to.
    pub server: String,
    /// The NATS cluster's name (`None`: a server on its own).
    pub cluster: Option<String>,
    /// The client addresses of the cluster's servers, as that server advertises them.
    pub servers: Vec<String>,
    /// The replication an operator set (`None`: automatic).
    pub replicas_set: Option<u8>,
    /// The replication in force.
    pub replicas: u8,
    /// IDunno's buckets and streams.
    pub assets: Vec<Asset>,
}

/// The answer on `idunno.v1.cluster.rpc.<op>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ClusterReply {
    /// The status.
    Status {
        /// The status.
        status: ClusterStatus,
    },
    /// Refused (a bad number) or failed (JetStream did not answer).
    Error {
        /// Why, in one sentence.
        message: String,
    },
}

impl Message for ClusterReply {
    const NAME: &'static str = "cluster reply";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn requests_and_replies_round_trip() {
        for req in [
            ClusterRequest::Status,
            ClusterRequest::Replicas { replicas: Some(3) },
            ClusterRequest::Replicas { replicas: None },
        ] {
            assert_eq!(
                decode::<ClusterRequest>(&encode(&req).unwrap()).unwrap(),
                req
            );
        }
        let asset = Asset {
            name: "idunno-sdfs".into(),
            kind: "kv".into(),
            replicas: 3,
            leader: Some("a".into()),
            copies: vec![Copy {
                server: "b".into(),
                current: false,
                offline: true,
                lag: 7,
            }],
            error: None,
        };
        assert!(!asset.healthy(3), "a copy is offline");
        let reply = ClusterReply::Status {
            status: ClusterStatus {
                node: "n1".into(),
                server: "a".into(),
                cluster: Some("idunno".into()),
                servers: vec!["10.0.0.1:4222".into()],
                replicas_set: None,
                replicas: 3,
                assets: vec![asset],
            },
        };
        assert_eq!(
            decode::<ClusterReply>(&encode(&reply).unwrap()).unwrap(),
            reply
        );
    }
}
