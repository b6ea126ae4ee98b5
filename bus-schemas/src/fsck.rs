//! What lets SDFS survive the loss of its metadata: the epoch marker of the metadata bucket,
//! the label each node keeps beside every blob, and the per-node inventory that `idunno fsck`
//! reads (`idunno.v1.sdfs.node.<id>.inventory`).
//!
//! A node deletes a blob that no metadata names only while it trusts the metadata: the bucket
//! carries the epoch it was created with, and a node trusts it once every blob it holds is named
//! there (then it records the epoch in its data directory). A bucket created again (lost, wiped)
//! has a new epoch, so a node holding blobs keeps them in quarantine until `idunno fsck
//! --rebuild` names them again from their labels.

use crate::codec::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metadata bucket's epoch marker (KV key `epoch` of the SDFS bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaEpoch {
    /// Random, new each time the bucket is created.
    pub epoch: String,
    /// When the bucket was created, milliseconds since the epoch.
    pub created_ms: u64,
}

impl Message for MetaEpoch {
    const NAME: &'static str = "SDFS metadata epoch";
}

/// Kept beside each blob on a node's disk (`<data-dir>/sdfs/labels/<blob>`): enough to put the
/// version back into the metadata if the metadata is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLabel {
    /// The SDFS name.
    pub name: String,
    /// The version number, once the node has seen the version committed.
    #[serde(default)]
    pub version: Option<u64>,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// When the version was created (or the blob stored), milliseconds since the epoch.
    pub created_ms: u64,
    /// The replication asked for, if not the cluster's.
    #[serde(default)]
    pub replication: Option<u32>,
    /// The version's user metadata.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
}

impl Message for BlobLabel {
    const NAME: &'static str = "SDFS blob label";
}

/// Asks a node for the blobs it holds, in blob-id order after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// Start after this blob id (the previous page's `next_after`).
    #[serde(default)]
    pub after: Option<String>,
}

impl Message for InventoryRequest {
    const NAME: &'static str = "SDFS inventory request";
}

/// One blob a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBlob {
    /// The blob id.
    pub blob: String,
    /// Bytes on disk.
    pub size: u64,
    /// Its label, if the node has one that decodes.
    #[serde(default)]
    pub label: Option<BlobLabel>,
}

/// One page of a node's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReply {
    /// The node.
    pub node: String,
    /// Whether the node trusts the metadata (deletes blobs it does not name).
    pub trusted: bool,
    /// Blobs the node keeps because the metadata it cannot trust does not name them.
    pub quarantined: u64,
    /// Blobs of this page.
    pub blobs: Vec<HeldBlob>,
    /// Ask again with `after` = this for the next page; `None` on the last page.
    #[serde(default)]
    pub next_after: Option<String>,
    /// Why the node could not list its blobs.
    #[serde(default)]
    pub error: Option<String>,
}

impl Message for InventoryReply {
    const NAME: &'static str = "SDFS inventory reply";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::round_trip;

    fn label() -> BlobLabel {
        BlobLabel {
            name: "a/b".into(),
            version: Some(2),
            size: 3,
            sha256: "ab".into(),
            created_ms: 4,
            replication: None,
            attrs: BTreeMap::from([("k".into(), "v".into())]),
        }
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(MetaEpoch {
            epoch: "e".into(),
            created_ms: 1,
        });
        round_trip(label());
        round_trip(InventoryRequest { after: None });
        round_trip(InventoryReply {
            node: "n1".into(),
            trusted: false,
            quarantined: 1,
            blobs: vec![HeldBlob {
                blob: "b".into(),
                size: 3,
                label: Some(label()),
            }],
            next_after: Some("b".into()),
            error: None,
        });
    }
}
