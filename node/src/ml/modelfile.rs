//! IDunno's model and checkpoint files: an 8-byte magic, a little-endian u32 header length, a
//! JSON header (what the weights are for, with the sha256 of the payload) and the payload
//! (libtorch named tensors, or a TorchScript file). A file that fails any check is refused with
//! a sentence saying what is wrong, never half-loaded.

use idunno_datasets::limits::{MAX_CLASSES, MAX_CLASS_NAME_BYTES, MAX_IMAGE_SIDE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"IDUNNOM1";

/// Largest JSON header of a model file, in bytes (checked before it is parsed).
pub const MAX_HEADER_BYTES: usize = 16 << 20;
/// Longest `arch`, `dataset` or `job` string in a header, in bytes.
pub const MAX_HEADER_STRING_BYTES: usize = 1024;

/// What the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// Named tensors of a built-in architecture (libtorch's format).
    Weights,
    /// A TorchScript module.
    Torchscript,
    /// A training checkpoint: weights plus optimiser state.
    Checkpoint,
}

/// The header of a model or checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// What the payload is.
    pub payload: Payload,
    /// The built-in architecture, or `torchscript`.
    pub arch: String,
    /// The dataset it was trained or evaluated on.
    pub dataset: String,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Input shape, C, H, W.
    pub shape: [u32; 3],
    /// Per-channel mean subtracted from [0, 1] pixels (none if empty).
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel std the pixels are divided by (none if empty).
    #[serde(default)]
    pub std: Vec<f32>,
    /// Trainable parameters.
    #[serde(default)]
    pub params: u64,
    /// Epochs trained (for a checkpoint: completed so far).
    #[serde(default)]
    pub epochs: u32,
    /// Test accuracy, if measured.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// The job that made it.
    #[serde(default)]
    pub job: Option<String>,
    /// Lower-case hex sha256 of the payload.
    pub payload_sha256: String,
}

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not an IDunno model file at all.
    #[error("{what} is not an IDunno model file (no IDUNNOM1 magic): it may be a raw TorchScript file, import it with `idunno model import`")]
    BadMagic {
        /// The file.
        what: String,
    },
    /// Cut short or with a header that does not parse.
    #[error("{what} is damaged: {reason}")]
    Damaged {
        /// The file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A header value is beyond a documented limit; refused before it sizes anything.
    #[error("{what} is refused: {field} is at most {max} ({limit}), not {found}")]
    TooLarge {
        /// The file.
        what: String,
        /// What is limited, e.g. "its header's length in bytes".
        field: &'static str,
        /// The limit's documented name, e.g. `MAX_HEADER_BYTES`.
        limit: &'static str,
        /// The limit.
        max: u64,
        /// The value found.
        found: u64,
    },
    /// A file of another kind than expected.
    #[error("{what} holds {found:?}, expected {expected:?}")]
    WrongKind {
        /// The file.
        what: String,
        /// What it holds.
        found: Payload,
        /// What was expected.
        expected: Payload,
    },
}

/// Writes `header` (its `payload_sha256` is filled in) and `payload` into one file image.
pub fn encode(mut header: Header, payload: &[u8]) -> Vec<u8> {
    header.payload_sha256 = hex::encode(Sha256::digest(payload));
    let json = serde_json::to_vec(&header).expect("a header always serialises");
    let mut out = Vec::with_capacity(12 + json.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

/// Splits a file image into its checked header and payload; `what` names it in errors.
pub fn decode<'a>(what: &str, bytes: &'a [u8]) -> Result<(Header, &'a [u8]), FileError> {
    let damaged = |reason: String| FileError::Damaged {
        what: what.into(),
        reason,
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(FileError::BadMagic { what: what.into() });
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    check(
        what,
        "its header's length in bytes",
        "MAX_HEADER_BYTES",
        MAX_HEADER_BYTES,
        len,
    )?;
    let Some(json) = bytes.get(12..12 + len) else {
        return Err(damaged(format!(
            "its header claims {len} bytes, the file is shorter"
        )));
    };
    let header: Header =
        serde_json::from_slice(json).map_err(|e| damaged(format!("unreadable header: {e}")))?;
    header.validate(what)?;
    let payload = &bytes[12 + len..];
    let sha = hex::encode(Sha256::digest(payload));
    if sha != header.payload_sha256 {
        return Err(damaged(format!(
            "its weights do not match their checksum (sha256 {sha}, header says {})",
            header.payload_sha256
        )));
    }
    Ok((header, payload))
}

fn check(
    what: &str,
    field: &'static str,
    limit: &'static str,
    max: usize,
    found: usize,
) -> Result<(), FileError> {
    if found > max {
        return Err(FileError::TooLarge {
            what: what.into(),
            field,
            limit,
            max: max as u64,
            found: found as u64,
        });
    }
    Ok(())
}

impl Header {
    /// Checks the values that size tensors and loops against the documented limits: the input
    /// is 1 or 3 channels of at most `MAX_IMAGE_SIDE` pixels a side, at most `MAX_CLASSES`
    /// class names of at most `MAX_CLASS_NAME_BYTES`, `mean` and `std` with 0, 1 or C values,
    /// strings of at most [`MAX_HEADER_STRING_BYTES`]. `what` names the file in errors.
    pub fn validate(&self, what: &str) -> Result<(), FileError> {
        let damaged = |reason: String| FileError::Damaged {
            what: what.into(),
            reason,
        };
        let [c, h, w] = self.shape;
        if c != 1 && c != 3 {
            return Err(damaged(format!("its input has {c} channels, not 1 or 3")));
        }
        let side = MAX_IMAGE_SIDE as usize;
        for d in [h, w] {
            check(
                what,
                "an input side in pixels",
                "MAX_IMAGE_SIDE",
                side,
                d as usize,
            )?;
        }
        if h == 0 || w == 0 {
            return Err(damaged(format!(
                "its input of {w}x{h} pixels holds nothing"
            )));
        }
        for (field, v) in [("mean", &self.mean), ("std", &self.std)] {
            if ![0, 1, c as usize].contains(&v.len()) {
                return Err(damaged(format!(
                    "{field} has {} values for {c} channels",
                    v.len()
                )));
            }
        }
        self.validate_strings(what)
    }

    /// Checks the classes and the header's strings against their limits.
    fn validate_strings(&self, what: &str) -> Result<(), FileError> {
        let classes = self.classes.len();
        check(
            what,
            "its number of classes",
            "MAX_CLASSES",
            MAX_CLASSES,
            classes,
        )?;
        let longest = self.classes.iter().map(String::len).max().unwrap_or(0);
        let name = "a class name's length in bytes";
        check(
            what,
            name,
            "MAX_CLASS_NAME_BYTES",
            MAX_CLASS_NAME_BYTES,
            longest,
        )?;
        let longest = [
            &self.arch,
            &self.dataset,
            self.job.as_ref().unwrap_or(&self.arch),
        ]
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(0);
        let (field, limit) = (
            "a header string's length in bytes",
            "MAX_HEADER_STRING_BYTES",
        );
        check(what, field, limit, MAX_HEADER_STRING_BYTES, longest)
    }
}

/// Like [`decode`], and refuses a file of another kind than `expected`.
pub fn decode_kind<'a>(
    what: &str,
    bytes: &'a [u8],
    expected: &[Payload],
) -> Result<(Header, &'a [u8]), FileError> {
    let (header, payload) = decode(what, bytes)?;
    if !expected.contains(&header.payload) {
        return Err(FileError::WrongKind {
            what: what.into(),
            found: header.payload,
            expected: expected[0],
        });
    }
    Ok((header, payload))
}
