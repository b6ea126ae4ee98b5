//! Online inference on a real cluster: the PyTorch fixture answers through `idunno.v1.infer`
//! and `POST /api/infer` with PyTorch's predictions; concurrent requests are batched; a
//! request still queued at its deadline is answered with a timeout at the deadline; bad input
//! gets a clear error and every node keeps running.

use base64::Engine as _;
use bus_client::request;
use bus_schemas::infer::{ByteBuf, InferErrorKind, InferReply, InferRequest};
use bus_schemas::subjects;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
mod common;

use common::{expected, import_fixture, test_pngs};

/// The batching window of this test's nodes: long, so that batching and deadlines show.
const MAX_DELAY_MS: u64 = 1500;

async fn infer(c: &Cluster, model: &str, images: &[Vec<u8>], timeout_ms: u64) -> InferReply {
    let req = InferRequest {
        labels: Vec::new(),
        model: model.into(),
        version: None,
        images: images.iter().cloned().map(ByteBuf::from).collect(),
        timeout_ms,
        tensor: None,
    };
    let wait = Duration::from_millis(timeout_ms + 60_000);
    request(&c.client, subjects::infer(), &req, wait)
        .await
        .unwrap()
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(addr: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn online_inference_batches_meets_deadlines_and_refuses_bad_input() {
    let delay = MAX_DELAY_MS.to_string();
    let c = Cluster::start_with(Path::new(NODE), 3, &["--infer-max-delay-ms", &delay]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    let pngs = test_pngs(24);
    let want = expected().predicted;

    // 24 concurrent one-image requests: PyTorch's predictions, and batches of several.
    let asks = pngs
        .iter()
        .map(|png| infer(&c, "fixture", std::slice::from_ref(png), 60_000));
    let replies = futures::future::join_all(asks).await;
    let mut largest = 0;
    for (i, reply) in replies.iter().enumerate() {
        let InferReply::Done {
            predictions,
            version,
            batch,
            ..
        } = reply
        else {
            panic!("image {i}: {reply:?}");
        };
        assert_eq!((predictions.len(), *version), (1, 1));
        assert_eq!(predictions[0].class, want[i], "image {i}");
        assert_eq!(predictions[0].scores.len(), 10);
        largest = largest.max(*batch);
    }
    assert!(largest > 1, "24 requests over 3 nodes were never batched");

    // One request of all 24 images: the same predictions, with class names.
    let InferReply::Done { predictions, .. } = infer(&c, "fixture", &pngs, 60_000).await else {
        panic!("the 24-image request failed");
    };
    let got: Vec<i64> = predictions.iter().map(|p| p.class).collect();
    assert_eq!(got, want[..24]);
    assert_eq!(predictions[0].class_name, "Ankle boot");

    // A request still waiting for its batch at its deadline is answered then, with a timeout.
    let started = Instant::now();
    let reply = infer(&c, "fixture", &pngs[..1], 300).await;
    let took = started.elapsed();
    assert!(
        matches!(&reply, InferReply::Error { kind: InferErrorKind::Timeout, message }
            if message.contains("deadline of 300 ms")),
        "{reply:?}"
    );
    assert!(
        took < Duration::from_millis(MAX_DELAY_MS - 200),
        "answered after {took:?}, not at the deadline"
    );

    // Bad input: each a clear error.
    let corrupt = [pngs[0].clone(), b"not an image".to_vec()];
    let reply = infer(&c, "fixture", &corrupt, 60_000).await;
    assert!(
        matches!(&reply, InferReply::Error { kind: InferErrorKind::BadInput, message }
            if message.contains("image 2: not a PNG or JPEG image")),
        "{reply:?}"
    );
    let mut truncated = pngs[0].clone();
    truncated.truncate(60);
    let reply = infer(&c, "fixture", &[truncated], 60_000).await;
    assert!(
        matches!(
            &reply,
            InferReply::Error {
                kind: InferErrorKind::BadInput,
                ..
            }
        ),
        "{reply:?}"
    );
    let reply = infer(&c, "nope", &pngs[..1], 60_000).await;
    assert!(
        matches!(&reply, InferReply::Error { kind: InferErrorKind::UnknownModel, message }
            if message.contains("unknown model \"nope\"")),
        "{reply:?}"
    );
    let reply = infer(&c, "fixture", &[], 60_000).await;
    assert!(
        matches!(
            &reply,
            InferReply::Error {
                kind: InferErrorKind::BadInput,
                ..
            }
        ),
        "{reply:?}"
    );
    let garbage: InferReply = {
        let msg = c
            .client
            .request(subjects::infer(), b"\xc1garbage".to_vec().into())
            .await
            .unwrap();
        bus_schemas::decode(&msg.payload).unwrap()
    };
    assert!(
        matches!(
            garbage,
            InferReply::Error {
                kind: InferErrorKind::BadInput,
                ..
            }
        ),
        "{garbage:?}"
    );

    // The same through HTTP on a node's dashboard port.
    let view = c.view("n1").await.unwrap();
    let addr = view
        .iter()
        .find(|m| m.id == "n1")
        .unwrap()
        .http
        .clone()
        .unwrap();
    let b64 = |png: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(png);
    let body = serde_json::json!({"model": "fixture", "images": [b64(&pngs[0]), b64(&pngs[1])]});
    let (status, json) = http(
        &addr,
        "/api/infer",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["predictions"][0]["class"], want[0]);
    assert_eq!(json["predictions"][1]["class"], want[1]);
    let (status, json) = http(&addr, "/api/infer?model=fixture", "image/png", &pngs[2]);
    assert_eq!(
        (status, &json["predictions"][0]["class"]),
        (200, &want[2].into())
    );
    let (status, json) = http(&addr, "/api/infer?model=nope", "image/png", &pngs[2]);
    assert_eq!(status, 404, "{json}");
    let (status, json) = http(&addr, "/api/infer", "application/json", b"{\"model\": 3}");
    assert_eq!(status, 400, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("bad JSON"),
        "{json}"
    );
    let (status, json) = http(&addr, "/api/infer?model=fixture", "image/png", b"junk");
    assert_eq!(status, 400, "{json}");
    let path = "/api/infer?model=fixture&timeout_ms=200";
    let (status, json) = http(&addr, path, "image/png", &pngs[3]);
    assert_eq!(status, 504, "{json}");

    // Every node is still up, and answers.
    assert!(c.everyone_alive().await);
    let reply = infer(&c, "fixture", &pngs[..3], 60_000).await;
    assert!(matches!(reply, InferReply::Done { .. }), "{reply:?}");
}
