//! Connecting to IDunno's NATS bus (URL and credentials from flags or environment) and typed
//! request/reply with a bounded wait. Shared by `idunno-node`, the `idunno` CLI and the tests.

mod options;
mod request;

pub use options::{BusOptions, ConnectError};
pub use request::{publish, request, RequestError};
