//! Uploads through the dashboard against a real node: bodies of the wrong type or over the
//! limit (declared or streamed), bad names and flags, hostile tar archives (`..`, links,
//! devices, arbitrary bytes) and a model for a dataset that does not exist. Each gets a 4xx in
//! the API's error shape, nothing is left staged or stored, and a good folder still imports.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use testkit::http::{get, request, Answer};
use testkit::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_idunno-node");
const OCTETS: (&str, &str) = ("Content-Type", "application/octet-stream");
const TAR: (&str, &str) = ("Content-Type", "application/x-tar");
const LIMIT: usize = 65536;

/// Asserts a status and the error shape with `kind`; returns the message.
fn refused(a: &Answer, status: u16, kind: &str, what: &str) -> String {
    assert_eq!(a.status, status, "{what}: {a:?}");
    let body = a.json();
    assert_eq!(
        (&body["reply"], &body["kind"]),
        (&"error".into(), &kind.into()),
        "{what}: {a:?}"
    );
    body["message"].as_str().unwrap_or_default().to_string()
}

/// A tar archive of `(path, kind, bytes)` entries, written raw so that hostile paths survive.
fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn png(bright_left: bool, i: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(8, 8, |x, _| {
        image::Luma([if (x < 4) == bright_left { 200 } else { 20 } + i])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Sends `body` chunked (no Content-Length) and returns the status.
fn chunked(addr: &str, path: &str, media: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {media}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(8192) {
        let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = s.write_all(chunk);
        let _ = s.write_all(b"\r\n");
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_leave_nothing_behind() {
    let limit = LIMIT.to_string();
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    let flags = [
        "--http",
        &addr,
        "--replication",
        "1",
        "--write-quorum",
        "1",
        "--http-max-upload-body",
        &limit,
    ];
    let mut c = Cluster::start_with(Path::new(BIN), 1, &flags).await;
    let staging = c.node("n1").data_dir.join("staging");
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        let addr = addr2.as_str();
        let post =
            |path: &str, h: (&str, &str), body: &[u8]| request("POST", addr, path, &[h], body);
        let model = "/api/models/m/upload?dataset=nope";

        // The media type each upload reads, and the size limit, before a byte is stored.
        let json = ("Content-Type", "application/json");
        refused(
            &post(model, json, b"{}"),
            415,
            "unsupported_media_type",
            "json model",
        );
        refused(
            &post("/api/datasets/d/upload", OCTETS, b"x"),
            415,
            "unsupported_media_type",
            "octets dataset",
        );
        let big = vec![7u8; LIMIT + 1];
        let why = refused(&post(model, OCTETS, &big), 413, "too_large", "declared");
        assert!(why.contains("--http-max-upload-body"), "{why}");
        assert_eq!(
            chunked(addr, model, "application/octet-stream", &big),
            413,
            "streamed"
        );
        assert_eq!(
            chunked(addr, "/api/datasets/d/upload", "application/x-tar", &big),
            413
        );
        refused(&post(model, OCTETS, b""), 400, "bad_input", "empty");

        // Names and flags as the CLI checks them.
        let why = refused(
            &post("/api/models/a.b/upload?dataset=fm", OCTETS, b"x"),
            400,
            "bad_input",
            "name",
        );
        assert!(why.contains("bad model name"), "{why}");
        let why = refused(
            &post("/api/models/m/upload?dataset=fm&std=1,x", OCTETS, b"x"),
            400,
            "bad_input",
            "std",
        );
        assert_eq!(why, "--std: \"x\" is not a number");
        refused(
            &post("/api/datasets/a%20b/upload", TAR, b"x"),
            400,
            "bad_input",
            "dataset name",
        );

        // A model for a dataset that does not exist: refused as `idunno model import` is, and
        // its upload is deleted again.
        let a = post(model, OCTETS, b"not torchscript, but never loaded");
        refused(&a, 404, "not_found", "unknown dataset");
        assert_eq!(a.json()["reason"], "unknown_dataset", "{a:?}");

        // Hostile archives.
        let f = tar::EntryType::Regular;
        for (entries, why) in [
            (vec![("../evil.png", f, &b"x"[..])], "must stay inside"),
            (
                vec![("pics/link", tar::EntryType::Symlink, &b""[..])],
                "not a symbolic link",
            ),
            (
                vec![("pics/fifo", tar::EntryType::Fifo, &b""[..])],
                "not a named pipe",
            ),
            (
                vec![("a/1.png", f, &b"x"[..]), ("a/1.png", f, &b"y"[..])],
                "twice",
            ),
            (vec![("pics/README", f, &b"no images"[..])], "no"),
        ] {
            let a = post("/api/datasets/d/upload", TAR, &archive(&entries));
            let message = refused(&a, 400, "bad_input", why);
            assert!(message.contains(why), "{entries:?}: {message}");
            assert!(
                !message.contains("staging"),
                "no staging path leaks: {message}"
            );
        }
        let mut runner = TestRunner::new(Config {
            cases: 24,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&prop::collection::vec(any::<u8>(), 1..4096), |body| {
                let a = post("/api/datasets/d/upload", TAR, &body);
                prop_assert_eq!(a.status, 400, "{:?}", a);
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();

    // Nothing staged is left, nothing was stored.
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in staging: {left:?}");
    let files = get(&addr, "/api/files", &[]).json();
    assert_eq!(files["files"], serde_json::json!([]), "{files}");

    // A good folder still imports.
    let mut entries = Vec::new();
    for (split, n) in [("train", 6u8), ("test", 2)] {
        for (class, left) in [("left", true), ("right", false)] {
            for i in 0..n {
                entries.push((format!("halves/{split}/{class}/{i}.png"), png(left, i)));
            }
        }
    }
    let refs: Vec<(&str, tar::EntryType, &[u8])> = entries
        .iter()
        .map(|(p, b)| (p.as_str(), tar::EntryType::Regular, b.as_slice()))
        .collect();
    let body = archive(&refs);
    let a = request("POST", &addr, "/api/datasets/halves/upload", &[TAR], &body);
    assert_eq!(a.status, 201, "{a:?}");
    let m = &a.json()["manifest"];
    assert_eq!(m["classes"], serde_json::json!(["left", "right"]), "{a:?}");
    assert_eq!(
        (
            m["splits"]["train"]["count"].as_u64(),
            m["splits"]["test"]["count"].as_u64()
        ),
        (Some(12), Some(4))
    );
    let listed = get(&addr, "/api/datasets", &[]).json();
    assert_eq!(
        listed["datasets"][0]["manifest"]["name"], "halves",
        "{listed}"
    );
    assert!(c.view("n1").await.is_some(), "the node still answers");
}
