//! Online inference on `idunno.v1.infer` (queue group `idunno-infer`): a client sends a few
//! encoded images for one model; the node that takes the request batches it with others for
//! the same model (up to a maximum batch, waiting at most a maximum queue delay) and answers
//! before the request's deadline, or with a timeout at the deadline.

use crate::codec::Message;
use serde::{Deserialize, Serialize};
pub use serde_bytes::ByteBuf;

/// Classify `images` with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// The model as `name`, `name:version` or `name@alias` (see
    /// [`crate::models::ModelRef`]); `models/<name>` in SDFS.
    pub model: String,
    /// Its version (as `name:version` says); when absent, as the name says.
    pub version: Option<u64>,
    /// PNG or JPEG files, each one query. They are converted to the model's channels and
    /// resized to its input size. Empty when [`InferRequest::tensor`] holds the queries.
    pub images: Vec<serde_bytes::ByteBuf>,
    /// The queries as the model's input itself (instead of `images`): N×C×H×W float32 values
    /// already scaled as the model's convention says (pixels in [0, 1], minus the model's
    /// mean, over its std). Nodes older than this field ignore it and refuse the request for
    /// holding no image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<FloatTensor>,
    /// The true class of each query, when the client knows it (empty, or one per query): the
    /// node counts the accuracy of each version a rollout sends requests to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<i64>,
    /// How long the node may take, in milliseconds from when it receives the request; a
    /// request still waiting at its deadline is answered with [`InferErrorKind::Timeout`]
    /// and never run.
    pub timeout_ms: u64,
}

impl Message for InferRequest {
    const NAME: &'static str = "infer request";
}

/// A float32 tensor of queries, N×C×H×W.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatTensor {
    /// N (the queries), C, H, W.
    pub shape: [u64; 4],
    /// The values, little-endian float32, row-major (4 bytes per value).
    pub data: serde_bytes::ByteBuf,
}

impl FloatTensor {
    /// The tensor of `shape` holding `values` (row-major).
    pub fn new(shape: [u64; 4], values: &[f32]) -> FloatTensor {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        FloatTensor {
            shape,
            data: serde_bytes::ByteBuf::from(data),
        }
    }
}

/// Asks any node (queue group [`crate::subjects::INFER_MODEL_QUEUE`]) to describe a model and
/// have it ready to serve (loaded and prepared on the node answering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelQuery {
    /// The model's name.
    pub model: String,
    /// Its version; the newest when absent.
    pub version: Option<u64>,
}

impl Message for ModelQuery {
    const NAME: &'static str = "model query";
}

/// What a model takes and gives, as the node that loaded it read its header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's name.
    pub model: String,
    /// The version described.
    pub version: u64,
    /// Every version SDFS keeps, oldest first.
    pub versions: Vec<u64>,
    /// The architecture (`cnn`, `resnet`, …, or `torchscript`).
    pub arch: String,
    /// Its input, C, H, W.
    pub shape: [u32; 3],
    /// Its class names, in output order.
    pub classes: Vec<String>,
    /// Per-channel mean subtracted from [0, 1] pixels (empty: none).
    pub mean: Vec<f32>,
    /// Per-channel std the pixels are divided by (empty: none).
    pub std: Vec<f32>,
    /// The node that loaded it.
    pub node: String,
}

/// The answer to a [`ModelQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ModelReply {
    /// Loaded and ready on the node answering.
    Ready(ModelInfo),
    /// Unknown, or it could not be loaded.
    Error {
        /// Why, as a kind.
        kind: InferErrorKind,
        /// Why, in one sentence.
        message: String,
    },
}

impl Message for ModelReply {
    const NAME: &'static str = "model reply";
}

/// One image's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted class index.
    pub class: i64,
    /// Its name (the index as text when the model has no class names).
    pub class_name: String,
    /// Its softmax probability.
    pub score: f32,
    /// Every class's probability, in class order.
    pub scores: Vec<f32>,
}

/// Why an inference request was refused. Readers of an older version see kinds added later
/// as [`InferErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferErrorKind {
    /// No such model or version.
    UnknownModel,
    /// An image could not be decoded, or the request is malformed.
    BadInput,
    /// The deadline passed before the request could run.
    Timeout,
    /// The node failed (storage, model loading).
    Internal,
    /// The node is busy (its limit of requests in progress, or its queues, are full): the
    /// request was not run; try again later or on another node.
    Overloaded,
    /// A kind this reader does not know.
    #[serde(other)]
    Other,
}

/// The answer to an [`InferRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum InferReply {
    /// Every image classified.
    Done {
        /// The model.
        model: String,
        /// The version used.
        version: u64,
        /// One per image, in order.
        predictions: Vec<Prediction>,
        /// The node that ran it.
        node: String,
        /// Milliseconds the request waited to be batched.
        queue_ms: f64,
        /// Milliseconds the batch took in the model.
        run_ms: f64,
        /// How many images the batch held (this request's and others').
        batch: u32,
    },
    /// Refused or failed.
    Error {
        /// Why, as a kind.
        kind: InferErrorKind,
        /// Why, in one sentence.
        message: String,
    },
}

impl Message for InferReply {
    const NAME: &'static str = "infer reply";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::round_trip;

    #[test]
    fn infer_messages_round_trip() {
        round_trip(InferRequest {
            model: "cnn".into(),
            version: Some(2),
            images: vec![serde_bytes::ByteBuf::from(vec![0x89, b'P', b'N', b'G'])],
            timeout_ms: 1000,
            tensor: None,
            labels: vec![3],
        });
        round_trip(InferRequest {
            model: "cnn".into(),
            version: None,
            images: vec![],
            timeout_ms: 1000,
            labels: vec![],
            tensor: Some(FloatTensor::new([1, 1, 1, 2], &[0.5, -1.0])),
        });
        round_trip(ModelQuery {
            model: "cnn".into(),
            version: Some(3),
        });
        round_trip(ModelReply::Ready(ModelInfo {
            model: "cnn".into(),
            version: 3,
            versions: vec![1, 2, 3],
            arch: "cnn".into(),
            shape: [1, 28, 28],
            classes: vec!["T-shirt/top".into(), "Trouser".into()],
            mean: vec![0.286],
            std: vec![0.353],
            node: "n1".into(),
        }));
        round_trip(ModelReply::Error {
            kind: InferErrorKind::UnknownModel,
            message: "no such model".into(),
        });
        round_trip(InferReply::Done {
            model: "cnn".into(),
            version: 2,
            predictions: vec![Prediction {
                class: 3,
                class_name: "Dress".into(),
                score: 0.9,
                scores: vec![0.1, 0.9],
            }],
            node: "n1".into(),
            queue_ms: 1.5,
            run_ms: 2.0,
            batch: 4,
        });
        round_trip(InferReply::Error {
            kind: InferErrorKind::Timeout,
            message: "late".into(),
        });
        round_trip(InferReply::Error {
            kind: InferErrorKind::Overloaded,
            message: "busy".into(),
        });
    }

    #[test]
    fn an_unknown_error_kind_reads_as_other() {
        #[derive(Serialize)]
        struct Future {
            schema_version: u16,
            reply: &'static str,
            kind: &'static str,
            message: &'static str,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            schema_version: crate::SCHEMA_VERSION,
            reply: "error",
            kind: "on_fire",
            message: "m",
        })
        .unwrap();
        let reply: InferReply = crate::decode(&bytes).unwrap();
        assert!(matches!(
            reply,
            InferReply::Error {
                kind: InferErrorKind::Other,
                ..
            }
        ));
    }
}
