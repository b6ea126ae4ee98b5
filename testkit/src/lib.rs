//! Test support: a real `nats-server` with JetStream on a free port, `idunno-node` processes,
//! and waiting on conditions with deadlines. Every process is killed when its owner drops.

#![warn(missing_docs)]

mod cluster;
mod data;
pub mod http;
pub mod lazyfs;
mod machines;
pub mod netns;
mod process;
pub mod procstat;
pub mod pytorch;
mod results;
pub mod views;

pub use cluster::Cluster;
pub use data::{continuous, import_fashion, import_torchscript, random_file, train_quick};
pub use machines::{run_script, unavailable as machines_unavailable, Machine, Machines, ScriptRun};
pub use process::{free_port, free_ports, NatsServer, NodeProc};
pub use results::{collect_results, served_once, Seen};

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository's root: the parent of the running test's or bench's package, which cargo
/// names in `CARGO_MANIFEST_DIR` when it runs them. Read at run time, not compiled in: cargo's
/// hashes do not depend on where a checkout is, so with a shared target directory (as CI's) a
/// test binary built in one checkout is reused by another, and a compiled-in path would read
/// the first checkout's files.
pub fn repo_dir() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package.parent().map(PathBuf::from).unwrap_or(package)
}

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after `limit`.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that `check` holds at every poll for the whole of `span` (an observation window,
/// for properties like "nobody is declared failed"); panics at the first poll where it fails.
pub async fn holds_for<F, Fut>(what: &str, span: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert!(check().await, "stopped holding: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `cmd` with `input` on its standard input and its output captured; `what` names it in
/// the panic if it cannot start (say how to get it, e.g. "run infra/setup.sh").
pub fn run_with_input(
    cmd: &mut std::process::Command,
    input: &[u8],
    what: &str,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin.write_all(input).expect("write the input");
    drop(stdin);
    child.wait_with_output().expect("wait for the process")
}

/// The median of `v` (the upper one of an even count); benchmarks compare medians of rounds.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A `serve <model> 64` job over the test split of the default dataset, `passes` passes
/// (continuous without).
pub fn serve_spec(model: &str, passes: Option<u32>) -> bus_schemas::jobs::JobSpec {
    bus_schemas::jobs::JobSpec::Serve(bus_schemas::jobs::ServeSpec {
        model: model.into(),
        model_version: None,
        dataset: String::new(),
        split: "test".into(),
        batch: 64,
        passes,
        weight: 1,
    })
}

/// The environment variable `name` parsed as a `T` (benchmark knobs), or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs this very binary again with `envs` set (a bench's bare loop, away from the runtime
/// and the bus) and parses the one number it prints.
pub fn rerun_self(envs: &[(&str, String)]) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run this binary again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}
