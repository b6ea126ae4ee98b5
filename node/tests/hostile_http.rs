//! Hostile HTTP against a real node: bodies of the wrong type or size, requests from other
//! origins and for other hosts, too many event streams, slow headers, guessed tokens, and
//! arbitrary bytes into every POST endpoint. The node answers each with a 4xx in the API's error
//! shape and keeps answering everyone else.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::http::{get, request, Answer, EventStream};
use testkit::{wait_until, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_idunno-node");
const TOKEN: &str = "s3cret-dashboard-token";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Starts one node with a small event-stream cap, a 1 s header timeout and a 64 KiB infer
/// body cap on a loopback port; returns the cluster and the dashboard address.
async fn node(extra: &[&str]) -> (Cluster, String) {
    let port = testkit::free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut flags = vec![
        "--http",
        &bind,
        "--http-max-streams",
        "2",
        "--http-header-timeout-ms",
        "1000",
        "--http-max-infer-body",
        "65536",
    ];
    flags.extend_from_slice(extra);
    let c = Cluster::start_with(Path::new(BIN), 1, &flags).await;
    (c, bind)
}

/// Asserts a status and the error shape with `kind`.
fn refused(a: &Answer, status: u16, kind: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {a:?}");
    let body = a.json();
    assert_eq!(body["reply"], "error", "{what}: {a:?}");
    assert_eq!(body["kind"], kind, "{what}: {a:?}");
    assert!(body["message"].is_string(), "{what}: {a:?}");
}

/// Sends `head` (a whole request head, CRLFs included) and `body` as they are; returns the
/// status and the body text.
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = body
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    (status, json)
}

#[tokio::test]
async fn wrong_media_types_origins_hosts_and_sizes_are_refused() {
    let (c, addr) = node(&[]).await;
    let spec = br#"{"kind": "serve", "model": "nope", "batch": 8}"#;
    // 415: text/plain, forms and bodies without a type; the same body as JSON passes.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let a = request("POST", &addr, "/api/jobs", &[("Content-Type", ct)], spec);
        refused(&a, 415, "unsupported_media_type", ct);
        let a = request("POST", &addr, "/api/login", &[("Content-Type", ct)], b"{}");
        refused(&a, 415, "unsupported_media_type", ct);
        let a = request(
            "POST",
            &addr,
            "/api/infer?model=m",
            &[("Content-Type", ct)],
            b"x",
        );
        refused(&a, 415, "unsupported_media_type", ct);
    }
    let a = request("POST", &addr, "/api/jobs", &[], spec);
    refused(&a, 415, "unsupported_media_type", "no Content-Type");
    // The jobs API subscribes once its JetStream buckets are open, a moment after the node
    // joins: until then the dashboard answers 503 "unavailable".
    let a = wait_until("the jobs API answers", Duration::from_secs(30), || async {
        let a = request("POST", &addr, "/api/jobs", &[JSON], spec);
        (a.status != 503).then_some(a)
    })
    .await;
    refused(&a, 404, "not_found", "the JSON spec reaches the jobs API");
    let utf8 = ("Content-Type", "application/json; charset=utf-8");
    refused(
        &request("POST", &addr, "/api/jobs", &[utf8], spec),
        404,
        "not_found",
        "charset",
    );

    // 403: a state change from another origin (Origin, or Referer without one).
    for (h, v) in [
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
        ("Origin", "http://127.0.0.1:1"),
        ("Referer", "http://evil.example/page"),
    ] {
        let a = request("POST", &addr, "/api/jobs", &[JSON, (h, v)], spec);
        refused(&a, 403, "forbidden", v);
        let a = request("POST", &addr, "/api/jobs/x/cancel", &[(h, v)], b"");
        refused(&a, 403, "forbidden", v);
    }
    let own = format!("http://{addr}");
    let a = request("POST", &addr, "/api/jobs", &[JSON, ("Origin", &own)], spec);
    refused(&a, 404, "not_found", "the node's own origin");
    assert_eq!(
        get(&addr, "/api/members", &[("Origin", "http://evil.example")]).status,
        200,
        "reads are not state changes"
    );

    // 421: a Host this node does not serve (DNS rebinding); localhost is served on loopback.
    let port = addr.rsplit(':').next().unwrap();
    for host in ["rebind.evil.example", "10.9.9.9", "localhost.evil.example"] {
        let head = format!(
            "GET /api/members HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw(&addr, &head, b"");
        assert_eq!(
            (status, body["kind"].as_str()),
            (421, Some("misdirected")),
            "{host}"
        );
    }
    let head =
        format!("GET /api/members HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(&addr, &head, b"").0, 200);

    // 413: bodies over the endpoint's cap, declared or chunked.
    let big = vec![b' '; 100 << 10];
    let a = request("POST", &addr, "/api/jobs", &[JSON], &big);
    refused(&a, 413, "too_large", "a 100 KiB job spec");
    let image = vec![0u8; 70_000];
    let png = ("Content-Type", "image/png");
    let a = request("POST", &addr, "/api/infer?model=m", &[png], &image);
    refused(
        &a,
        413,
        "too_large",
        "a 70 kB image over --http-max-infer-body",
    );
    let head = format!(
        "POST /api/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b' '; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(&addr, &head, &chunked);
    assert_eq!((status, body["kind"].as_str()), (413, Some("too_large")));
    assert!(
        c.view("n1").await.is_some(),
        "the node still answers on the bus"
    );
}

#[tokio::test]
async fn event_streams_are_capped_and_slow_headers_are_cut_off() {
    let (c, addr) = node(&[]).await;
    let first = EventStream::open(&addr, "/api/events", &[]);
    let second = EventStream::open(&addr, "/api/events", &[]);
    assert_eq!((first.status, second.status), (200, 200));
    let a = get(&addr, "/api/events", &[]);
    refused(
        &a,
        503,
        "overloaded",
        "a third event stream over --http-max-streams 2",
    );
    drop(first);
    wait_until(
        "a closed stream frees its slot",
        Duration::from_secs(10),
        || async {
            let s = EventStream::open(&addr, "/api/events", &[]);
            (s.status == 200).then_some(())
        },
    )
    .await;
    drop(second);

    // Slow loris: one header byte every 200 ms. The node closes the connection after the
    // 1 s header timeout and answers others meanwhile.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    slow.write_all(b"GET /api/members HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut answered_meanwhile = false;
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slow connection stays open"
        );
        let _ = slow.write_all(b"X");
        let mut buf = [0u8; 512];
        match slow.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    !text.starts_with("HTTP/1.1 200"),
                    "the slow request was served: {text}"
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break started.elapsed(),
            Err(_) => {}
        }
        if !answered_meanwhile {
            answered_meanwhile = get(&addr, "/healthz", &[]).status == 200;
        }
    };
    assert!(
        answered_meanwhile,
        "the node answered others while the slow client sent headers"
    );
    assert!(
        closed_after >= Duration::from_millis(800) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    // An idle connection that never sends a byte is closed too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let read = idle.read(&mut buf);
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "an idle connection is closed after the header timeout: {read:?}"
    );
    assert_eq!(get(&addr, "/api/members", &[]).status, 200);
    assert!(c.view("n1").await.is_some());
}

#[tokio::test]
async fn sessions_replace_the_token_in_the_cookie_and_logins_are_rate_limited() {
    let (c, addr) = node(&["--http-token", TOKEN]).await;
    let body = format!(r#"{{"token": "{TOKEN}"}}"#);
    let login = request("POST", &addr, "/api/login", &[JSON], body.as_bytes());
    assert_eq!(login.status, 204, "{login:?}");
    let cookie = login.header("set-cookie").expect("a cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    let (name, id) = pair.split_once('=').unwrap();
    assert_eq!(name, "idunno_session");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token: {cookie}"
    );
    assert!(
        id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let with_cookie = [("Cookie", pair.as_str())];
    assert_eq!(get(&addr, "/api/members", &with_cookie).status, 200);
    assert_eq!(
        get(&addr, "/api/auth", &with_cookie).json()["authenticated"],
        true
    );
    let raw_token = format!("idunno_session={TOKEN}");
    let a = get(&addr, "/api/members", &[("Cookie", &raw_token)]);
    refused(&a, 401, "unauthorized", "the raw token as a cookie");
    let old_style = format!("idunno_token={TOKEN}");
    refused(
        &get(&addr, "/api/members", &[("Cookie", &old_style)]),
        401,
        "unauthorized",
        "old cookie",
    );

    // Logout ends the session on the server: the old cookie is refused afterwards.
    let out = request("POST", &addr, "/api/logout", &with_cookie, b"");
    assert_eq!(out.status, 204);
    refused(
        &get(&addr, "/api/members", &with_cookie),
        401,
        "unauthorized",
        "after logout",
    );
    assert_eq!(
        get(&addr, "/api/auth", &with_cookie).json()["authenticated"],
        false
    );

    // Five wrong tokens, then 429 with Retry-After, even for the right token.
    for i in 0..5 {
        let bad = format!(r#"{{"token": "wrong-token-{i}"}}"#);
        let a = request("POST", &addr, "/api/login", &[JSON], bad.as_bytes());
        refused(&a, 401, "unauthorized", "a wrong token");
    }
    let a = request("POST", &addr, "/api/login", &[JSON], body.as_bytes());
    refused(&a, 429, "rate_limited", "the sixth attempt in a minute");
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(a.header("set-cookie").is_none());
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        get(&addr, "/api/members", &[("Authorization", &bearer)]).status,
        200
    );
    assert!(c.view("n1").await.is_some());
}

/// A body: arbitrary bytes, or JSON objects with the API's field names and hostile values.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        Just(u64::MAX.to_string()),
        Just("1e400".to_string()),
        "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".to_string()),
        Just("null".to_string()),
    ];
    let key = prop::sample::select(vec![
        "kind",
        "model",
        "batch",
        "token",
        "images",
        "dataset",
        "epochs",
        "split",
        "weight",
        "timeout_ms",
        "version",
        "passes",
        "lr",
    ]);
    let object = prop::collection::vec((key, value), 0..6).prop_map(|fields| {
        let inner: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", inner.join(", ")).into_bytes()
    });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), object]
}

#[tokio::test]
async fn arbitrary_bodies_to_every_post_endpoint_get_a_4xx_never_a_5xx() {
    let (c, addr) = node(&["--http-token", TOKEN]).await;
    let bearer = format!("Bearer {TOKEN}");
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        let headers = [JSON, ("Authorization", bearer.as_str())];
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        for path in [
            "/api/jobs",
            "/api/login",
            "/api/infer",
            "/api/jobs/x/cancel",
            "/api/logout",
        ] {
            runner
                .run(&bodies(), |body| {
                    let a = request("POST", &addr2, path, &headers, &body);
                    prop_assert!(a.status < 500, "{path}: {a:?}");
                    if a.status >= 400 {
                        prop_assert_eq!(&a.json()["reply"], "error", "{}: {:?}", path, a);
                        prop_assert!(a.json()["kind"].is_string());
                    }
                    // The body-reading endpoints never take arbitrary bytes.
                    if ["/api/jobs", "/api/infer"].contains(&path) {
                        prop_assert!(a.status >= 400, "{path}: {a:?}");
                    }
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    })
    .await
    .unwrap();
    assert_eq!(get(&addr, "/healthz", &[]).status, 200);
    assert!(
        c.view("n1").await.is_some(),
        "the node still answers on the bus"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_idle_ones_are_cut() {
    let (c, addr) = node(&["--http-max-connections", "2"]).await;
    // Two idle connections take both slots; the header timeout (1 s) frees them.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let started = Instant::now();
    let a = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || get(&addr, "/api/members", &[])
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        waited >= Duration::from_millis(500),
        "the third connection was served before a slot was free ({waited:?})"
    );
    drop(idle);
    assert!(c.view("n1").await.is_some());
}
