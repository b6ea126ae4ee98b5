//! Limits on what a member record, member event or failure-detector message may claim.
//!
//! A message can decode perfectly and still be hostile: a generation years ahead, an
//! incarnation at `u64::MAX`, an id that is not a token, a megabyte host name. Receivers check
//! every such message with [`MemberEvent::check`], [`MemberRecord::check`] or
//! [`FdMessage::check`] before it touches their view, and refuse it with an [`Implausible`]
//! that names the limit. The checks are pure, so any tool can apply them too.

use super::{FdMessage, MemberEvent, MemberRecord};
use crate::names::{validate_token, NameError, MAX_TOKEN_LEN};
use std::net::SocketAddr;
use thiserror::Error;

/// The longest `host` a member may report, in bytes (the longest DNS name).
pub const MAX_HOST_LEN: usize = 253;

/// The longest `http` address a member may report, in bytes (a bracketed IPv6 address or the
/// longest DNS name, a colon and a port).
pub const MAX_HTTP_LEN: usize = 261;

/// The highest incarnation accepted: the largest integer a JavaScript number holds exactly.
/// A node that would have to go above it to refute a suspicion joins with a new generation.
pub const MAX_INCARNATION: u64 = (1 << 53) - 1;

/// How far (ms) a generation may be ahead of the receiver's wall clock, by default (5 minutes).
pub const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// The most members a view holds, by default; further new ids are refused.
pub const DEFAULT_MAX_MEMBERS: usize = 1024;

/// The receiver's wall clock and the clock skew it tolerates, for the generation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The receiver's wall-clock time, milliseconds since the epoch.
    pub now_ms: u64,
    /// How far ahead of `now_ms` a generation may be.
    pub max_skew_ms: u64,
}

impl Clock {
    /// The highest generation accepted now.
    pub fn max_generation(&self) -> u64 {
        self.now_ms.saturating_add(self.max_skew_ms)
    }

    /// Refuses a generation more than the tolerated skew ahead of the clock.
    pub fn check_generation(&self, generation: u64) -> Result<(), Implausible> {
        if generation > self.max_generation() {
            return Err(Implausible::Generation {
                generation,
                ahead_ms: generation - self.now_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }
}

/// Why a membership message was refused. Nothing in the receiver's view changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Implausible {
    /// An id field was longer than a token may be.
    #[error("`{field}` is at most {MAX_TOKEN_LEN} bytes, not {len}")]
    IdTooLong {
        /// The field (`node`, `reporter`, `id`, `from`, `target`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// An id field was not a token (letters, digits, `-`, `_`).
    #[error("`{field}`: {reason}")]
    BadId {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A generation was further ahead of the receiver's clock than the tolerated skew.
    #[error("generation {generation} is {ahead_ms} ms ahead of this node's clock, more than the max clock skew of {max_skew_ms} ms")]
    Generation {
        /// The generation claimed.
        generation: u64,
        /// How far ahead of the receiver's clock it is.
        ahead_ms: u64,
        /// The tolerated skew.
        max_skew_ms: u64,
    },
    /// An incarnation above [`MAX_INCARNATION`].
    #[error("an incarnation is at most {MAX_INCARNATION}, not {0}")]
    Incarnation(u64),
    /// A host longer than [`MAX_HOST_LEN`].
    #[error("a member's host is at most {MAX_HOST_LEN} bytes, not {0}")]
    HostTooLong(usize),
    /// A zone longer than [`MAX_HOST_LEN`].
    #[error("a member's zone is at most {MAX_HOST_LEN} bytes, not {0}")]
    ZoneTooLong(usize),
    /// An http address longer than [`MAX_HTTP_LEN`].
    #[error("a member's http address is at most {MAX_HTTP_LEN} bytes, not {0}")]
    HttpTooLong(usize),
    /// An http address that is not `host:port`.
    #[error("a member's http address must be host:port, not {0:?}")]
    HttpNotHostPort(String),
    /// A process start after the generation it claims (a generation is taken at or after the
    /// process started).
    #[error("a member's process cannot start ({started_ms}) after its generation ({generation})")]
    StartedAfterGeneration {
        /// The process start claimed.
        started_ms: u64,
        /// The generation claimed.
        generation: u64,
    },
}

/// Checks that `id` (the value of `field`) is a token, without copying an oversized id.
pub fn check_id(field: &'static str, id: &str) -> Result<(), Implausible> {
    if id.len() > MAX_TOKEN_LEN {
        return Err(Implausible::IdTooLong {
            field,
            len: id.len(),
        });
    }
    validate_token(id).map_err(|reason| Implausible::BadId { field, reason })
}

/// Checks a dashboard address: at most [`MAX_HTTP_LEN`] bytes, an IP socket address or a DNS
/// name (letters, digits, `-`, `.`) and a port.
pub fn check_http(addr: &str) -> Result<(), Implausible> {
    if addr.len() > MAX_HTTP_LEN {
        return Err(Implausible::HttpTooLong(addr.len()));
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || Implausible::HttpNotHostPort(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port_ok =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if port_ok && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// What a member message says of one member.
pub struct Claim<'a> {
    /// The node id.
    pub id: &'a str,
    /// Its generation.
    pub generation: u64,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its host.
    pub host: &'a str,
    /// Its zone.
    pub zone: Option<&'a str>,
    /// Its dashboard address.
    pub http: Option<&'a str>,
    /// When its process started.
    pub started_ms: Option<u64>,
}

/// Checks what any member message says of one member.
pub fn check_member(m: Claim<'_>, clock: Clock) -> Result<(), Implausible> {
    check_id("node", m.id)?;
    clock.check_generation(m.generation)?;
    if m.incarnation > MAX_INCARNATION {
        return Err(Implausible::Incarnation(m.incarnation));
    }
    if m.host.len() > MAX_HOST_LEN {
        return Err(Implausible::HostTooLong(m.host.len()));
    }
    if let Some(zone) = m.zone.filter(|z| z.len() > MAX_HOST_LEN) {
        return Err(Implausible::ZoneTooLong(zone.len()));
    }
    if let Some(started_ms) = m.started_ms.filter(|s| *s > m.generation) {
        return Err(Implausible::StartedAfterGeneration {
            started_ms,
            generation: m.generation,
        });
    }
    m.http.map_or(Ok(()), check_http)
}

impl MemberEvent {
    /// Refuses an event whose ids, numbers or fields are implausible at `clock`.
    pub fn check(&self, clock: Clock) -> Result<(), Implausible> {
        check_id("reporter", &self.reporter)?;
        let claim = Claim {
            id: &self.node,
            generation: self.generation,
            incarnation: self.incarnation,
            host: &self.host,
            zone: self.zone.as_deref(),
            http: self.http.as_deref(),
            started_ms: self.started_ms,
        };
        check_member(claim, clock)
    }
}

impl MemberRecord {
    /// Refuses a record whose id, numbers or fields are implausible at `clock`.
    pub fn check(&self, clock: Clock) -> Result<(), Implausible> {
        let claim = Claim {
            id: &self.id,
            generation: self.generation,
            incarnation: self.incarnation,
            host: &self.host,
            zone: self.zone.as_deref(),
            http: self.http.as_deref(),
            started_ms: self.started_ms,
        };
        check_member(claim, clock)
    }
}

impl FdMessage {
    /// Refuses a message whose ids are not tokens or whose generations are too far ahead.
    pub fn check(&self, clock: Clock) -> Result<(), Implausible> {
        match self {
            FdMessage::Ping {
                from,
                from_generation,
                ..
            } => {
                check_id("from", from)?;
                clock.check_generation(*from_generation)
            }
            FdMessage::PingReq {
                from,
                from_generation,
                target,
                ..
            } => {
                check_id("from", from)?;
                check_id("target", target)?;
                clock.check_generation(*from_generation)
            }
            FdMessage::Ack {
                from,
                from_generation,
                target,
                target_generation,
                ..
            } => {
                check_id("from", from)?;
                check_id("target", target)?;
                clock.check_generation(*from_generation)?;
                clock.check_generation(*target_generation)
            }
        }
    }
}

#[cfg(test)]
mod tests;
