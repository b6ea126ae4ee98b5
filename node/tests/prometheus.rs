//! A real Prometheus server (Debian's `prometheus`, installed by `infra/setup.sh`) scrapes a
//! 3-node cluster while a serve job runs and online requests arrive: every target is up,
//! `promtool check metrics` finds nothing to say about any node's `/metrics`, and PromQL gives
//! the job's query rate and the online p99 as one series each, matching what the job record
//! and the client saw (no double counting across the nodes).

use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{import_fashion, serve_spec, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
mod common;

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second.
    fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: idunno\n    static_configs: [{{targets: [{}]}}]\n",
            list.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", testkit::free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus (Debian's package; run infra/setup.sh): {e}"));
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The result vector of an instant PromQL query (empty while Prometheus is not up).
    fn query(&self, promql: &str) -> Vec<Value> {
        let mut q = String::new();
        for b in promql.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => q.push(b as char),
                _ => q.push_str(&format!("%{b:02X}")),
            }
        }
        if std::net::TcpStream::connect(&self.addr).is_err() {
            return Vec::new(); // not listening yet
        }
        let path = format!("/api/v1/query?query={q}");
        let v = testkit::http::get(&self.addr, &path, &[]).json();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// The value of one series of a query result.
fn value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .unwrap_or("nan")
        .parse()
        .unwrap_or(f64::NAN)
}

/// `promtool check metrics` on `text`: what it said (nothing when clean).
fn promtool(text: &str) -> (bool, String) {
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]);
    let what = "promtool (Debian's prometheus; run infra/setup.sh)";
    let out = testkit::run_with_input(&mut cmd, text.as_bytes(), what);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said.trim().to_string())
}

/// Sends online requests of 4 images one after another until `stop`; counts those answered.
async fn online_load(
    client: async_nats::Client,
    pngs: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) {
    let req = InferRequest {
        labels: Vec::new(),
        model: "fixture".into(),
        version: None,
        images: pngs.into_iter().map(ByteBuf::from).collect(),
        timeout_ms: 5000,
        tensor: None,
    };
    while !stop.load(Ordering::Relaxed) {
        let reply = bus_client::infer(&client, &req, Duration::from_secs(10)).await;
        if matches!(reply, Ok(InferReply::Done { .. })) {
            ok.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_every_node_and_counts_nothing_twice() {
    let c = Cluster::start_with(Path::new(NODE), 3, &[]).await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let id = jobs.submit(serve_spec("fixture", None)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let pngs = common::test_pngs(4);
    let load = tokio::spawn(online_load(
        c.client.clone(),
        pngs,
        stop.clone(),
        ok.clone(),
    ));
    let mut targets = Vec::new();
    for n in &c.nodes {
        targets.push(c.seen("n1", &n.id).await.unwrap().http.unwrap());
    }

    // Every node's /metrics: promtool has nothing to say.
    wait_until(
        "the job answers queries",
        Duration::from_secs(60),
        || async { (jobs.get(&id).await.ok()?.serve?.done > 0).then_some(()) },
    )
    .await;
    for t in &targets {
        let text = testkit::http::get(t, "/metrics", &[]).body;
        let (clean, said) = promtool(&text);
        assert!(clean && said.is_empty(), "promtool on {t}: {said}\n{text}");
    }

    let prom = Prometheus::start(&targets);
    let up = wait_until("every target up", Duration::from_secs(60), || async {
        let up = prom.query("up");
        (up.len() == 3 && up.iter().all(|s| value(s) == 1.0)).then_some(up)
    })
    .await;
    assert_eq!(up.len(), 3);

    // The job's query rate: one series (the coordinator's), as fast as its record says, once
    // Prometheus holds 20 s of its samples (a rate over fewer follows the record's updates).
    let samples = format!("count_over_time(idunno_job_queries_total{{job_id=\"{id}\"}}[30s])");
    wait_until(
        "20 s of the job's samples",
        Duration::from_secs(90),
        || async {
            let r = prom.query(&samples);
            (r.len() == 1 && value(&r[0]) >= 20.0).then_some(())
        },
    )
    .await;
    let rate_q =
        format!("sum by (job_id) (rate(idunno_job_queries_total{{job_id=\"{id}\"}}[20s]))");
    let (rate, exporters) = wait_until(
        "the job's rate in Prometheus",
        Duration::from_secs(90),
        || async {
            let r = prom.query(&rate_q);
            let n = prom.query(&format!(
                "count(idunno_job_queries_total{{job_id=\"{id}\"}})"
            ));
            (r.len() == 1 && value(&r[0]) > 0.0 && !n.is_empty())
                .then(|| (value(&r[0]), value(&n[0])))
        },
    )
    .await;
    assert_eq!(exporters, 1.0, "one node exports the job's queries");
    let record = jobs.get(&id).await.unwrap().serve.unwrap().rate;
    assert!(
        rate > record * 0.5 && rate < record * 1.5,
        "Prometheus' rate {rate:.0} q/s against the job record's {record:.0} q/s"
    );

    // Online inference: p99 of one model, and the requests answered as the client counted.
    let started = (Instant::now(), ok.load(Ordering::Relaxed));
    let p99_q = "histogram_quantile(0.99, sum by (le, model) (rate(idunno_infer_request_duration_seconds_bucket[20s])))";
    let p99 = wait_until(
        "online p99 in Prometheus",
        Duration::from_secs(60),
        || async {
            let r = prom.query(p99_q);
            (r.len() == 1 && value(&r[0]).is_finite() && value(&r[0]) > 0.0).then(|| r[0].clone())
        },
    )
    .await;
    assert_eq!(p99["metric"]["model"], "fixture", "{p99}");
    let seconds = value(&p99);
    assert!(seconds < 10.0, "p99 {seconds} s");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let sent = ok.load(Ordering::Relaxed) - started.1;
    let client_rate = sent as f64 / started.0.elapsed().as_secs_f64();
    let ok_q = "sum(rate(idunno_infer_requests_total{model=\"fixture\", outcome=\"ok\"}[20s]))";
    let served = prom.query(ok_q).first().map(value).unwrap_or(0.0);
    assert!(
        served > client_rate * 0.5 && served < client_rate * 1.5,
        "Prometheus' {served:.1} requests/s against the client's {client_rate:.1}"
    );
    println!(
        "Prometheus: the job's rate {rate:.0} q/s (its record: {record:.0}), exported by {exporters} node; \
         online p99 {seconds:.4} s; ok requests {served:.1}/s (the client's: {client_rate:.1}/s)"
    );
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
}
