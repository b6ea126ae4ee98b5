//! `idunno fsck`: compares what every live node holds (its inventory, with each blob's label)
//! with the metadata, and reports orphans (held blobs no version names), under-replicated and
//! unreadable versions, and the nodes that keep blobs in quarantine. `--rebuild` puts the
//! orphans' versions back into the metadata from their labels.

use crate::request::{request, RequestError};
use crate::sdfs::{SdfsClient, SdfsError};
use bus_schemas::fsck::{BlobLabel, HeldBlob, InventoryReply, InventoryRequest};
use bus_schemas::membership::{ViewRequest, ViewSnapshot};
use bus_schemas::sdfs::{FileInfo, SdfsReply, SdfsRequest, VersionInfo};
use bus_schemas::subjects;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use thiserror::Error;

/// Most inventory pages read from one node (each holds up to 512 KiB of labels).
const MAX_PAGES: usize = 100_000;

/// Why `fsck` could not run.
#[derive(Debug, Error)]
pub enum FsckError {
    /// The bus failed (no members list, for one).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The metadata could not be listed or changed.
    #[error(transparent)]
    Sdfs(#[from] SdfsError),
}

/// What one node said of itself.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    /// The node.
    pub node: String,
    /// Whether it trusts the metadata (collects unnamed blobs).
    pub trusted: bool,
    /// Blobs it keeps in quarantine.
    pub quarantined: u64,
    /// Blobs it holds.
    pub blobs: usize,
}

/// A blob held by some nodes that no version names.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// The blob id.
    pub blob: String,
    /// Bytes.
    pub size: u64,
    /// Nodes holding it.
    pub holders: Vec<String>,
    /// What it is, if a holder has its label.
    pub label: Option<BlobLabel>,
}

/// A version with fewer good replicas than it wants.
#[derive(Debug, Clone, Serialize)]
pub struct VersionIssue {
    /// The SDFS name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// Live nodes holding its bytes (at the right size).
    pub holders: Vec<String>,
    /// Replicas it should have now.
    pub target: usize,
}

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    /// Every node that answered.
    pub nodes: Vec<NodeSummary>,
    /// Alive nodes that did not answer (their blobs are not counted).
    pub unreachable: Vec<String>,
    /// Files in the metadata.
    pub files: usize,
    /// Versions in the metadata.
    pub versions: usize,
    /// Held blobs no version names.
    pub orphans: Vec<Orphan>,
    /// Versions with some but too few holders.
    pub under_replicated: Vec<VersionIssue>,
    /// Versions no live node holds.
    pub unreadable: Vec<VersionIssue>,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.orphans.is_empty()
            && self.under_replicated.is_empty()
            && self.unreadable.is_empty()
            && self.unreachable.is_empty()
            && self.nodes.iter().all(|n| n.trusted)
    }
}

/// What `--rebuild` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildOutcome {
    /// Files whose metadata got versions back.
    pub files: usize,
    /// Versions put back.
    pub versions: u64,
    /// Orphans without a label (nothing says what they are): left in quarantine.
    pub unlabelled: usize,
}

/// Reads every alive node's inventory and the metadata, and compares them.
pub async fn check(
    client: &async_nats::Client,
    sdfs: &SdfsClient,
    replication: usize,
    timeout: Duration,
) -> Result<FsckReport, FsckError> {
    let req = ViewRequest {
        from: "fsck".into(),
    };
    let view: ViewSnapshot = request(client, subjects::members_list(), &req, timeout).await?;
    let alive = view.alive_ids();
    let mut report = FsckReport::default();
    let mut held: BTreeMap<String, (u64, Vec<String>, Option<BlobLabel>)> = BTreeMap::new();
    for node in &alive {
        match inventory(client, node, timeout).await {
            Some((summary, blobs)) => {
                for b in blobs {
                    let entry = held.entry(b.blob).or_insert((b.size, Vec::new(), None));
                    entry.1.push(node.clone());
                    if entry.2.is_none() {
                        entry.2 = b.label;
                    }
                }
                report.nodes.push(summary);
            }
            None => report.unreachable.push(node.clone()),
        }
    }
    let files = sdfs.ls("").await?;
    compare(
        &mut report,
        &files,
        &held,
        replication.min(alive.len()).max(1),
    );
    Ok(report)
}

/// Fills the report's file figures, orphans and version issues.
fn compare(
    report: &mut FsckReport,
    files: &[FileInfo],
    held: &BTreeMap<String, (u64, Vec<String>, Option<BlobLabel>)>,
    cluster_target: usize,
) {
    let mut named = BTreeSet::new();
    report.files = files.len();
    for file in files {
        for v in &file.versions {
            report.versions += 1;
            named.insert(v.blob.as_str());
            let holders = held
                .get(&v.blob)
                .filter(|(size, ..)| *size == v.size)
                .map(|(_, nodes, _)| nodes.clone())
                .unwrap_or_default();
            let target = v
                .replication
                .map_or(cluster_target, |r| (r as usize).clamp(1, cluster_target));
            let issue = VersionIssue {
                name: file.name.clone(),
                version: v.version,
                holders,
                target,
            };
            if issue.holders.is_empty() {
                report.unreadable.push(issue);
            } else if issue.holders.len() < target {
                report.under_replicated.push(issue);
            }
        }
    }
    for (blob, (size, holders, label)) in held {
        if !named.contains(blob.as_str()) {
            report.orphans.push(Orphan {
                blob: blob.clone(),
                size: *size,
                holders: holders.clone(),
                label: label.clone(),
            });
        }
    }
}

/// Every page of one node's inventory, or `None` if it does not answer.
async fn inventory(
    client: &async_nats::Client,
    node: &str,
    timeout: Duration,
) -> Option<(NodeSummary, Vec<HeldBlob>)> {
    let mut after = None;
    let mut blobs = Vec::new();
    let mut last = None;
    for _ in 0..MAX_PAGES {
        let req = InventoryRequest { after };
        let subject = subjects::sdfs_inventory(node);
        let page: InventoryReply = request(client, subject, &req, timeout).await.ok()?;
        if page.error.is_some() {
            return None;
        }
        blobs.extend(page.blobs);
        after = page.next_after.clone();
        last = Some((page.trusted, page.quarantined));
        if after.is_none() {
            break;
        }
    }
    let (trusted, quarantined) = last?;
    let summary = NodeSummary {
        node: node.to_string(),
        trusted,
        quarantined,
        blobs: blobs.len(),
    };
    Some((summary, blobs))
}

/// Puts every labelled orphan's version back into the metadata, with its holders as replicas.
pub async fn rebuild(sdfs: &SdfsClient, report: &FsckReport) -> Result<RebuildOutcome, FsckError> {
    let mut by_name: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
    let mut outcome = RebuildOutcome::default();
    for orphan in &report.orphans {
        let Some(label) = &orphan.label else {
            outcome.unlabelled += 1;
            continue;
        };
        by_name
            .entry(label.name.clone())
            .or_default()
            .push(VersionInfo {
                version: label.version.unwrap_or(0),
                blob: orphan.blob.clone(),
                size: label.size,
                sha256: label.sha256.clone(),
                replicas: orphan.holders.clone(),
                created_ms: label.created_ms,
                replication: label.replication,
                attrs: label.attrs.clone(),
            });
    }
    for (name, versions) in by_name {
        for part in versions.chunks(bus_schemas::sdfs_limits::MAX_RESTORE_VERSIONS) {
            let req = SdfsRequest::Restore {
                name: name.clone(),
                versions: part.to_vec(),
            };
            if let SdfsReply::Restored { added, .. } = sdfs.request(&req).await? {
                outcome.versions += added;
            }
        }
        outcome.files += 1;
    }
    Ok(outcome)
}
