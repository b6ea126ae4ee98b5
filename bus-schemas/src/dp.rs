//! The messages the workers of one data-parallel training attempt exchange on
//! [`crate::subjects::dp_exchange`]: hellos when their group changes (who holds which state),
//! and parts of float vectors: each worker's gradient contribution to a step, and the state a
//! worker that is behind (or new) adopts.
//!
//! Every worker reads every message of its attempt; what belongs to another generation of the
//! group, or does not fit (wrong length, part out of range), is dropped.

use crate::codec::Message;
use serde::{Deserialize, Serialize};

/// The most values one vector (a gradient contribution or a state) may hold: 256 Mi floats
/// (1 GiB), far beyond the built-in architectures (ResNet-20's state is under 1 Mi).
pub const MAX_VALUES: u64 = 256 * 1024 * 1024;

/// The most parts one vector may be sent in.
pub const MAX_PARTS: u32 = 65_536;

/// One message of the exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DpMessage {
    /// A worker's state when its group changed.
    Hello(Hello),
    /// A part of a vector.
    Part(Part),
}

impl Message for DpMessage {
    const NAME: &'static str = "data-parallel exchange message";
}

/// A worker says which state it holds at the start of a group generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The group generation.
    pub generation: u32,
    /// The worker.
    pub worker: String,
    /// Steps applied to its state (over all epochs).
    pub applied: u64,
    /// A digest of its state's bytes: workers with the same `applied` and `digest` hold the
    /// same state.
    pub digest: u64,
    /// Whether it still waits for the state of the worker chosen to give it.
    #[serde(default)]
    pub needs_state: bool,
}

/// What a vector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// A worker's gradient contribution to step `step` (its shard's gradients, weighted by its
    /// share of the step's batch, then its batch-norm statistics and loss sums).
    Grad,
    /// A worker's whole state after `step` steps (weights, buffers, momentum, history).
    State,
}

/// One part of a float32 vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// What the vector is.
    pub kind: PartKind,
    /// The group generation it was made in.
    pub generation: u32,
    /// The step (see [`PartKind`]).
    pub step: u64,
    /// The sending worker.
    pub worker: String,
    /// Which part, from 0.
    pub index: u32,
    /// Parts in all.
    pub count: u32,
    /// Values of the whole vector; every part but the last holds `ceil(len / count)`.
    pub len: u64,
    /// The part's values, little-endian float32.
    pub data: serde_bytes::ByteBuf,
}

impl Part {
    /// Values a full part of a vector of `len` values in `count` parts holds.
    pub fn stride(len: u64, count: u32) -> u64 {
        len.div_ceil(u64::from(count.max(1)))
    }

    /// Where this part's values go in the vector, if its fields agree with each other: the
    /// offset and the number of values.
    pub fn span(&self) -> Option<(u64, u64)> {
        if self.count == 0 || self.count > MAX_PARTS || self.index >= self.count {
            return None;
        }
        if self.len > MAX_VALUES || self.data.len() % 4 != 0 {
            return None;
        }
        let stride = Part::stride(self.len, self.count);
        let offset = stride * u64::from(self.index);
        let values = stride.min(self.len.saturating_sub(offset));
        (values > 0 && self.data.len() as u64 == values * 4).then_some((offset, values))
    }
}

/// Splits `values` into parts of at most `max_values` values each.
pub fn parts(
    kind: PartKind,
    generation: u32,
    step: u64,
    worker: &str,
    values: &[f32],
    max_values: usize,
) -> Vec<Part> {
    let len = values.len() as u64;
    let count = values.len().div_ceil(max_values.max(1)).max(1) as u32;
    let stride = Part::stride(len, count) as usize;
    (0..count)
        .map(|index| {
            let from = (index as usize * stride).min(values.len());
            let to = (from + stride).min(values.len());
            let data: Vec<u8> = values[from..to]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Part {
                kind,
                generation,
                step,
                worker: worker.to_string(),
                index,
                count,
                len,
                data: serde_bytes::ByteBuf::from(data),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_vector_once_and_check_their_fields() {
        let values: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let split = parts(PartKind::Grad, 1, 5, "n1", &values, 4);
        assert_eq!(split.len(), 3);
        let mut seen = vec![0.0f32; 10];
        for p in &split {
            let (offset, n) = p.span().expect("a consistent part");
            for (i, c) in p.data.chunks(4).enumerate() {
                seen[offset as usize + i] = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            assert!(n <= 4);
        }
        assert_eq!(seen, values);
        let mut bad = split[0].clone();
        bad.index = 3;
        assert_eq!(bad.span(), None);
        bad.index = 0;
        bad.data.pop();
        assert_eq!(bad.span(), None);
        let mut bad = split[2].clone();
        bad.len = 11;
        assert_eq!(bad.span(), None, "a last part of the wrong size");
        let empty = parts(PartKind::State, 1, 0, "n1", &[], 4);
        assert_eq!(empty.len(), 1);
        assert_eq!(
            empty[0].span(),
            None,
            "an empty vector has no values to place"
        );
    }
}
