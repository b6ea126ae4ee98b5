//! The wire contract of IDunno.
//!
//! Every subject string comes from [`subjects`]; every payload is one MessagePack map with named
//! fields and a top-level `schema_version` (see [`codec`]). This crate depends on serde,
//! rmp-serde and thiserror only, so any tool can speak the protocol without pulling in NATS,
//! tokio or libtorch.

#![warn(missing_docs)]

pub mod codec;
pub mod control;
pub mod membership;
pub mod names;
pub mod subjects;

pub use codec::{decode, encode, DecodeError, EncodeError, Message, SCHEMA_VERSION};
pub use names::{validate_token, NameError};
