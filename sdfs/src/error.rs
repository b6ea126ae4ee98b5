//! The error of starting and running this node's part of SDFS (opening its bucket and blob
//! store, subscribing, a keeper pass). What the service answers to clients is the wire's
//! `SdfsErrorKind`; this is for the node that runs it.

use crate::blobs::BlobError;
use crate::meta::MetaError;

/// Why this node's SDFS could not start or a keeper pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SdfsNodeError {
    /// The metadata bucket failed (it may pass: see [`MetaError`]).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// This node's blob store failed (its disk).
    #[error(transparent)]
    Blobs(#[from] BlobError),
    /// A subscription on the bus could not be made (the connection is gone).
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::SubscribeError,
    },
}
