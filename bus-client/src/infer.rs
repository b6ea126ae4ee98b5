//! Online inference requests (`idunno.v1.infer`), as every client sends them.

use crate::{request, RequestError};
use bus_schemas::infer::{InferErrorKind, InferReply, InferRequest, ModelQuery, ModelReply};
use std::time::Duration;

/// What a client is told when no node is in the `idunno-infer` queue group: each node leaves
/// it while it sheds load and joins again when it has room, so this is the cluster's
/// `overloaded` (or, with no node running at all, the absence of any).
pub const NO_NODE_TAKES_REQUESTS: &str = "overloaded: no node is taking online requests now \
     (each one is shedding load, or none is running); try again later";

/// Sends one inference request and waits at most `wait` for its answer. "No responders" on
/// the subject is the cluster shedding load, and comes back as an `overloaded` reply
/// ([`NO_NODE_TAKES_REQUESTS`]); any other failure to get an answer is an error.
pub async fn infer(
    client: &async_nats::Client,
    req: &InferRequest,
    wait: Duration,
) -> Result<InferReply, RequestError> {
    match request(client, bus_schemas::subjects::infer(), req, wait).await {
        Err(RequestError::NoResponders { .. }) => Ok(InferReply::Error {
            kind: InferErrorKind::Overloaded,
            message: NO_NODE_TAKES_REQUESTS.into(),
        }),
        other => other,
    }
}

/// Asks any node to describe model `query` names and have it loaded for online inference
/// (`idunno.v1.infer.model`), waiting at most `wait`.
pub async fn model_info(
    client: &async_nats::Client,
    query: &ModelQuery,
    wait: Duration,
) -> Result<ModelReply, RequestError> {
    request(client, bus_schemas::subjects::infer_model(), query, wait).await
}
