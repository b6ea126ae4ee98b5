//! `idunno fsck` against a real local cluster whose JetStream storage was lost while it was
//! down: the nodes keep every blob in quarantine, `fsck` says so and fails, and
//! `fsck --rebuild` brings every version back byte-identical.

use std::time::{Duration, Instant};
use testkit::free_ports;

mod common;

use common::{json, Local};

fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn fsck_reports_a_lost_metadata_bucket_and_rebuild_restores_every_version() {
    let c = Local::up(3);
    let root = c.dir.path();
    std::fs::write(root.join("a.txt"), "first\n").unwrap();
    std::fs::write(root.join("b.txt"), "second version\n").unwrap();
    c.ok(&["put", "a.txt", "docs/a.txt"]);
    c.ok(&["put", "b.txt", "docs/a.txt"]);
    c.ok(&["put", "a.txt", "other/x"]);
    // (The blobs of the probe file `Local::up` deleted are orphans until the keepers' next pass.)
    let healthy = until("fsck finds SDFS healthy", || {
        let out = c.run(&["--json", "fsck", "--replication", "3"]);
        out.status
            .success()
            .then(|| json(&String::from_utf8_lossy(&out.stdout)))
    });
    assert_eq!(healthy["report"]["versions"], 3, "{healthy}");

    // Down, JetStream's storage lost, up again on the same data directories.
    c.ok(&["local", "down", "--dir", "cluster"]);
    std::fs::remove_dir_all(root.join("cluster/nats")).unwrap();
    let (_, http) = free_ports(3);
    let port = http.to_string();
    c.ok(&[
        "local",
        "up",
        "--nodes",
        "3",
        "--dir",
        "cluster",
        "--http-port",
        &port,
    ]);
    let report = until("every node keeps its blobs in quarantine", || {
        let out = c.run(&["--json", "fsck", "--replication", "3"]);
        let r = json(&String::from_utf8_lossy(&out.stdout));
        let nodes = r["report"]["nodes"].as_array()?.clone();
        let all = nodes.len() == 3 && nodes.iter().all(|n| n["trusted"] == false);
        (all && out.status.code() == Some(1)).then_some(r)
    });
    assert_eq!(report["report"]["files"], 0, "{report}");
    assert_eq!(report["report"]["orphans"].as_array().unwrap().len(), 3);
    let plain = c.err(&["fsck", "--replication", "3"]);
    assert!(
        plain.contains("3 orphan blob(s)") && plain.contains("in quarantine"),
        "{plain}"
    );

    let rebuilt = json(&c.ok(&["--json", "fsck", "--rebuild", "--replication", "3"]));
    assert_eq!(rebuilt["restored"]["versions"], 3, "{rebuilt}");
    c.ok(&["get", "docs/a.txt", "v2.txt"]);
    c.ok(&["get", "docs/a.txt", "v1.txt", "--version", "1"]);
    c.ok(&["get", "other/x", "x.txt"]);
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    assert_eq!(read("v2.txt"), "second version\n");
    assert_eq!(read("v1.txt"), "first\n");
    assert_eq!(read("x.txt"), "first\n");
    c.ok(&["fsck", "--replication", "3"]);
}
