//! Why a flag or setting cannot be used: the error every flag check returns (the node's
//! config, the inference flags), apart from the config itself so that every module checking a
//! flag can use it.

/// A flag or setting the node cannot run with; the message names the flag and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl From<crate::membership::args::OutOfRange> for ConfigError {
    fn from(e: crate::membership::args::OutOfRange) -> Self {
        ConfigError(e.0)
    }
}

impl From<bus_client::ConnectError> for ConfigError {
    fn from(e: bus_client::ConnectError) -> Self {
        ConfigError(e.to_string())
    }
}

/// Fails with the message `why` makes unless `ok`.
pub fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError(why()))
    }
}
