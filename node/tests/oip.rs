//! The Open Inference Protocol (KServe v2) on a real cluster, called by the real Triton HTTP
//! client (`tritonclient[http]` from PyPI, untouched, in the venv `infra/setup.sh` makes):
//! server and model readiness, model metadata, and infer with an FP32 tensor of 64
//! Fashion-MNIST images and with the same images as BYTES PNG files, giving the classes
//! `idunno infer` (`idunno.v1.infer`) gives, which are PyTorch's. Also `/readyz` and the
//! protocol's errors for bad requests.

use bus_client::request;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use bus_schemas::subjects;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{import_fashion, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
mod common;

use common::{expected, import_fixture, test_pixels, test_pngs};

/// Images sent in each request.
const N: usize = 64;

/// The classes `idunno infer` gives for `pngs`.
async fn idunno_infer(c: &Cluster, model: &str, pngs: &[Vec<u8>]) -> Vec<i64> {
    let req = InferRequest {
        labels: Vec::new(),
        model: model.into(),
        version: None,
        images: pngs.iter().cloned().map(ByteBuf::from).collect(),
        timeout_ms: 30_000,
        tensor: None,
    };
    let reply: InferReply = request(&c.client, subjects::infer(), &req, Duration::from_secs(60))
        .await
        .unwrap();
    let InferReply::Done { predictions, .. } = reply else {
        panic!("idunno infer failed: {reply:?}");
    };
    predictions.iter().map(|p| p.class).collect()
}

/// Runs the Triton client script against `addr`; its JSON report.
fn triton_client(addr: &str, model: &str, dir: &Path) -> Value {
    let python: PathBuf = bus_client::tools_home().join("triton-venv/bin/python");
    let script = testkit::repo_dir().join("node/tests/oip/triton_client.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .args([addr, model])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{} (run infra/setup.sh): {e}", python.display()));
    assert!(
        out.status.success(),
        "the Triton client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_triton_client_reads_metadata_and_infers_what_idunno_infer_does() {
    let c = Cluster::start_with(Path::new(NODE), 3, &[]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    import_fixture(&fs, &jobs, "fixture").await;
    let addr = c.seen("n1", "n2").await.unwrap().http.unwrap();
    let ready = testkit::http::get(&addr, "/readyz", &[]);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["member"], true);

    let (pixels, pngs) = (test_pixels(N), test_pngs(N));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pixels.u8"), &pixels).unwrap();
    for (i, png) in pngs.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i}.png")), png).unwrap();
    }
    let want = idunno_infer(&c, "fixture", &pngs).await;
    assert_eq!(
        want,
        expected().predicted[..N],
        "idunno infer gives PyTorch's classes"
    );

    let got = triton_client(&addr, "fixture", dir.path());
    for key in ["server_live", "server_ready", "model_ready"] {
        assert_eq!(got[key], true, "{key}: {got}");
    }
    assert_eq!(got["unknown_model_ready"], false);
    assert_eq!(got["server"]["name"], "idunno");
    let meta = &got["metadata"];
    assert_eq!(meta["name"], "fixture");
    assert_eq!(
        meta["inputs"][0]["shape"],
        serde_json::json!([-1, 1, 28, 28])
    );
    assert_eq!(meta["outputs"][3]["shape"], serde_json::json!([-1, 10]));
    let classes = |key: &str| -> Vec<i64> { serde_json::from_value(got[key].clone()).unwrap() };
    assert_eq!(classes("tensor_classes"), want, "FP32 tensor: {got}");
    assert_eq!(classes("png_classes"), want, "BYTES PNG: {got}");
    assert_eq!(got["tensor_names"], got["png_names"]);
    assert_eq!(
        got["tensor_probabilities_shape"],
        serde_json::json!([N, 10])
    );
    assert_eq!(got["tensor_id"], "fp32");
    let top = got["png_top3_first"][0].as_str().unwrap();
    let name = got["png_names"][0].as_str().unwrap();
    assert!(top.ends_with(&format!(":{}:{name}", want[0])), "{top}");
    let bad = &got["bad_shape_error"];
    assert_eq!(bad["status"], "400", "{got}");
    assert!(
        bad["message"].as_str().unwrap().contains("1×28×28"),
        "{bad}"
    );
}

#[tokio::test]
async fn bad_requests_get_the_protocols_errors_and_the_node_keeps_serving() {
    let flags = ["--replication", "1", "--write-quorum", "1"];
    let c = Cluster::start_with(Path::new(NODE), 1, &flags).await;
    let addr = c.seen("n1", "n1").await.unwrap().http.unwrap();
    let post = |path: &str, body: &[u8]| testkit::http::request("POST", &addr, path, &[], body);
    let cases: [(&str, &[u8], u16, &str); 5] = [
        (
            "/v2/models/nope/infer",
            br#"{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}"#,
            404,
            "unknown model",
        ),
        (
            "/v2/models/nope/infer",
            b"{not json",
            400,
            "bad inference request JSON",
        ),
        (
            "/v2/models/nope/versions/x/infer",
            b"{}",
            400,
            "not a number",
        ),
        (
            "/v2/models/nope/infer",
            br#"{"inputs": []}"#,
            400,
            "exactly one input",
        ),
        ("/v2/what", b"", 404, "Open Inference Protocol"),
    ];
    // The node is ready once it takes online requests (its inference subscription is up, a
    // moment after it has joined; before, the bus would answer "no responders"): a client that
    // waits for readiness never sees that.
    let ready = wait_until("/v2/health/ready", Duration::from_secs(30), || async {
        let a = testkit::http::get(&addr, "/readyz", &[]);
        (a.status == 200).then(|| a.json())
    })
    .await;
    assert_eq!(ready["serving"], true, "{ready}");
    for (path, body, status, why) in cases {
        let a = post(path, body);
        assert_eq!(a.status, status, "{path}: {}", a.body);
        let message = a.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(why), "{path}: {message}");
    }
    let a = testkit::http::get(&addr, "/v2/models/nope", &[]);
    assert_eq!(a.status, 404, "{}", a.body);
    let a = testkit::http::get(&addr, "/v2/health/live", &[]);
    assert_eq!(a.status, 200);
    assert_eq!(testkit::http::get(&addr, "/healthz", &[]).status, 200);
}
