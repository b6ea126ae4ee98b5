//! Connecting to IDunno's NATS bus (URL and credentials from flags or environment) and typed
//! request/reply with a bounded wait. Shared by `idunno-node`, the `idunno` CLI and the tests.

#![warn(missing_docs)]

pub mod denials;
pub mod fsck;
mod infer;
pub mod jobs;
mod options;
pub mod part;
mod request;
pub mod sdfs;
pub mod secure;
pub mod transfer;
pub mod workers;

pub use infer::{infer, model_info, NO_NODE_TAKES_REQUESTS};
pub use options::{BusOptions, ConnectError};
pub use request::{publish, request, RequestError};

/// Where IDunno's installed tools live (`${IDUNNO_HOME:-$HOME/.cache/idunno}`).
pub fn tools_home() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("IDUNNO_HOME") {
        return home.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::path::Path::new(&home).join(".cache/idunno")
}

/// The nats-server that `infra/setup.sh` installed, else `nats-server` from PATH.
pub fn nats_server_binary() -> std::path::PathBuf {
    let installed = tools_home().join("bin/nats-server");
    if installed.exists() {
        installed
    } else {
        "nats-server".into()
    }
}
