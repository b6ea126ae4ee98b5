//! A client's put, after `prepare`: this node asks each replica to pull the blob from the
//! writer's upload subject, then commits the version with the replicas that stored it. Clients
//! never send replica stores or commits themselves, so a non-node identity's NATS permissions
//! need allow neither (docs/security.md), and no client can record replicas that hold nothing.

use super::Sdfs;
use bus_client::sdfs::{describe, store_on, store_timeout};
use bus_schemas::fsck::BlobLabel;
use bus_schemas::sdfs::{SdfsErrorKind, SdfsReply, StoreRequest, VersionInfo};
use bus_schemas::subjects;

impl Sdfs {
    /// Stores `version`'s blob on its replicas (each named once), then commits it.
    pub(super) async fn write(
        &self,
        name: &str,
        mut version: VersionInfo,
        chunk_size: u64,
        created_ms: u64,
    ) -> Result<SdfsReply, (SdfsErrorKind, String)> {
        let mut seen = std::collections::BTreeSet::new();
        version.replicas.retain(|n| seen.insert(n.clone()));
        if version.replicas.is_empty() {
            return Err((SdfsErrorKind::BadRequest, "a write names no replica".into()));
        }
        let label = BlobLabel {
            name: name.into(),
            version: None,
            size: version.size,
            sha256: version.sha256.clone(),
            created_ms,
            replication: version.replication,
            attrs: version.attrs.clone(),
        };
        let req = StoreRequest {
            blob: version.blob.clone(),
            size: version.size,
            sha256: version.sha256.clone(),
            source: subjects::sdfs_upload(&version.blob),
            chunk_size,
            label: Some(label),
        };
        let quorum = self.cfg.write_quorum.min(version.replicas.len());
        let timeout = store_timeout(self.cfg.chunk_timeout, version.size);
        let stored = store_on(&self.client, &version.replicas, &req, timeout, quorum).await;
        let ok: Vec<String> = (stored.iter())
            .filter(|(_, e)| e.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if ok.len() < quorum {
            let message = format!(
                "only {} of {quorum} replicas stored {name}; nothing was committed ({})",
                ok.len(),
                describe(&stored)
            );
            return Err((SdfsErrorKind::QuorumNotMet, message));
        }
        version.replicas = ok;
        self.commit(name, version).await.map_err(|(kind, message)| {
            let message = format!("{message} (the replicas stored the bytes)");
            (kind, message)
        })
    }
}
