//! The dashboard's HTTP side against a real cluster: the JSON API of docs/api.md, the event
//! stream, Prometheus metrics checked with the official Python parser, and the token.

use bus_schemas::jobs::JobState;
use bus_schemas::membership::MemberState;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::http::{first_event, get, request, EventStream};
use testkit::{continuous, import_fashion, train_quick, wait_until, Cluster};

const BIN: &str = env!("CARGO_BIN_EXE_idunno-node");
const TOKEN: &str = "s3cret-dashboard-token";

/// The dashboard address of node `id`, from the membership view.
async fn http_of(c: &Cluster, id: &str) -> String {
    let rec = c.seen("n1", id).await.expect("node in view");
    rec.http.expect("node serves a dashboard")
}

/// Parses `text` with `prometheus_client.parser` (installed by infra/setup.sh).
fn parse_prometheus(text: &str) -> Vec<Value> {
    let python: PathBuf = bus_client::tools_home().join(format!(
        "tools-torch{}/venv/bin/python",
        idunno_node::LIBTORCH_VERSION
    ));
    let script = testkit::repo_dir().join("node/tests/prom_parse.py");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(script);
    let what = format!("{} (run infra/setup.sh)", python.display());
    let out = testkit::run_with_input(&mut cmd, text.as_bytes(), &what);
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// The value of sample `name` whose labels include `labels`.
fn sample(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

fn family_type(families: &[Value], name: &str) -> Option<String> {
    let f = families.iter().find(|f| f["name"] == name)?;
    f["type"].as_str().map(String::from)
}

#[tokio::test]
async fn an_exposed_api_answers_401_without_the_token() {
    let port = testkit::free_port();
    let bind = format!("0.0.0.0:{port}");
    let c = Cluster::start_with(Path::new(BIN), 1, &["--http", &bind, "--http-token", TOKEN]).await;
    let addr = format!("127.0.0.1:{port}");
    for path in [
        "/api/members",
        "/api/jobs",
        "/api/files",
        "/api/stats",
        "/metrics",
    ] {
        let a = get(&addr, path, &[]);
        assert_eq!(a.status, 401, "{path} without the token: {a:?}");
        assert_eq!(a.json()["kind"], "unauthorized");
        let wrong = get(&addr, path, &[("Authorization", "Bearer wrong-token-123")]);
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    let cancel = request("POST", &addr, "/api/jobs/x/cancel", &[], b"");
    assert_eq!(cancel.status, 401, "a state change without the token");
    assert_eq!(
        first_event(
            &addr,
            "/api/events",
            &[],
            "snapshot",
            Duration::from_secs(5)
        )
        .0,
        401
    );
    // The page and the login stay reachable.
    assert_eq!(get(&addr, "/", &[]).status, 200);
    let auth = get(&addr, "/api/auth", &[]).json();
    assert_eq!(
        auth,
        serde_json::json!({"required": true, "authenticated": false})
    );

    let bearer = format!("Bearer {TOKEN}");
    let ok = get(&addr, "/api/members", &[("Authorization", &bearer)]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["members"][0]["id"], "n1");

    let json = [("Content-Type", "application/json")];
    let bad = request(
        "POST",
        &addr,
        "/api/login",
        &json,
        br#"{"token": "nope-nope-nope"}"#,
    );
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let body = format!(r#"{{"token": "{TOKEN}"}}"#);
    let login = request("POST", &addr, "/api/login", &json, body.as_bytes());
    assert_eq!(login.status, 204, "{login:?}");
    let cookie = login.header("set-cookie").expect("a cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = [("Cookie", pair.as_str())];
    let auth = get(&addr, "/api/auth", &with_cookie).json();
    assert_eq!(auth["authenticated"], true);
    let (status, snapshot) = first_event(
        &addr,
        "/api/events",
        &with_cookie,
        "snapshot",
        Duration::from_secs(10),
    );
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_str(&snapshot.expect("a snapshot event")).unwrap();
    assert_eq!(snapshot["node"], "n1");
    assert_eq!(
        get(&addr, "/metrics", &[("Authorization", &bearer)]).status,
        200
    );
    drop(c);
}

#[tokio::test]
async fn the_api_shows_jobs_files_workers_and_metrics_of_a_real_cluster() {
    let mut c = Cluster::start(Path::new(BIN), 3).await;
    let addr = http_of(&c, "n1").await;
    let (fs, jobs) = import_fashion(&c.client, "fm").await;
    train_quick(&jobs, "mlp", 2000).await;

    // Files: every file with its replicas on live nodes.
    let files = get(&addr, "/api/files?prefix=datasets/fm", &[]).json();
    let rows = files["files"].as_array().expect("files").clone();
    assert!(
        rows.iter()
            .any(|f| f["name"] == "datasets/fm/manifest.json"),
        "{files}"
    );
    for f in &rows {
        assert_eq!(f["under_replicated"], false, "{f}");
        assert_eq!(f["live_replicas"].as_array().unwrap().len(), 3, "{f}");
    }
    let models = get(&addr, "/api/models", &[]).json();
    assert_eq!(models["models"][0]["name"], "models/mlp", "{models}");
    let sets = get(&addr, "/api/datasets", &[]).json();
    assert_eq!(sets["datasets"][0]["manifest"]["name"], "fm", "{sets}");
    assert_eq!(
        sets["datasets"][0]["manifest"]["classes"]
            .as_array()
            .unwrap()
            .len(),
        10
    );

    // Jobs: submit over HTTP, bad specs refused with the reason.
    let json = [("Content-Type", "application/json")];
    let unknown = br#"{"kind": "serve", "model": "nope", "batch": 8}"#;
    let a = request("POST", &addr, "/api/jobs", &json, unknown);
    assert_eq!(
        (a.status, a.json()["kind"].as_str()),
        (404, Some("not_found")),
        "{a:?}"
    );
    assert_eq!(
        a.json()["reason"],
        "unknown_model",
        "the cluster's own kind: {a:?}"
    );
    let a = request("POST", &addr, "/api/jobs", &json, br#"{"kind": "bogus"}"#);
    assert_eq!(a.status, 400, "{a:?}");
    let a = request("POST", &addr, "/api/jobs", &json, b"\xff not json");
    assert_eq!(
        (a.status, a.json()["kind"].as_str()),
        (400, Some("bad_input")),
        "{a:?}"
    );
    let a = get(&addr, "/api/files?prefix=../x", &[]);
    assert_eq!(a.status, 400, "{a:?}");
    let a = get(&addr, "/api/nope", &[]);
    assert_eq!(
        (a.status, a.json()["kind"].as_str()),
        (404, Some("not_found"))
    );
    let a = request(
        "POST",
        &addr,
        "/api/jobs",
        &json,
        br#"{"kind": "serve", "model": "mlp", "batch": 16}"#,
    );
    assert_eq!(a.status, 201, "{a:?}");
    let id = a.json()["id"].as_str().unwrap().to_string();
    let other = jobs.submit(continuous("mlp", 1)).await.unwrap();
    wait_until(
        "both jobs answer queries",
        Duration::from_secs(60),
        || async {
            let all = get(&addr, "/api/jobs", &[]).json();
            let done = |id: &str| {
                all["jobs"].as_array()?.iter().find(|j| j["id"] == id)?["serve"]["done"].as_u64()
            };
            (done(&id)? > 0 && done(&other)? > 0).then_some(())
        },
    )
    .await;
    let page = wait_until(
        "the job page shows outputs",
        Duration::from_secs(30),
        || async {
            let page = get(&addr, &format!("/api/jobs/{id}"), &[]).json();
            (!page["outputs"].as_array()?.is_empty()).then_some(page)
        },
    )
    .await;
    assert_eq!(page["job"]["state"], "running");
    assert!(page["outputs"][0]["class_name"].is_string(), "{page}");
    assert_eq!(get(&addr, "/api/jobs/nope", &[]).status, 404);

    // Metrics: the official parser reads them. Cluster-wide series (the jobs' queries, members,
    // SDFS) come from the coordinator only; every node has its own (served batches' time, bus).
    let coordinator = c.coordinator().await;
    let coord_addr = http_of(&c, &coordinator).await;
    let text = wait_until(
        "metrics show the job's queries and the served batches' time",
        Duration::from_secs(30),
        || async {
            let text = get(&coord_addr, "/metrics", &[]).body;
            let queries = format!("idunno_job_queries_total{{job_id=\"{id}\"");
            let counted = text.lines().any(|l| {
                l.starts_with(&queries)
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(0.0)
            });
            let timed = text.contains("idunno_serve_batch_duration_seconds_bucket{");
            (timed && counted).then_some(text)
        },
    )
    .await;
    let families = parse_prometheus(&text);
    assert_eq!(
        family_type(&families, "idunno_serve_batch_duration_seconds").as_deref(),
        Some("histogram")
    );
    assert_eq!(
        family_type(&families, "idunno_job_queries").as_deref(),
        Some("counter")
    );
    let timed = sample(
        &families,
        "idunno_serve_batch_duration_seconds_count",
        &[("model", "mlp")],
    );
    assert!(timed.is_some_and(|v| v > 0.0), "{timed:?} in\n{text}");
    let pending = sample(&families, "idunno_job_pending_batches", &[("job_id", &id)]);
    assert!(pending.is_some());
    let queries = sample(&families, "idunno_job_queries_total", &[("job_id", &id)]);
    assert!(queries.unwrap() > 0.0);
    assert_eq!(
        sample(&families, "idunno_members", &[("state", "alive")]),
        Some(3.0)
    );
    assert!(sample(&families, "idunno_sdfs_files", &[]).unwrap() >= 3.0);
    assert!(sample(&families, "idunno_sdfs_bytes", &[]).unwrap() > 30e6);
    assert_eq!(sample(&families, "idunno_build_info", &[]), Some(1.0));
    assert!(sample(&families, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    // The node's resources: its data directory's disk, libtorch's threads and device.
    assert!(sample(&families, "idunno_data_dir_free_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&families, "idunno_data_dir_size_bytes", &[]).unwrap() > 0.0);
    assert_eq!(sample(&families, "idunno_tch_threads", &[]), Some(1.0));
    assert_eq!(
        sample(&families, "idunno_device_info", &[("device", "cpu")]),
        Some(1.0)
    );
    assert!(
        sample(
            &families,
            "idunno_bus_messages_total",
            &[("direction", "in")]
        )
        .unwrap()
            > 0.0
    );
    // Another node: its own series, none of the cluster's.
    let other_node = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != coordinator)
        .unwrap();
    let other_text = get(&http_of(&c, other_node).await, "/metrics", &[]).body;
    let other_families = parse_prometheus(&other_text);
    assert!(sample(&other_families, "idunno_members", &[("state", "alive")]).is_none());
    assert!(sample(&other_families, "idunno_build_info", &[]).is_some());

    // Cancel over HTTP; a second cancel is a conflict.
    let path = format!("/api/jobs/{id}/cancel");
    let a = request("POST", &addr, &path, &[], b"");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["job"]["state"], "cancelled");
    assert_eq!(request("POST", &addr, &path, &[], b"").status, 409);
    assert_eq!(jobs.get(&id).await.unwrap().state, JobState::Cancelled);

    // A killed node: the event stream carries its record as n1's view has it, the workers,
    // the statistics and the metrics see the failure.
    let mut events = EventStream::open(&addr, "/api/events", &[]);
    c.node("n3").kill9();
    let failed = member_state(&mut events, "n3", "failed", Duration::from_secs(10));
    assert!(failed["version"].as_u64() > Some(0), "{failed}");
    wait_until(
        "/api/workers marks n3 failed",
        Duration::from_secs(10),
        || async {
            let w = get(&addr, "/api/workers", &[]).json();
            let n3 = w["workers"]
                .as_array()?
                .iter()
                .find(|w| w["id"] == "n3")?
                .clone();
            (n3["state"] == MemberState::Failed.as_str()).then_some(())
        },
    )
    .await;
    // The live ones report their resources (`stat`), as `ray status` shows them.
    let w = get(&addr, "/api/workers", &[]).json();
    for worker in w["workers"].as_array().unwrap() {
        let r = &worker["resources"];
        if worker["id"] == "n3" {
            assert!(r.is_null(), "a dead node has no figures: {worker}");
            continue;
        }
        assert_eq!(
            (&r["tch_threads"], &r["device"]),
            (&1.into(), &"cpu".into()),
            "{worker}"
        );
        assert!(r["rss_bytes"].as_u64() > Some(1 << 20), "{worker}");
        assert!(r["disk_free_bytes"].as_u64() > Some(0), "{worker}");
        assert!(r["cpus"].as_u64() >= Some(1), "{worker}");
        assert!(r["cpu_cores"].as_f64() >= Some(0.0), "{worker}");
    }
    let stats = wait_until(
        "a sample counts the failure",
        Duration::from_secs(10),
        || async {
            let s = get(&addr, "/api/stats", &[]).json();
            let last = s["samples"].as_array()?.last()?.clone();
            (last["failures"].as_u64()? >= 1).then_some(s)
        },
    )
    .await;
    assert!(
        stats["samples"].as_array().unwrap().len() >= 5,
        "a second's sample each"
    );
    wait_until(
        "the coordinator's metrics count the failure",
        Duration::from_secs(15),
        || async {
            let coord_addr = http_of(&c, &c.coordinator().await).await;
            let families = parse_prometheus(&get(&coord_addr, "/metrics", &[]).body);
            let fails = sample(
                &families,
                "idunno_membership_events_total",
                &[("kind", "fail")],
            );
            fails.filter(|n| *n >= 1.0)
        },
    )
    .await;
    let (_, snap) = first_event(
        &addr,
        "/api/events",
        &[],
        "snapshot",
        Duration::from_secs(10),
    );
    let snap: Value = serde_json::from_str(&snap.expect("a snapshot")).unwrap();
    assert!(snap["coordinator"].is_string(), "{snap}");
    assert_eq!(snap["workers"].as_array().unwrap().len(), 3);
    drop(fs);
}

/// The first `member_state` event that shows member `id` in `state`.
fn member_state(events: &mut EventStream, id: &str, state: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.next_event(left) {
            Some((name, data)) if name == "member_state" => {
                let change: Value = serde_json::from_str(&data).expect("member_state is JSON");
                if change["member"]["id"] == id && change["member"]["state"] == state {
                    return change;
                }
            }
            Some(_) => continue,
            None => break,
        }
    }
    panic!("no member_state event with {id} {state} within {limit:?}");
}
