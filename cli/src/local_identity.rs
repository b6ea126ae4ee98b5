//! Which credentials a command uses against the local cluster: the secure local cluster's
//! operator identity, when the command names none and that cluster is up at its URL.

use crate::{local, local_secure};
use bus_client::BusOptions;
use std::path::Path;

/// `bus` as the operator of the secure local cluster in [`local_secure::DEFAULT_DIR`] when
/// it names no credentials and that cluster is up at its URL; else `bus` unchanged.
pub fn with_local_identity(bus: BusOptions) -> BusOptions {
    let named = bus.identity.is_some()
        || bus.nkey.is_some()
        || bus.creds.is_some()
        || bus.user.is_some()
        || bus.token.is_some()
        || bus.tls_ca.is_some()
        || bus.tls_cert.is_some();
    if named {
        return bus;
    }
    match local::operator_identity(Path::new(local_secure::DEFAULT_DIR), &bus.url) {
        Some(identity) => BusOptions {
            identity: Some(identity),
            ..bus
        },
        None => bus,
    }
}
