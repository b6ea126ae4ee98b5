//! The host side of the machines: network namespaces, the bridge of a slot, who owns a slot,
//! and whether a server's JetStream is healthy.

use super::*;

/// Whether the nats-server monitoring at `addr` answers `/healthz` with 200 (JetStream
/// current), within 2 s.
pub(super) fn healthy(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 12];
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head[9..12] == b"200"
}

/// Runs `ip args…`; panics with its error output when it fails.
pub(super) fn ip_cmd(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

pub(super) fn bridge(slot: u8) -> String {
    format!("idnb{slot}")
}

/// Claims a free slot: creating its bridge is the lock (it fails if another run holds it).
/// The bridge's alias names this process; a bridge whose owner is gone is removed first.
pub(super) fn claim_slot() -> u8 {
    let me = std::process::id();
    for slot in 0..SLOTS {
        let name = bridge(slot);
        let made = Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            if owner(&name).is_some_and(|pid| !alive(pid)) {
                remove_slot(slot);
                if Command::new("ip")
                    .args(["link", "add", &name, "type", "bridge"])
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    return own(slot, me);
                }
            }
            continue;
        }
        return own(slot, me);
    }
    panic!("no free slot for machines: {SLOTS} bridges idnb* exist (ip link show type bridge)")
}

fn own(slot: u8, pid: u32) -> u8 {
    let name = bridge(slot);
    ip_cmd(&[
        "link",
        "set",
        "dev",
        &name,
        "alias",
        &format!("idunno-test pid={pid}"),
    ]);
    ip_cmd(&["addr", "add", &format!("10.213.{slot}.1/24"), "dev", &name]);
    ip_cmd(&["link", "set", &name, "up"]);
    slot
}

/// The pid named in the alias of bridge `name`, if it is one of ours.
fn owner(name: &str) -> Option<u32> {
    let alias = std::fs::read_to_string(format!("/sys/class/net/{name}/ifalias")).ok()?;
    alias.trim().strip_prefix("idunno-test pid=")?.parse().ok()
}

/// Whether this process runs as root (its effective uid, from `/proc/self/status`).
pub(super) fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    uid.and_then(|u| u.split_whitespace().nth(1)) == Some("0")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes slot `slot`'s links, namespaces (killing what still runs in them) and bridge.
/// The links go first and explicitly: a deleted namespace is cleaned up by the kernel later,
/// and its veth pair with it, so the next run could find the names still taken.
pub(super) fn remove_slot(slot: u8) {
    let links = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten();
    let prefix = format!("idn{slot}");
    for link in links {
        let name = link.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix(&prefix).unwrap_or("");
        if rest.len() == 1 && rest.bytes().all(|b| b.is_ascii_lowercase()) {
            let _ = Command::new("ip").args(["link", "del", &name]).status();
        }
    }
    let prefix = format!("idn{slot}-");
    let list = Command::new("ip").args(["netns", "list"]).output();
    let list = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for line in list.unwrap_or_default().lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if !ns.starts_with(&prefix) {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let pid = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        // Deleting the namespace also deletes its end of the veth, and so the other end.
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    let _ = Command::new("ip")
        .args(["link", "del", &bridge(slot)])
        .stderr(Stdio::null())
        .status();
}
