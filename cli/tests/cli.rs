//! The `idunno` binary against a real nats-server and real nodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use testkit::{free_port, free_ports, NatsServer};

const IDUNNO: &str = env!("CARGO_BIN_EXE_idunno");

fn idunno(url: &str, args: &[&str]) -> Output {
    Command::new(IDUNNO)
        .args(["--nats", url])
        .args(args)
        .env_remove("IDUNNO_NATS_URL")
        .output()
        .expect("run idunno")
}

/// Runs `idunno` with the credentials of `bus` in its environment.
fn idunno_as(bus: &bus_client::BusOptions, args: &[&str]) -> Output {
    Command::new(IDUNNO)
        .args(args)
        .env_remove("IDUNNO_NATS_URL")
        .envs(bus.to_env())
        .output()
        .expect("run idunno")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn an_unreachable_cluster_is_one_clear_sentence_within_3_s() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = idunno(&url, &["members"]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the cluster's NATS server"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn bad_arguments_are_refused_before_touching_the_cluster() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let out = idunno(&url, &["droprate", "lots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not low, mid, high, off or a number"));
    let out = idunno(&url, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));

    // A dashboard port already taken: refused before a nats-server or node starts.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("c");
    let args = ["local", "up", "--nodes", "2", "--dir"];
    let out = idunno(
        &url,
        &[&args[..], &[dir.to_str().unwrap(), "--http-port", &port]].concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot serve a dashboard on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.join("nats.conf").exists(),
        "nothing should have started"
    );
}

#[test]
fn unknown_nodes_and_an_empty_cluster_are_reported() {
    let nats = NatsServer::start();
    let operator = nats.bus("operator");
    let out = idunno_as(&operator, &["stat", "--node", "nope"]);
    assert!(
        stderr(&out).contains("no node \"nope\" is running"),
        "{}",
        stderr(&out)
    );
    let out = idunno_as(&operator, &["members"]);
    assert!(stderr(&out).contains("no node answers"), "{}", stderr(&out));
    let out = idunno_as(&operator, &["leave", "bad.id"]);
    assert!(stderr(&out).contains("letters, digits"), "{}", stderr(&out));
}

#[test]
fn a_client_without_the_clusters_tls_gets_one_clear_sentence() {
    let nats = NatsServer::start();
    let out = idunno(&nats.url(), &["members"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("refused the TLS handshake"), "{err}");
    assert!(err.contains("--nats-identity"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = idunno_as(&nats.bus("viewer"), &["members"]);
    assert!(stderr(&out).contains("no node answers"), "{}", stderr(&out));
}

#[test]
fn tokens_and_passwords_reach_a_protected_server() {
    let nats = NatsServer::start_with(&["--auth", "s3cret"]);
    let node_bin = Path::new(IDUNNO).with_file_name("idunno-node");
    let data = tempfile::tempdir().unwrap();
    // The token reaches the node through its environment, not its argv.
    let with_token = bus_client::BusOptions {
        token: Some("s3cret".into()),
        ..bus_client::BusOptions::for_url(nats.url())
    };
    let _node = testkit::NodeProc::spawn(&node_bin, "t1", &with_token, data.path(), &[]);
    let refused = idunno(&nats.url(), &["members"]);
    assert!(
        stderr(&refused).contains("cannot reach the cluster's NATS server"),
        "{}",
        stderr(&refused)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = idunno(
            &nats.url(),
            &["--nats-token", "s3cret", "--json", "members"],
        );
        if out.status.success() {
            assert_eq!(states(&out), vec![("t1".to_string(), "alive".to_string())]);
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    let users = NatsServer::start_with(&["--user", "u", "--pass", "p"]);
    let out = idunno(
        &users.url(),
        &["--nats-user", "u", "--nats-password", "p", "members"],
    );
    assert!(
        stderr(&out).contains("no node answers"),
        "connected but empty: {}",
        stderr(&out)
    );
}

/// Runs `idunno local down` on drop so a failed test leaves nothing running.
struct LocalCluster {
    url: String,
    dir: tempfile::TempDir,
}

impl LocalCluster {
    fn dir(&self) -> PathBuf {
        self.dir.path().join("local")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let dir = self.dir();
        let _ = idunno(
            &self.url,
            &["local", "down", "--dir", dir.to_str().unwrap()],
        );
    }
}

/// Polls node n1's view until it shows `node` in `state` (events travel asynchronously).
fn wait_for_state(bus: &bus_client::BusOptions, node: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = states(&idunno_as(bus, &["--json", "members", "--node", "n1"]));
        if seen.contains(&(node.into(), state.into())) {
            return;
        }
        assert!(Instant::now() < deadline, "{node} not {state}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn states(out: &Output) -> Vec<(String, String)> {
    json(out)["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn local_up_members_stat_droprate_leave_join_clear_log_down() {
    let node = Path::new(IDUNNO).with_file_name("idunno-node");
    assert!(
        node.exists(),
        "build idunno-node first (cargo build --workspace)"
    );
    let (bus, http) = free_ports(3);
    let cluster = LocalCluster {
        url: format!("nats://127.0.0.1:{bus}"),
        dir: tempfile::tempdir().unwrap(),
    };
    let dir = cluster.dir();
    let dir = dir.to_str().unwrap();
    let port = http.to_string();
    let up = idunno(
        &cluster.url,
        &[
            "local",
            "up",
            "--nodes",
            "3",
            "--dir",
            dir,
            "--http-port",
            &port,
        ],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(said.contains("dashboard: https://127.0.0.1:"), "{said}");
    assert!(said.contains("secure: TLS and roles"), "{said}");
    // The cluster is secure: the CLI is its operator.
    let operator = bus_client::BusOptions::for_identity(
        cluster.url.clone(),
        Path::new(dir).join("secure/identities/operator"),
    );
    let idunno = |_: &str, args: &[&str]| idunno_as(&operator, args);

    let members = states(&idunno(&cluster.url, &["--json", "members"]));
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|(_, s)| s == "alive"), "{members:?}");

    let stats = json(&idunno(&cluster.url, &["--json", "stat"]));
    assert_eq!(stats.as_array().unwrap().len(), 3);
    assert!(stats[0]["uptime_ms"].as_u64().is_some());

    assert!(idunno(&cluster.url, &["droprate", "low"]).status.success());
    let stats = json(&idunno(&cluster.url, &["--json", "stat", "--node", "n3"]));
    assert_eq!(stats[0]["drop_rate"].as_f64(), Some(0.03));

    assert!(idunno(&cluster.url, &["leave", "n2"]).status.success());
    wait_for_state(&operator, "n2", "left");
    assert!(idunno(&cluster.url, &["list_mem"]).status.success());
    let again = idunno(&cluster.url, &["leave", "n2"]);
    assert!(
        stderr(&again).contains("not a member"),
        "{}",
        stderr(&again)
    );
    assert!(idunno(&cluster.url, &["join", "n2"]).status.success());
    wait_for_state(&operator, "n2", "alive");

    assert!(idunno(&cluster.url, &["clear-log", "--node", "n1"])
        .status
        .success());
    let log = Path::new(dir).join("nodes/n1/node.log");
    assert!(std::fs::metadata(&log).unwrap().len() < 4096);

    let status = json(&idunno(
        &cluster.url,
        &["--json", "local", "status", "--dir", dir],
    ));
    assert_eq!(
        status.as_array().unwrap().len(),
        4,
        "nats-server and 3 nodes"
    );
    let down = idunno(&cluster.url, &["local", "down", "--dir", dir]);
    assert!(down.status.success(), "{}", stderr(&down));
    let after = idunno(&cluster.url, &["members"]);
    assert!(!after.status.success());
}

/// The one local cluster of these tests that stays open: `--insecure` is open mode, and says so.
#[test]
fn local_up_insecure_is_open_and_says_so() {
    let (bus, http) = free_ports(1);
    let cluster = LocalCluster {
        url: format!("nats://127.0.0.1:{bus}"),
        dir: tempfile::tempdir().unwrap(),
    };
    let dir = cluster.dir();
    let dir = dir.to_str().unwrap();
    let port = http.to_string();
    let args = [
        "local",
        "up",
        "--insecure",
        "--nodes",
        "1",
        "--dir",
        dir,
        "--http-port",
        &port,
    ];
    let up = idunno(&cluster.url, &args);
    assert!(up.status.success(), "{}", stderr(&up));
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(
        said.contains("insecure: no TLS and no credentials"),
        "{said}"
    );
    assert!(said.contains("dashboard: http://127.0.0.1:"), "{said}");
    assert!(!Path::new(dir).join("secure").exists());
    let members = states(&idunno(&cluster.url, &["--json", "members"]));
    assert_eq!(members.len(), 1);
}
