//! The wire contract of IDunno.
//!
//! Every subject string comes from [`subjects`]; every payload is one MessagePack map with named
//! fields and a top-level `schema_version` (see [`codec`]). This crate depends on serde,
//! rmp-serde and thiserror only, so any tool can speak the protocol without pulling in NATS,
//! tokio or libtorch.

#![warn(missing_docs)]

mod bytes_field;
pub mod cluster;
pub mod codec;
pub mod control;
pub mod dp;
pub mod fsck;
pub mod infer;
pub mod jobs;
pub mod membership;
pub mod models;
pub mod names;
pub mod roles;
pub mod sdfs;
pub mod sdfs_limits;
pub mod serve;
pub mod shapes;
pub mod subjects;
mod work_check;

pub use codec::{decode, encode, DecodeError, EncodeError, Message, SCHEMA_VERSION};
pub use names::{validate_dir_name, validate_file_name, validate_token, NameError};
