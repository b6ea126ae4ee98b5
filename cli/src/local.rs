//! `idunno local up|status|down`: a whole cluster on this machine, recorded in `<dir>/local.json`
//! so that `down` stops exactly what `up` started.

use crate::args::LocalCommand;
use crate::local_secure;
use crate::output::{render, Output};
use bus_client::secure::Secure;
use bus_client::BusOptions;
use bus_schemas::membership::{MemberState, ViewRequest, ViewSnapshot};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process `up` started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Started {
    name: String,
    pid: u32,
    log: PathBuf,
    #[serde(default)]
    http: Option<String>,
}

/// What `up` started.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LocalState {
    nats_url: String,
    nats: Option<Started>,
    nodes: Vec<Started>,
    /// The credentials of a secure cluster (`<dir>/secure`); none: open.
    #[serde(default)]
    secure: Option<PathBuf>,
}

/// Runs one `local` command.
pub async fn run(cmd: LocalCommand, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    match cmd {
        LocalCommand::Up {
            nodes,
            dir,
            http_port,
            insecure,
        } => up(bus, nodes, &dir, http_port, insecure, out).await,
        LocalCommand::Status { dir } => status(&dir, out),
        LocalCommand::Restart { node, dir } => restart(bus, &node, &dir),
        LocalCommand::Down { dir } => down(&dir),
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("local.json")
}

fn load(dir: &Path) -> anyhow::Result<Option<LocalState>> {
    match std::fs::read(state_path(dir)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is corrupt ({e}); remove it after stopping its processes",
                state_path(dir).display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read {}: {e}",
            state_path(dir).display()
        )),
    }
}

/// The operator identity of the secure local cluster recorded in `dir`, if it runs at `url`.
pub fn operator_identity(dir: &Path, url: &str) -> Option<PathBuf> {
    let state = load(dir).ok()??;
    let secure = state.secure.filter(|_| state.nats_url == url)?;
    Some(secure.join("identities/operator"))
}

fn save(dir: &Path, state: &LocalState) -> anyhow::Result<()> {
    std::fs::write(state_path(dir), serde_json::to_vec_pretty(state)?)?;
    Ok(())
}

/// Whether `p` still runs the program it was started as.
fn running(p: &Started, program: &str) -> bool {
    std::fs::read(format!("/proc/{}/cmdline", p.pid))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains(program))
        .unwrap_or(false)
}

/// Starts `program` with `args` and `env` (and none of this process's `IDUNNO_NATS_*`).
fn spawn(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> anyhow::Result<u32> {
    let file = std::fs::File::create(log)?;
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("IDUNNO_NATS_")) {
        cmd.env_remove(key);
    }
    if env.iter().any(|(k, _)| *k == "IDUNNO_HTTP_TOKEN_FILE") {
        // The generated token is the dashboards' token.
        cmd.env_remove("IDUNNO_HTTP_TOKEN");
    }
    let child = cmd
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
    Ok(child.id())
}

/// The `idunno-node` beside this executable, else the one on PATH.
fn node_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("idunno-node")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "idunno-node".into())
}

fn nats_port(url: &str) -> anyhow::Result<u16> {
    let rest = url.split("://").last().unwrap_or(url);
    let port = rest
        .rsplit(':')
        .next()
        .filter(|p| *p != rest)
        .unwrap_or("4222");
    port.trim_end_matches('/')
        .parse()
        .map_err(|_| anyhow::anyhow!("cannot tell the port of NATS URL {url:?}"))
}

async fn start_nats(
    bus: &BusOptions,
    dir: &Path,
    secure: Option<&Secure>,
) -> anyhow::Result<Option<Started>> {
    if bus.connect_once("idunno-local").await.is_ok() {
        crate::output::note(&format!("using the NATS server already at {}", bus.url));
        return Ok(None);
    }
    let port = nats_port(&bus.url)?;
    let store = dir.join("nats");
    std::fs::create_dir_all(&store)?;
    let conf = dir.join("nats.conf");
    let text = match secure {
        Some(secure) => local_secure::nats_conf(dir, port, secure)?,
        None => format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            store.display().to_string()
        ),
    };
    std::fs::write(&conf, text)?;
    let log = dir.join("nats.log");
    let binary = bus_client::nats_server_binary();
    let pid = spawn(
        &binary,
        &["-c".into(), conf.display().to_string()],
        &[],
        &log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.connect_once("idunno-local").await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nats-server did not start; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::output::note(&format!("started nats-server (pid {pid}) at {}", bus.url));
    Ok(Some(Started {
        name: "nats-server".into(),
        pid,
        log,
        http: None,
    }))
}

/// A node's flags; its credentials go through its environment ([`node_env`]).
fn node_args(id: &str, data: &Path, http: &str) -> Vec<String> {
    [
        "--id",
        id,
        "--data-dir",
        &data.display().to_string(),
        "--http",
        http,
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// A node's environment: its identity (secure), or the CLI's own credentials (insecure).
fn node_env(bus: &BusOptions, secure: Option<&Secure>, id: &str) -> Vec<(&'static str, String)> {
    match secure {
        Some(secure) => local_secure::node_env(&bus.url, secure, id),
        None => bus.to_env(),
    }
}

async fn up(
    bus: &BusOptions,
    n: usize,
    dir: &Path,
    http_port: u16,
    insecure: bool,
    out: &Output,
) -> anyhow::Result<()> {
    anyhow::ensure!((1..=200).contains(&n), "--nodes must be between 1 and 200");
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    if let Some(old) = load(dir)? {
        let live = old.nodes.iter().any(|p| running(p, "idunno-node"));
        anyhow::ensure!(!live, "a local cluster is already up in {} (see `idunno local status`, stop it with `idunno local down`)", dir.display());
    }
    check_http_ports(http_port, n)?;
    let secure = match insecure {
        true => None,
        false => Some(local_secure::prepare(dir, n)?),
    };
    // Who `up` itself is on the bus: the operator of a secure cluster.
    let me = match &secure {
        Some(s) => BusOptions::for_identity(bus.url.clone(), s.identity_dir("operator")),
        None => bus.clone(),
    };
    let mut state = LocalState {
        nats_url: bus.url.clone(),
        secure: secure.as_ref().map(|s| s.dir.clone()),
        ..LocalState::default()
    };
    state.nats = start_nats(&me, dir, secure.as_ref()).await?;
    save(dir, &state)?;
    let binary = node_binary();
    for i in 1..=n {
        let id = format!("n{i}");
        let data = dir.join("nodes").join(&id);
        std::fs::create_dir_all(&data)?;
        let http = format!("127.0.0.1:{}", http_port as usize + i - 1);
        let log = data.join("stdout.log");
        let env = node_env(bus, secure.as_ref(), &id);
        let pid = spawn(&binary, &node_args(&id, &data, &http), &env, &log)?;
        state.nodes.push(Started {
            name: id,
            pid,
            log,
            http: Some(http),
        });
        save(dir, &state)?;
    }
    wait_for_members(&me, &state).await?;
    status(dir, out)?;
    let first = state.nodes.first().and_then(|p| p.http.clone());
    local_secure::say_how(secure.as_ref(), &bus.url, first.as_deref());
    Ok(())
}

async fn wait_for_members(bus: &BusOptions, state: &LocalState) -> anyhow::Result<()> {
    let client = bus.connect_once("idunno-local").await?;
    let bar = indicatif::ProgressBar::new(state.nodes.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} waiting for nodes to join {pos}/{len}",
    )?);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = ViewRequest { from: "cli".into() };
        let timeout = Duration::from_secs(2);
        let view = bus_client::request::<_, ViewSnapshot>(
            &client,
            bus_schemas::subjects::members_list(),
            &req,
            timeout,
        )
        .await;
        let joined = view
            .map(|v| {
                let alive = |p: &&Started| {
                    v.members
                        .iter()
                        .any(|m| m.id == p.name && m.state == MemberState::Alive)
                };
                state.nodes.iter().filter(alive).count()
            })
            .unwrap_or(0);
        bar.set_position(joined as u64);
        if joined == state.nodes.len() {
            bar.finish_and_clear();
            return Ok(());
        }
        if let Some(dead) = state.nodes.iter().find(|p| !running(p, "idunno-node")) {
            anyhow::bail!(
                "node {} exited; see {}{}",
                dead.name,
                dead.log.display(),
                log_tail(&dead.log, 5)
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {joined} of {} nodes joined within 60 s",
            state.nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node i listens on `base + i - 1`: every one of those ports must be free before anything starts.
fn check_http_ports(base: u16, n: usize) -> anyhow::Result<()> {
    let last = base as usize + n - 1;
    anyhow::ensure!(
        last <= u16::MAX as usize,
        "--http-port {base} leaves no room for {n} nodes (node i listens on {base} + i - 1)"
    );
    for port in base..=last as u16 {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            anyhow::bail!(
                "cannot serve a dashboard on 127.0.0.1:{port} ({e}); node i listens on \
                 --http-port + i - 1, so choose a --http-port with {n} free ports from it"
            );
        }
    }
    Ok(())
}

/// The last `lines` lines of a log, indented, for an error message ("" if unreadable).
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    tail.iter().map(|l| format!("\n  {l}")).collect()
}

fn restart(bus: &BusOptions, node: &str, dir: &Path) -> anyhow::Result<()> {
    let Some(mut state) = load(dir)? else {
        anyhow::bail!(
            "no local cluster was started in {} (run `idunno local up`)",
            dir.display()
        );
    };
    let bus = BusOptions {
        url: state.nats_url.clone(),
        ..bus.clone()
    };
    let Some(entry) = state.nodes.iter().find(|p| p.name == node) else {
        anyhow::bail!(
            "the local cluster in {} has no node {node:?}",
            dir.display()
        );
    };
    anyhow::ensure!(
        !running(entry, "idunno-node"),
        "node {node} is still running (pid {})",
        entry.pid
    );
    let data = dir.join("nodes").join(node);
    let http = entry.http.clone().unwrap_or_else(|| "127.0.0.1:0".into());
    let secure = state.secure.as_deref().map(Secure::open).transpose()?;
    let env = node_env(&bus, secure.as_ref(), node);
    let Some(entry) = state.nodes.iter_mut().find(|p| p.name == node) else {
        anyhow::bail!(
            "the local cluster in {} has no node {node:?}",
            dir.display()
        );
    };
    entry.pid = spawn(
        &node_binary(),
        &node_args(node, &data, &http),
        &env,
        &entry.log,
    )?;
    crate::output::note(&format!("started {node} again (pid {})", entry.pid));
    save(dir, &state)
}

fn status(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let Some(state) = load(dir)? else {
        anyhow::bail!(
            "no local cluster was started in {} (run `idunno local up`)",
            dir.display()
        );
    };
    let procs: Vec<(&Started, &str)> = state
        .nats
        .iter()
        .map(|p| (p, "nats-server"))
        .chain(state.nodes.iter().map(|p| (p, "idunno-node")))
        .collect();
    let scheme = if state.secure.is_some() {
        "https"
    } else {
        "http"
    };
    let json: Vec<_> = procs
        .iter()
        .map(|(p, prog)| serde_json::json!({"name": p.name, "pid": p.pid, "running": running(p, prog), "http": p.http, "log": p.log}))
        .collect();
    out.print(&json, || {
        let mut rows = vec![["process", "pid", "running", "dashboard", "log"]
            .map(String::from)
            .to_vec()];
        for (p, prog) in &procs {
            let http = p
                .http
                .as_ref()
                .map(|h| format!("{scheme}://{h}/"))
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                p.name.clone(),
                p.pid.to_string(),
                running(p, prog).to_string(),
                http,
                p.log.display().to_string(),
            ]);
        }
        rows
    });
    if !out.json && state.nats.is_none() {
        print!(
            "{}",
            render(&[vec![format!(
                "NATS: {} (not started by idunno)",
                state.nats_url
            )]])
        );
    }
    Ok(())
}

fn stop(p: &Started, program: &str) -> bool {
    if !running(p, program) {
        return false;
    }
    let pid = Pid::from_raw(p.pid as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(p, program) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running(p, program) {
        let _ = kill(pid, Signal::SIGKILL);
    }
    true
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let Some(state) = load(dir)? else {
        crate::output::note(&format!("nothing to stop in {}", dir.display()));
        return Ok(());
    };
    for p in &state.nodes {
        if stop(p, "idunno-node") {
            crate::output::note(&format!("stopped {} (pid {})", p.name, p.pid));
        }
    }
    if let Some(nats) = &state.nats {
        if stop(nats, "nats-server") {
            crate::output::note(&format!("stopped nats-server (pid {})", nats.pid));
        }
    }
    std::fs::remove_file(state_path(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_ports_are_read_from_urls() {
        assert_eq!(nats_port("nats://127.0.0.1:4333").unwrap(), 4333);
        assert_eq!(nats_port("nats://localhost").unwrap(), 4222);
        assert!(nats_port("nats://h:x").is_err());
    }
}
