//! Machines with nothing started in them, machines added later, and shell scripts run inside
//! a machine (what an operator would type on it).

use super::*;
use std::os::unix::process::CommandExt;

/// How a script ended: whether it exited 0, and what it wrote (stdout and stderr, merged).
#[derive(Debug, Clone)]
pub struct ScriptRun {
    /// It exited 0 within its time.
    pub ok: bool,
    /// Its output, and how it ended if it failed.
    pub output: String,
}

/// Runs `script` with `sh -c` in `cwd` with `envs` added to this process's environment, inside
/// network namespace `netns` if one is given (as this process's user); kills its process group
/// if it has not ended after `limit`. Processes it leaves in the background (in their own
/// session) keep running.
pub fn run_script(
    netns: Option<&str>,
    script: &str,
    envs: &[(&str, String)],
    cwd: &Path,
    limit: Duration,
) -> ScriptRun {
    let out = tempfile::tempfile().expect("a temp file for the script's output");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sh", "-c", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    let child = cmd
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("output file"))
        .stderr(out.try_clone().expect("output file"))
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return ScriptRun {
                ok: false,
                output: format!("cannot run sh: {e}"),
            }
        }
    };
    let deadline = Instant::now() + limit;
    let ended = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => break None,
        }
    };
    if ended.is_none() {
        let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }
    let mut output = read_all(out);
    let ok = ended.is_some_and(|s| s.success());
    match ended {
        Some(status) if !ok => output.push_str(&format!("\n[script ended: {status}]")),
        None => output.push_str(&format!("\n[script killed after {limit:?}]")),
        _ => {}
    }
    ScriptRun { ok, output }
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = f.rewind();
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    text.push_str(&String::from_utf8_lossy(&bytes));
    text
}

impl Machines {
    /// Makes `m` machines (namespaces on a fresh bridge) with nothing running in them: no
    /// nats-server, no node. A test starts what it wants in them with [`Machines::sh`]; what
    /// it started there is killed when the machines drop (every process in their namespaces).
    pub fn bare(m: usize) -> Self {
        Self::namespaces(Path::new("idunno-node"), m)
    }

    /// Adds one machine (the next letter, the next address) on the same bridge, with nothing
    /// running in it; returns its index.
    pub fn add_machine(&mut self) -> usize {
        let i = self.machines.len();
        assert!(i < 26, "at most 26 machines");
        let name = ((b'a' + i as u8) as char).to_string();
        let machine = self.make_machine(&name, i);
        self.machines.push(machine);
        i
    }

    /// Makes machine `name`, the `i`th: its namespace, its link to the bridge, its address
    /// and its directory.
    fn make_machine(&self, name: &str, i: usize) -> Machine {
        let netns = format!("idn{}-{name}", self.slot);
        let link = format!("idn{}{name}", self.slot);
        let ip = Ipv4Addr::new(10, 213, self.slot, 10 + i as u8);
        ip_cmd(&["netns", "add", &netns]);
        ip_cmd(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip_cmd(&["link", "set", &link, "master", &bridge(self.slot), "up"]);
        let cidr = format!("{ip}/24");
        ip_cmd(&["-n", &netns, "addr", "add", &cidr, "dev", "eth0"]);
        ip_cmd(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip_cmd(&["-n", &netns, "link", "set", "lo", "up"]);
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(dir.join("nats")).expect("machine dir");
        let hosts = [ip.to_string(), "localhost".into(), "127.0.0.1".into()];
        (self.secure.add_server(&format!("m-{name}"), &hosts)).expect("the machine's certificate");
        Machine {
            name: name.into(),
            netns,
            ip,
            nodes: Vec::new(),
            zone: None,
            link,
            nats: None,
            dir,
        }
    }

    /// Runs `script` with `sh -c` inside machine `i` (its network namespace; the files are the
    /// box's), in `cwd`, with `envs`; see [`run_script`].
    pub fn sh(
        &self,
        i: usize,
        script: &str,
        envs: &[(&str, String)],
        cwd: &Path,
        limit: Duration,
    ) -> ScriptRun {
        run_script(Some(&self.machines[i].netns), script, envs, cwd, limit)
    }
}
