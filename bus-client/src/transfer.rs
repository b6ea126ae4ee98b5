//! Chunked, flow-controlled blob transfers over request/reply.
//!
//! The reader pulls: it asks for chunk after chunk with at most `window` requests in flight, so
//! the sender never outruns the receiver and memory stays bounded by `window × chunk_size`.
//! The same protocol carries uploads (the writer serves its file), replica copies (a holder
//! serves its blob) and downloads.

use crate::request::{request, RequestError};
use bus_schemas::sdfs::{Chunk, ChunkRequest};
use futures::{Stream, StreamExt};
use std::time::Duration;
use thiserror::Error;

/// Chunks in flight per transfer.
pub const WINDOW: usize = 8;
/// Largest chunk, whatever the server allows.
pub const MAX_CHUNK: u64 = 1024 * 1024;
/// How soon a source that nobody answers for yet is asked again.
const UNKNOWN_AGAIN: Duration = Duration::from_millis(50);
/// Room left in a message for the chunk's other fields and headers.
const HEADROOM: u64 = 4096;

/// The chunk size for a server that accepts payloads of `max_payload` bytes.
pub fn chunk_size(max_payload: usize) -> u64 {
    (max_payload as u64)
        .saturating_sub(HEADROOM)
        .clamp(4096, MAX_CHUNK)
}

/// Why a transfer stopped. Nothing is kept from a failed transfer.
#[derive(Debug, Error)]
pub enum TransferError {
    /// A chunk request got no answer.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The source answered with an error.
    #[error("the source could not send bytes at offset {offset}: {message}")]
    Source {
        /// The offset asked.
        offset: u64,
        /// What the source said.
        message: String,
    },
    /// The source sent fewer bytes than the transfer needs.
    #[error("the source sent {got} bytes at offset {offset}, {want} expected")]
    Short {
        /// The offset asked.
        offset: u64,
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        want: u64,
    },
}

/// Pulls `size` bytes of `blob` from `subject` in order, `chunk` bytes per request, each
/// request bounded by `timeout` and retried twice. "No responders" is asked again for up to
/// `unknown_for`: in a NATS cluster a fresh subscription (an uploader's) reaches the other
/// servers a moment after it is made, so a reader on another server may ask before it is
/// known there. A long-standing source (a holder) gets zero: nobody answering means it is gone.
pub fn pull(
    client: async_nats::Client,
    subject: String,
    blob: String,
    size: u64,
    chunk: u64,
    timeout: Duration,
    unknown_for: Duration,
) -> impl Stream<Item = Result<Vec<u8>, TransferError>> {
    let offsets = (0..size.div_ceil(chunk.max(1))).map(move |i| i * chunk);
    futures::stream::iter(offsets)
        .map(move |offset| {
            let want = chunk.min(size - offset);
            let req = ChunkRequest {
                blob: blob.clone(),
                offset,
                len: want,
            };
            fetch(client.clone(), subject.clone(), req, (timeout, unknown_for))
        })
        .buffered(WINDOW)
}

async fn fetch(
    client: async_nats::Client,
    subject: String,
    req: ChunkRequest,
    (timeout, unknown_for): (Duration, Duration),
) -> Result<Vec<u8>, TransferError> {
    let mut attempt = 0;
    let unknown_until = tokio::time::Instant::now() + unknown_for;
    let chunk: Chunk = loop {
        match request(&client, subject.clone(), &req, timeout).await {
            Ok(c) => break c,
            Err(RequestError::Timeout { .. }) if attempt < 2 => attempt += 1,
            Err(RequestError::NoResponders { .. })
                if tokio::time::Instant::now() < unknown_until =>
            {
                tokio::time::sleep(UNKNOWN_AGAIN).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let Some(message) = chunk.error {
        return Err(TransferError::Source {
            offset: req.offset,
            message,
        });
    }
    if chunk.data.len() as u64 != req.len || chunk.offset != req.offset {
        return Err(TransferError::Short {
            offset: req.offset,
            got: chunk.data.len() as u64,
            want: req.len,
        });
    }
    Ok(chunk.data)
}

/// A sha256 that hashes each piece on a blocking thread, off the async runtime.
#[derive(Default)]
pub struct Hasher {
    inner: sha2::Sha256,
}

impl Hasher {
    /// Hashes `data` and hands it back.
    pub async fn update(&mut self, data: Vec<u8>) -> Vec<u8> {
        use sha2::Digest;
        let mut inner = std::mem::take(&mut self.inner);
        let (inner, data) = tokio::task::spawn_blocking(move || {
            inner.update(&data);
            (inner, data)
        })
        .await
        .expect("hashing does not panic");
        self.inner = inner;
        data
    }

    /// The lower-case hex digest.
    pub fn finish(self) -> String {
        use sha2::Digest;
        hex::encode(self.inner.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_the_server() {
        assert_eq!(chunk_size(8 * 1024 * 1024), MAX_CHUNK);
        assert_eq!(chunk_size(1024 * 1024), 1024 * 1024 - 4096);
        assert_eq!(chunk_size(100), 4096);
    }

    #[tokio::test]
    async fn hashing_in_pieces_matches_one_piece() {
        let mut h = Hasher::default();
        h.update(b"hello ".to_vec()).await;
        h.update(b"world".to_vec()).await;
        let want = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(h.finish(), want);
    }
}
