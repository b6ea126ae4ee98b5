//! Typed request/reply and publish over the bus, each bounded in time.

use bus_schemas::{decode, encode, DecodeError, EncodeError, Message};
use std::time::Duration;
use thiserror::Error;

/// Why a request got no usable answer. No request changes state on the caller's side.
#[derive(Debug, Error)]
pub enum RequestError {
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Nobody listens on the subject (e.g. no such node).
    #[error("nobody answers on {subject}")]
    NoResponders {
        /// The subject asked.
        subject: String,
    },
    /// No answer within the timeout.
    #[error("no answer on {subject} within {timeout:?}")]
    Timeout {
        /// The subject asked.
        subject: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The answer could not be decoded.
    #[error("bad answer on {subject}: {source}")]
    Decode {
        /// The subject asked.
        subject: String,
        /// The decode error.
        source: DecodeError,
    },
    /// The NATS server refused it: this identity's role may not publish on `subject` (or it
    /// may not receive replies: its inbox prefix is not its own).
    #[error("the NATS server refused: this identity may not {what} (its role does not allow it; see docs/security.md)")]
    Denied {
        /// The subject asked.
        subject: String,
        /// What was refused, in words.
        what: String,
    },
    /// The connection failed.
    #[error("bus error on {subject}: {reason}")]
    Bus {
        /// The subject asked.
        subject: String,
        /// What went wrong.
        reason: String,
    },
}

/// Sends `req` on `subject` and decodes the single answer, waiting at most `timeout`.
pub async fn request<Req: Message, Rep: Message>(
    client: &async_nats::Client,
    subject: String,
    req: &Req,
    timeout: Duration,
) -> Result<Rep, RequestError> {
    let payload = encode(req)?;
    // The client's own request timeout (10 s by default) must not cut a longer wait short.
    let ask = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(timeout));
    let prefix = crate::denials::prefix_of(client);
    let mut denials = crate::denials::watch();
    let fut = client.send_request(subject.clone(), ask);
    let refused = crate::denials::refused(&mut denials, &prefix, &subject);
    let answer = async {
        tokio::select! {
            reply = fut => Ok(reply),
            denial = refused => Err(denial),
        }
    };
    let msg = match tokio::time::timeout(timeout, answer).await {
        Err(_) => return Err(RequestError::Timeout { subject, timeout }),
        Ok(Err(denial)) => {
            let what = match denial.action {
                crate::denials::Action::Publish => format!("publish to {subject}"),
                crate::denials::Action::Subscribe => format!(
                    "receive replies on {} (give the identity's own inbox prefix, as --nats-identity does)",
                    denial.subject
                ),
            };
            return Err(RequestError::Denied { subject, what });
        }
        Ok(Ok(reply)) => reply,
    };
    let msg = match msg {
        Err(e) => {
            use async_nats::RequestErrorKind as K;
            return Err(match e.kind() {
                K::NoResponders => RequestError::NoResponders { subject },
                K::TimedOut => RequestError::Timeout { subject, timeout },
                _ => RequestError::Bus {
                    subject,
                    reason: e.to_string(),
                },
            });
        }
        Ok(msg) => msg,
    };
    decode(&msg.payload).map_err(|source| RequestError::Decode { subject, source })
}

/// Publishes `msg` on `subject`; returns the number of payload bytes sent.
pub async fn publish<M: Message>(
    client: &async_nats::Client,
    subject: String,
    msg: &M,
) -> Result<usize, RequestError> {
    let payload = encode(msg)?;
    let len = payload.len();
    client
        .publish(subject.clone(), payload.into())
        .await
        .map_err(|e| RequestError::Bus {
            subject,
            reason: e.to_string(),
        })?;
    Ok(len)
}
