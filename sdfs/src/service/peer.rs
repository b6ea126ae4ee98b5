//! The per-node SDFS subjects: replica stores (`…node.<id>.store`), chunk reads
//! (`…node.<id>.read`) and the inventory `idunno fsck` reads (`…node.<id>.inventory`).
//! Every value of a request is checked against its limit before it sizes anything.

use super::{Sdfs, MIN_STORE_RATE, STORE_SLACK};
use crate::blobs::BlobError;
use async_nats::Message;
use bus_client::transfer;
use bus_schemas::fsck::{BlobLabel, HeldBlob, InventoryReply, InventoryRequest};
use bus_schemas::sdfs::{Chunk, ChunkRequest, SdfsErrorKind, StoreReply, StoreRequest};
use bus_schemas::sdfs_limits::{self as limits, LimitError};
use bus_schemas::{encode, subjects, validate_file_name, validate_token};
use std::time::Duration;

/// Most bytes of labels in one inventory page (it must fit a default 1 MB `max_payload`).
const INVENTORY_PAGE_BYTES: usize = 512 * 1024;

impl Sdfs {
    /// Answers a store that found every slot busy, without touching the disk.
    pub(super) async fn refuse_store(&self, msg: Message) {
        let Some(req) = self.decode::<StoreRequest>(&msg) else {
            return;
        };
        let message = format!(
            "node {} is storing {} blobs already (its --sdfs-store-slots); try again later",
            self.id, self.cfg.store_slots
        );
        let reply = self.store_reply(req.blob, Some((SdfsErrorKind::Overloaded, message)));
        if let (Some(to), Some(bytes)) = (msg.reply, reply) {
            let _ = self.client.publish(to, bytes.into()).await;
        }
    }

    fn store_reply(&self, blob: String, error: Option<(SdfsErrorKind, String)>) -> Option<Vec<u8>> {
        let (kind, error) = error.map_or((None, None), |(k, m)| (Some(k), Some(m)));
        encode(&StoreReply {
            node: self.id.clone(),
            blob,
            error,
            kind,
        })
        .ok()
    }

    /// Checks a store request against every limit; the error names the limit.
    fn check_store(&self, req: &StoreRequest) -> Result<(), LimitError> {
        limits::check_blob_id(&req.blob)?;
        limits::check_sha256(&req.sha256)?;
        limits::check_chunk(req.chunk_size)?;
        if req.size > self.cfg.max_file_bytes {
            return Err(LimitError {
                what: "size",
                why: format!(
                    "{} bytes is more than this node's --sdfs-max-file-bytes ({})",
                    req.size, self.cfg.max_file_bytes
                ),
            });
        }
        let from_uploader = req.source == subjects::sdfs_upload(&req.blob);
        let from_holder = req
            .source
            .strip_prefix("idunno.v1.sdfs.node.")
            .and_then(|rest| rest.strip_suffix(".read"))
            .is_some_and(|node| validate_token(node).is_ok());
        if !from_uploader && !from_holder {
            return Err(LimitError {
                what: "source",
                why: "must be the blob's upload subject or a node's read subject".into(),
            });
        }
        if let Some(label) = &req.label {
            check_label(label, req)?;
        }
        Ok(())
    }

    /// Fetches a blob from its source and keeps it, within a deadline that grows with its size.
    pub(super) async fn store(&self, msg: &Message) -> Option<Vec<u8>> {
        let req = self.decode::<StoreRequest>(msg)?;
        if let Err(e) = self.check_store(&req) {
            self.metrics.garbage();
            tracing::warn!(blob = %req.blob.chars().take(40).collect::<String>(), "store refused: {e}");
            return self.store_reply(req.blob, Some((SdfsErrorKind::Limit, e.to_string())));
        }
        let chunks = transfer::pull(
            self.client.clone(),
            req.source.clone(),
            req.blob.clone(),
            req.size,
            req.chunk_size,
            self.cfg.chunk_timeout,
            // An uploader's subscription is fresh (see `transfer::pull`); a holder's is not.
            if req.source == subjects::sdfs_upload(&req.blob) {
                self.cfg.chunk_timeout
            } else {
                Duration::ZERO
            },
        );
        let deadline = STORE_SLACK + Duration::from_secs(req.size / MIN_STORE_RATE);
        let write = self
            .blobs
            .write(&req.blob, req.size, &req.sha256, req.label.as_ref(), chunks);
        let result = match tokio::time::timeout(deadline, write).await {
            Ok(r) => r.map_err(|e| (SdfsErrorKind::Internal, e.to_string())),
            Err(_) => Err((
                SdfsErrorKind::Internal,
                format!(
                    "the source did not deliver {} bytes within {deadline:?}",
                    req.size
                ),
            )),
        };
        if let Err((_, e)) = &result {
            tracing::warn!(blob = %req.blob, "store failed: {e}");
        }
        self.store_reply(req.blob, result.err())
    }

    /// Sends a piece of a blob this node holds.
    pub(super) async fn read(&self, msg: &Message) -> Option<Vec<u8>> {
        let req = self.decode::<ChunkRequest>(msg)?;
        let len = req.len.min(limits::MAX_CHUNK);
        let (data, error) = match limits::check_blob_id(&req.blob) {
            Err(e) => (Vec::new(), Some(e.to_string())),
            Ok(()) => match self.blobs.read(&req.blob, req.offset, len).await {
                Ok(data) => (data, None),
                Err(e @ BlobError::NotFound(_)) => (Vec::new(), Some(e.to_string())),
                Err(e) => (Vec::new(), Some(e.to_string())),
            },
        };
        encode(&Chunk {
            blob: req.blob,
            offset: req.offset,
            data,
            error,
        })
        .ok()
    }

    /// One page of the blobs this node holds, with their labels, in blob-id order.
    pub(super) async fn inventory(&self, msg: &Message) -> Option<Vec<u8>> {
        let req = self.decode::<InventoryRequest>(msg)?;
        let trust = *self.trust.borrow();
        let mut reply = InventoryReply {
            node: self.id.clone(),
            trusted: trust.trusted,
            quarantined: trust.quarantined,
            blobs: Vec::new(),
            next_after: None,
            error: None,
        };
        let mut held = match self.blobs.list().await {
            Ok(held) => held,
            Err(e) => {
                reply.error = Some(e.to_string());
                return encode(&reply).ok();
            }
        };
        held.sort_by(|a, b| a.blob.cmp(&b.blob));
        let after = req.after.unwrap_or_default();
        let mut bytes = 0;
        for b in held.into_iter().filter(|b| b.blob > after) {
            if bytes >= INVENTORY_PAGE_BYTES {
                reply.next_after = reply.blobs.last().map(|h: &HeldBlob| h.blob.clone());
                break;
            }
            let label = self.blobs.label(&b.blob).await.ok().flatten();
            bytes += 128 + label.as_ref().map_or(0, label_bytes);
            reply.blobs.push(HeldBlob {
                blob: b.blob,
                size: b.size,
                label,
            });
        }
        encode(&reply).ok()
    }
}

fn label_bytes(l: &BlobLabel) -> usize {
    l.name.len()
        + l.attrs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
}

/// A label must describe the bytes it travels with, under a valid name and bounded attributes.
fn check_label(label: &BlobLabel, req: &StoreRequest) -> Result<(), LimitError> {
    let bad = |why: String| LimitError { what: "label", why };
    validate_file_name(&label.name).map_err(|e| bad(e.to_string()))?;
    limits::check_attrs(&label.attrs)?;
    limits::check_replicas(label.replication.unwrap_or(0) as usize)?;
    if label.size != req.size || label.sha256 != req.sha256 {
        return Err(bad("its size and sha256 must be the request's".into()));
    }
    Ok(())
}
