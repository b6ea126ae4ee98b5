//! The CLI fits people's habits: shell completions that work in a real bash, connection
//! profiles (`--profile`), `events` as readable JSON lines (a member's `fail` shortly after a
//! `kill -9`), connection flags after the subcommand, and stdout holding JSON only under
//! `--json`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testkit::Cluster;

const IDUNNO: &str = env!("CARGO_BIN_EXE_idunno");

fn node_bin() -> std::path::PathBuf {
    Path::new(IDUNNO).with_file_name("idunno-node")
}

/// `idunno` with no connection settings from the test's own environment.
fn idunno() -> Command {
    let mut cmd = Command::new(IDUNNO);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IDUNNO_")) {
        cmd.env_remove(k);
    }
    cmd
}

#[test]
fn bash_completes_a_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("idunno.bash");
    let out = idunno().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(idunno memb); COMP_CWORD=1; COMP_LINE='idunno memb'; \
         COMP_POINT=${{#COMP_LINE}}; _idunno idunno memb idunno; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.lines().any(|w| w.trim() == "members"),
        "bash offered {words:?}; stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_profile_connects_and_events_print_a_fail_soon_after_a_kill() {
    let mut c = Cluster::start(&node_bin(), 2).await;
    let operator = c.nats.bus("operator");
    let config = tempfile::tempdir().unwrap();

    // Save the operator's connection as profile p; then connect with --profile alone.
    let save = idunno()
        .env("IDUNNO_CONFIG_DIR", config.path())
        .envs(operator.to_env())
        .args(["--json", "profile", "save", "p", "--description", "test"])
        .output()
        .unwrap();
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    let saved: serde_json::Value = serde_json::from_slice(&save.stdout).expect("JSON only");
    assert_eq!(saved["description"], "test");
    let members = idunno()
        .env("IDUNNO_CONFIG_DIR", config.path())
        .args(["--profile", "p", "--json", "members"])
        .output()
        .unwrap();
    assert!(
        members.status.success(),
        "{}",
        String::from_utf8_lossy(&members.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&members.stdout).expect("JSON only");
    assert_eq!(view["members"].as_array().unwrap().len(), 2, "{view}");

    // events --kind member: a JSON line for n2's failure.
    let mut events = idunno()
        .env("IDUNNO_CONFIG_DIR", config.path())
        .args(["--profile", "p", "events", "--kind", "member"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    // The command says on stderr once the server holds its subscription.
    let mut stderr = BufReader::new(events.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("following"), "{first}");
    let killed = Instant::now();
    c.node("n2").kill9();
    let deadline = killed + Duration::from_secs(10);
    let fail = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if v["kind"] == "fail" && v["node"] == "n2" => break v,
            Ok(_) => continue,
            Err(_) => panic!("no fail line for n2 within 10 s"),
        }
    };
    let took = killed.elapsed();
    println!("kill -9 → fail line: {} ms", took.as_millis());
    assert_eq!(fail["type"], "member");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn connection_flags_after_the_subcommand_and_json_only_on_stdout() {
    let url = format!("nats://127.0.0.1:{}", testkit::free_port());
    // --nats after the subcommand is read (the error names the URL given there).
    let out = idunno().args(["members", "--nats", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(out.stdout.is_empty());
    // Original command names are accepted.
    for alias in ["list_mem", "list_self", "low_droprate", "clear"] {
        let out = idunno().args([alias, "--nats", &url]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{alias}: parsed, then no cluster"
        );
    }
}

#[tokio::test]
async fn results_follow_a_serve_job_and_ij_shows_its_accuracy() {
    let c = Cluster::start(&node_bin(), 2).await;
    let operator = c.nats.bus("operator");
    let (fs, jobs) = testkit::import_fashion(&c.client, "fm").await;
    let fixture = testkit::repo_dir().join("node/tests/fixtures/torchscript/fashion_cnn.pt");
    testkit::import_torchscript(&fs, &jobs, &fixture, "fixture").await;
    let id = jobs
        .submit(testkit::serve_spec("fixture", Some(1)))
        .await
        .unwrap();
    // --follow prints JSON lines as batches are stored and returns when the job ends.
    let follow = idunno()
        .envs(operator.to_env())
        .args(["--json", "results", &id, "--follow"])
        .output()
        .unwrap();
    assert!(
        follow.status.success(),
        "{}",
        String::from_utf8_lossy(&follow.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&follow.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(!lines.is_empty(), "some outputs while the job ran");
    assert!(lines.iter().all(|l| l["class_name"].is_string()));
    // The ended job: its whole results file, every query once.
    let all = idunno()
        .envs(operator.to_env())
        .args(["--json", "results", &id])
        .output()
        .unwrap();
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let queries: std::collections::BTreeSet<u64> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["query_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(queries.len(), 10_000);
    // ij: the job with its accuracy and newest outputs.
    let ij = idunno()
        .envs(operator.to_env())
        .args(["ij", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ij.stdout);
    assert!(
        ij.status.success(),
        "{}",
        String::from_utf8_lossy(&ij.stderr)
    );
    assert!(
        text.contains("accuracy") && text.contains("% so far"),
        "{text}"
    );
    assert!(text.contains("newest outputs"), "{text}");
}
