//! systemd's readiness protocol (`Type=notify`): once the node is ready (bus connected,
//! buckets open, member joined: `/readyz`), it sends `READY=1` to `$NOTIFY_SOCKET`, so
//! `systemctl start` returns when the node can serve and units ordered after it start then.
//! Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent.

use crate::dashboard::ready::Readiness;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often readiness is checked until the node is ready.
const POLL: Duration = Duration::from_millis(500);

/// Waits until the node is ready, then tells systemd (once); ends at `shutdown` otherwise.
pub async fn notify_when_ready(ready: Readiness, shutdown: CancellationToken) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    while !ready.check().await.ready {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    match notify(&socket, "READY=1\n") {
        Ok(()) => tracing::info!("ready: told systemd"),
        Err(e) => tracing::warn!("ready, but telling systemd failed: {e}"),
    }
}

/// Sends `state` to the notification socket `socket` (a path, or an abstract name after `@`).
fn notify(socket: &OsStr, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reaches_a_socket_by_path_and_by_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("idunno-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify(OsStr::new(&format!("@{name}")), "READY=1\n").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
