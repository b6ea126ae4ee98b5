//! SDFS messages: metadata requests to any node, replica stores, and chunked reads.

use crate::codec::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One stored version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Version number, rising from 1 for each name.
    pub version: u64,
    /// The id of the bytes on the replicas.
    pub blob: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    /// Nodes holding a verified, fsynced copy.
    pub replicas: Vec<String>,
    /// Commit time, milliseconds since the epoch.
    pub created_ms: u64,
    /// Replicas this version should have, if not the cluster's replication factor.
    #[serde(default)]
    pub replication: Option<u32>,
    /// User metadata given at put (like an object store's object metadata): models record
    /// their architecture, dataset and accuracy here.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
}

/// A file and its kept versions (oldest first), as stored in the metadata bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The SDFS name.
    pub name: String,
    /// Kept versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Versions never pruned while listed here (those a model alias or rollout names; see
    /// [`SdfsRequest::Pin`]); a file with pinned versions is not deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<u64>,
}

impl Message for FileInfo {
    const NAME: &'static str = "SDFS file metadata";
}

impl FileInfo {
    /// The newest version.
    pub fn latest(&self) -> Option<&VersionInfo> {
        self.versions.last()
    }

    /// Bytes of the newest version of every file in `files` whose name starts with `prefix`
    /// (one copy; `""` for all).
    pub fn newest_bytes(files: &[FileInfo], prefix: &str) -> u64 {
        files
            .iter()
            .filter(|f| f.name.starts_with(prefix))
            .filter_map(FileInfo::latest)
            .map(|v| v.size)
            .sum()
    }
}

/// A metadata request to any node (`idunno.v1.sdfs.rpc.<op>`, queue group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SdfsRequest {
    /// Plan a put: choose the replicas and a blob id.
    Prepare {
        /// The SDFS name.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Hex sha256 of the bytes.
        sha256: String,
        /// Replicas wanted for this put (default: the cluster's replication factor).
        #[serde(default)]
        replication: Option<u32>,
    },
    /// Store a prepared blob on its replicas and record the version (a client's put after
    /// `Prepare`): the answering node asks each replica to pull the bytes from the blob's
    /// upload subject, which the writer serves meanwhile, and commits the version with the
    /// replicas that stored it once the write quorum did. Answered with `committed`. Clients
    /// never send `store` or `commit` themselves, so the NATS permissions of a non-node
    /// identity need not allow them.
    Write {
        /// The SDFS name.
        name: String,
        /// The blob id from `Prepare`.
        blob: String,
        /// Size in bytes.
        size: u64,
        /// Hex sha256 of the bytes.
        sha256: String,
        /// The replicas `Prepare` chose.
        replicas: Vec<String>,
        /// The chunk size `Prepare` gave.
        chunk_size: u64,
        /// The replication asked for at `Prepare`, if not the cluster's.
        #[serde(default)]
        replication: Option<u32>,
        /// User metadata to keep with the version.
        #[serde(default)]
        attrs: BTreeMap<String, String>,
        /// When the writer started the put (ms since the epoch), kept in the replicas' labels.
        #[serde(default)]
        created_ms: u64,
    },
    /// Record a version whose bytes the given replicas stored (nodes only: the node that
    /// answers a `write` commits this way).
    Commit {
        /// The SDFS name.
        name: String,
        /// The blob id from `Prepare`.
        blob: String,
        /// Size in bytes.
        size: u64,
        /// Hex sha256.
        sha256: String,
        /// The replicas that acknowledged.
        replicas: Vec<String>,
        /// The replication asked for at `Prepare`, if not the cluster's.
        #[serde(default)]
        replication: Option<u32>,
        /// User metadata to keep with the version.
        #[serde(default)]
        attrs: BTreeMap<String, String>,
    },
    /// Where a version (the newest if `version` is absent) is stored.
    Locate {
        /// The SDFS name.
        name: String,
        /// The version, or the newest.
        #[serde(default)]
        version: Option<u64>,
    },
    /// The file named `name`, or every file under the directory `name`.
    Ls {
        /// A name or a directory prefix.
        name: String,
        /// At most this many files (default and largest: [`crate::jobs::MAX_PAGE`]).
        #[serde(default)]
        limit: Option<u32>,
        /// Continue after this name (the `next` of the page before).
        #[serde(default)]
        after: Option<String>,
    },
    /// Delete a file and all its versions.
    Delete {
        /// The SDFS name.
        name: String,
    },
    /// Delete every file under a directory.
    DelDir {
        /// The directory.
        dir: String,
    },
    /// Put versions back into a file's metadata (`idunno fsck --rebuild`): each version whose
    /// blob the file does not list yet is added, keeping its number unless another blob has it.
    Restore {
        /// The SDFS name.
        name: String,
        /// The versions, with the nodes that hold them as replicas.
        versions: Vec<VersionInfo>,
    },
    /// Changes the versions of a file that are never pruned (nodes only: they pin what model
    /// routes name): `unpin` leaves the set, then `pin` joins it (each of those must exist).
    /// Adding and removing, rather than setting, lets two writers pin their own versions at
    /// once without undoing each other's.
    Pin {
        /// The SDFS name.
        name: String,
        /// Versions to pin.
        #[serde(default)]
        pin: Vec<u64>,
        /// Versions to unpin.
        #[serde(default)]
        unpin: Vec<u64>,
    },
    /// A reader found a replica's bytes corrupt: drop it from the version so it is repaired.
    ReportCorrupt {
        /// The SDFS name.
        name: String,
        /// The version's blob.
        blob: String,
        /// The node whose copy was bad.
        node: String,
    },
}

impl SdfsRequest {
    /// The operation: the last token of its subject ([`crate::subjects::sdfs_rpc`]) and the
    /// payload's `op`.
    pub fn op(&self) -> &'static str {
        match self {
            SdfsRequest::Prepare { .. } => "prepare",
            SdfsRequest::Write { .. } => "write",
            SdfsRequest::Commit { .. } => "commit",
            SdfsRequest::Locate { .. } => "locate",
            SdfsRequest::Ls { .. } => "ls",
            SdfsRequest::Delete { .. } => "delete",
            SdfsRequest::DelDir { .. } => "del_dir",
            SdfsRequest::Restore { .. } => "restore",
            SdfsRequest::ReportCorrupt { .. } => "report_corrupt",
            SdfsRequest::Pin { .. } => "pin",
        }
    }
}

impl Message for SdfsRequest {
    const NAME: &'static str = "SDFS request";
}

/// Kinds of SDFS errors, for callers to match. No error leaves a half-written version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdfsErrorKind {
    /// The request could not be decoded.
    BadRequest,
    /// The name breaks the grammar; nothing was written.
    BadName,
    /// No such file or version.
    NotFound,
    /// No live node can take the file.
    NoReplicas,
    /// Fewer replicas than the write quorum stored the bytes; nothing was committed.
    QuorumNotMet,
    /// The bytes did not match their sha256.
    Corrupt,
    /// A storage or bus error on the node.
    Internal,
    /// A value is beyond a documented limit; nothing changed.
    Limit,
    /// The node has no room for the request now (all its slots are busy); try again later.
    Overloaded,
    /// The file has versions a model alias or rollout names (pinned): remove the alias first.
    Pinned,
    /// A kind this build does not know (sent by a newer node).
    #[serde(other)]
    Unknown,
}

/// A node's answer to an [`SdfsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum SdfsReply {
    /// The put plan.
    Prepared {
        /// The blob id to store the bytes under.
        blob: String,
        /// The replicas to store on, best first.
        replicas: Vec<String>,
        /// How many replicas must acknowledge before the commit.
        write_quorum: u32,
        /// Chunk size to transfer with.
        chunk_size: u64,
    },
    /// The committed version.
    Committed {
        /// The SDFS name.
        name: String,
        /// The new version number.
        version: u64,
    },
    /// A version and where it is.
    Located {
        /// The SDFS name.
        name: String,
        /// The version.
        version: VersionInfo,
    },
    /// Files found.
    Listing {
        /// Files with their versions.
        files: Vec<FileInfo>,
        /// Where the next page starts, when there is one (absent from older nodes, whose
        /// listings were whole).
        #[serde(default)]
        next: Option<String>,
    },
    /// Versions put back by [`SdfsRequest::Restore`].
    Restored {
        /// The SDFS name.
        name: String,
        /// Versions added.
        added: u64,
    },
    /// The versions pinned now.
    Pinned {
        /// The SDFS name.
        name: String,
        /// The versions.
        versions: Vec<u64>,
    },
    /// How many files were deleted.
    Deleted {
        /// Files deleted.
        count: u64,
    },
    /// The request failed; nothing changed.
    Error {
        /// What kind of error.
        kind: SdfsErrorKind,
        /// One clear sentence.
        message: String,
    },
}

impl Message for SdfsReply {
    const NAME: &'static str = "SDFS reply";
}

/// To a replica (`idunno.v1.sdfs.node.<id>.store`): fetch a blob from `source` by chunk
/// requests, verify it, fsync it, keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRequest {
    /// The blob id.
    pub blob: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 the bytes must have.
    pub sha256: String,
    /// Subject answering [`ChunkRequest`]s for the blob.
    pub source: String,
    /// Bytes per chunk request.
    pub chunk_size: u64,
    /// What the blob is (name, version...), kept beside it so that lost metadata can be rebuilt.
    #[serde(default)]
    pub label: Option<crate::fsck::BlobLabel>,
}

impl Message for StoreRequest {
    const NAME: &'static str = "SDFS store request";
}

/// A replica's answer to a [`StoreRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReply {
    /// The replica.
    pub node: String,
    /// The blob.
    pub blob: String,
    /// Error, if the blob was not stored (nothing is kept then).
    #[serde(default)]
    pub error: Option<String>,
    /// The error's kind (`limit`, `overloaded`...), when there is one.
    #[serde(default)]
    pub kind: Option<SdfsErrorKind>,
}

impl Message for StoreReply {
    const NAME: &'static str = "SDFS store reply";
}

/// Ask for bytes `offset..offset+len` of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The blob id.
    pub blob: String,
    /// First byte.
    pub offset: u64,
    /// Bytes wanted.
    pub len: u64,
}

impl Message for ChunkRequest {
    const NAME: &'static str = "SDFS chunk request";
}

/// Bytes of a blob (fewer than asked at its end), or an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The blob id.
    pub blob: String,
    /// Offset of `data`.
    pub offset: u64,
    /// The bytes.
    #[serde(with = "crate::bytes_field")]
    pub data: Vec<u8>,
    /// Why no bytes were sent.
    #[serde(default)]
    pub error: Option<String>,
}

impl Message for Chunk {
    const NAME: &'static str = "SDFS chunk";
}

impl crate::fsck::BlobLabel {
    /// The label of a committed version.
    pub fn of(name: &str, v: &VersionInfo) -> Self {
        Self {
            name: name.to_string(),
            version: Some(v.version),
            size: v.size,
            sha256: v.sha256.clone(),
            created_ms: v.created_ms,
            replication: v.replication,
            attrs: v.attrs.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
