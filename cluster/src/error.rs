//! The error of a request to JetStream (a bucket, a stream, a watch): what was asked, the
//! library's error kept as the source, and a kind that says whether trying again may succeed.
//! The kind is read from the error's types (JetStream's status codes, the request kinds of
//! async-nats), never from its text.

use std::error::Error as StdError;
use std::fmt;

/// Any error, boxed (the source of a [`KvError`], a failed supervised task).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// What kind of failure a [`KvError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvErrorKind {
    /// Nobody answered in time, or nobody listens yet (a server restarting, a bucket electing
    /// its leader, the connection lost): trying again later may succeed.
    Unavailable,
    /// JetStream refused the request (a permission, a name or a configuration it does not
    /// accept): trying again meets the same answer.
    Refused,
    /// A watch ended or failed: its follower starts over.
    Ended,
    /// A value that should be IDunno's does not encode or decode.
    Corrupt,
}

/// A request to JetStream that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct KvError {
    what: String,
    kind: KvErrorKind,
    #[source]
    source: BoxError,
}

impl KvError {
    /// A failure of `what`, its kind read from `source`'s types.
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let kind = classify(source.as_ref());
        Self::with_kind(what, kind, source)
    }

    /// A failure of `what` of a known kind.
    pub fn with_kind(
        what: impl Into<String>,
        kind: KvErrorKind,
        source: impl Into<BoxError>,
    ) -> Self {
        KvError {
            what: what.into(),
            kind,
            source: source.into(),
        }
    }

    /// A value of `what` that does not encode or decode.
    pub fn corrupt(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::with_kind(what, KvErrorKind::Corrupt, source)
    }

    /// A watch of `what` that ended (no error of its own).
    pub fn ended(what: impl Into<String>) -> Self {
        Self::with_kind(what, KvErrorKind::Ended, Ended)
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> KvErrorKind {
        self.kind
    }

    /// Whether trying again may succeed (the bus or the bucket was unavailable, a watch ended).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, KvErrorKind::Unavailable | KvErrorKind::Ended)
    }
}

/// `e` and its sources, joined by ": " (what `{:#}` shows of an `anyhow::Error`).
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut at = e.source();
    while let Some(e) = at {
        let next = e.to_string();
        if !out.ends_with(&next) {
            out.push_str(": ");
            out.push_str(&next);
        }
        at = e.source();
    }
    out
}

/// The source of a watch that ended by itself.
#[derive(Debug)]
struct Ended;

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the watch ended")
    }
}

impl StdError for Ended {}

/// The kind of a failure, from the first error in `e`'s chain whose type tells: a JetStream
/// API error is a refusal unless its status says "unavailable" or "timeout" (503, 408); a
/// request that names a bad subject is refused; anything else talking to the bus (timeouts,
/// no responders, I/O, a lost connection) may pass.
fn classify(e: &(dyn StdError + 'static)) -> KvErrorKind {
    use async_nats::jetstream::context::{RequestError as JsRequest, RequestErrorKind as Js};
    use async_nats::{RequestError as Request, RequestErrorKind as Core};
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(api) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return api_kind(api);
        }
        if let Some(r) = e.downcast_ref::<JsRequest>() {
            if r.kind() == Js::InvalidSubject {
                return KvErrorKind::Refused;
            }
        }
        if let Some(r) = e.downcast_ref::<Request>() {
            if r.kind() == Core::InvalidSubject {
                return KvErrorKind::Refused;
            }
        }
        at = e.source();
    }
    KvErrorKind::Unavailable
}

/// The kind of a JetStream API error, by its status code.
pub fn api_kind(api: &async_nats::jetstream::Error) -> KvErrorKind {
    match api.code() {
        408 | 503 => KvErrorKind::Unavailable,
        _ => KvErrorKind::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_types_not_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "refused by peer");
        let e = KvError::new("reading the settings", io);
        assert_eq!(e.kind(), KvErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(e.source().is_some(), "the source is kept");
        assert_eq!(e.to_string(), "reading the settings: refused by peer");
        let e = KvError::corrupt("the settings", std::io::Error::other("bad bytes"));
        assert!(!e.is_retryable());
        assert!(KvError::ended("the job bucket").is_retryable());
    }
}
