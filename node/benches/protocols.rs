//! Online inference by three ways in, side by side in one run (`make bench`): the Open
//! Inference Protocol (`POST /v2/models/<m>/infer`, binary tensor data, FP32 input and BYTES
//! PNG input), IDunno's `POST /api/infer` (JSON, base64 PNGs) and `idunno.v1.infer` on the bus
//! (MessagePack, PNGs), at 1 and 64 images per request, one request after another on one
//! node of a 3-node cluster; rounds interleave the ways, p50 and p99 over every round. HTTP
//! requests go over one kept-alive connection, as inference clients do.
//!
//! Knobs (environment): `BENCH_INFERS` (default 200 requests per way, size and round),
//! `BENCH_ROUNDS` (default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use base64::Engine as _;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{env_or, import_fashion, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

/// One kept-alive HTTP/1.1 connection.
struct Http {
    addr: String,
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(addr: &str) -> Http {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Http {
            addr: addr.into(),
            reader: BufReader::new(stream),
        }
    }

    /// POSTs `body` with `headers`; the status and the body.
    fn post(&mut self, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Vec<u8>) {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        let code = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut out = vec![0; len];
        self.reader.read_exact(&mut out).unwrap();
        (code, out)
    }
}

/// A v2 infer body: the JSON header, then one input's binary data.
fn v2_body(input: &str, datatype: &str, shape: &[usize], data: &[u8]) -> (Vec<u8>, usize) {
    let header = serde_json::json!({
        "inputs": [{"name": input, "datatype": datatype, "shape": shape,
                    "parameters": {"binary_data_size": data.len()}}],
        "outputs": [{"name": "class", "parameters": {"binary_data": true}}],
    });
    let mut body = serde_json::to_vec(&header).unwrap();
    let len = body.len();
    body.extend_from_slice(data);
    (body, len)
}

/// The ways in, for `n` images: a name and what one request takes.
enum Way {
    V2Tensor(Vec<u8>, usize),
    V2Png(Vec<u8>, usize),
    Api(Vec<u8>),
    Bus(InferRequest),
}

fn ways(pixels: &[u8], pngs: &[Vec<u8>], n: usize) -> Vec<(&'static str, Way)> {
    let (mean, std) = (0.286f32, 0.353f32);
    let floats: Vec<u8> = pixels[..n * 784]
        .iter()
        .flat_map(|p| ((f32::from(*p) / 255.0 - mean) / std).to_le_bytes())
        .collect();
    let (tensor, tlen) = v2_body("input", "FP32", &[n, 1, 28, 28], &floats);
    let mut bytes = Vec::new();
    for png in &pngs[..n] {
        bytes.extend_from_slice(&(png.len() as u32).to_le_bytes());
        bytes.extend_from_slice(png);
    }
    let (png_body, plen) = v2_body("image", "BYTES", &[n], &bytes);
    let b64: Vec<String> = pngs[..n]
        .iter()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
        .collect();
    let api = serde_json::to_vec(&serde_json::json!({"model": "fixture", "images": b64})).unwrap();
    let bus = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: pngs[..n].iter().cloned().map(ByteBuf::from).collect(),
        timeout_ms: 30_000,
        tensor: None,
    };
    vec![
        ("v2, FP32 tensor (binary)", Way::V2Tensor(tensor, tlen)),
        ("v2, BYTES PNG (binary)", Way::V2Png(png_body, plen)),
        ("`POST /api/infer`, JSON base64 PNG", Way::Api(api)),
        ("`idunno.v1.infer`, PNG", Way::Bus(bus)),
    ]
}

/// Milliseconds of one request by `way`.
async fn once(http: &mut Http, client: &async_nats::Client, way: &Way) -> f64 {
    let started = Instant::now();
    let v2 = "/v2/models/fixture/infer";
    let status = match way {
        Way::V2Tensor(body, len) | Way::V2Png(body, len) => {
            let h = [("Inference-Header-Content-Length", len.to_string())];
            http.post(v2, &h, body).0
        }
        Way::Api(body) => {
            let h = [("Content-Type", "application/json".to_string())];
            http.post("/api/infer", &h, body).0
        }
        Way::Bus(req) => match bus_client::infer(client, req, Duration::from_secs(60)).await {
            Ok(InferReply::Done { .. }) => 200,
            other => panic!("idunno.v1.infer: {other:?}"),
        },
    };
    assert_eq!(status, 200);
    started.elapsed().as_secs_f64() * 1000.0
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn run() {
    let infers: usize = env_or("BENCH_INFERS", 200);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    println!("## Online inference: Open Inference Protocol vs /api/infer vs idunno.v1.infer\n");
    let c = Cluster::start(Path::new(NODE), 3).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let addr = c.seen("n1", "n1").await.unwrap().http.unwrap();
    let (pixels, pngs) = (common::test_pixels(64), common::test_pngs(64));
    let mut http = Http::connect(&addr);
    println!("| way in | images | p50 ms | p99 ms |\n|---|---|---|---|");
    for n in [1, 64] {
        let ways = ways(&pixels, &pngs, n);
        for (_, way) in &ways {
            once(&mut http, &c.client, way).await; // warm: the model loaded, the path taken
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        for _ in 0..rounds {
            for (i, (_, way)) in ways.iter().enumerate() {
                for _ in 0..infers {
                    times[i].push(once(&mut http, &c.client, way).await);
                }
            }
        }
        for ((name, _), t) in ways.iter().zip(times.iter_mut()) {
            let (p50, p99) = (percentile(t, 0.5), percentile(t, 0.99));
            println!("| {name} | {n} | {p50:.1} | {p99:.1} |");
        }
    }
}
