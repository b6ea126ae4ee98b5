//! Cluster membership: a SWIM-style failure detector over NATS.
//!
//! [`view`] and [`detector`] are the sans-IO core; [`service`] owns a detector and drives it
//! with the bus and the clock.

#![warn(missing_docs)]

pub mod args;
pub mod detector;
mod handle;
mod refusal_log;
pub mod service;
pub mod view;

pub use service::{spawn, MembershipHandle};
