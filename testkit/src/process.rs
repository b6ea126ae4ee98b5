//! Child processes owned by tests: nats-server and idunno-node.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago, and never handed out before by this process: a server
/// restarted on its port (`NatsServer::restart`) leaves it free for a moment, and another test
/// of the same binary must not take it then.
pub fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        if claim(port..port + 1) {
            return port;
        }
    }
}

/// Ports handed out in this process: a test's server may free its port for a moment (a
/// restart), and a parallel test must not be given it meanwhile.
static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// Records `ports` as handed out, unless one of them already was.
fn claim(ports: std::ops::Range<u16>) -> bool {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    if ports.clone().any(|p| given.contains(&p)) {
        return false;
    }
    given.extend(ports);
    true
}

/// A bus port and the first of `n` consecutive HTTP ports, all free a moment ago and all
/// distinct (for `idunno local up --http-port`, which gives node i the port base + i - 1).
pub fn free_ports(n: usize) -> (u16, u16) {
    use std::net::TcpListener;
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let base = first.local_addr().expect("local addr").port();
        if base as usize + n >= u16::MAX as usize {
            continue;
        }
        let rest: Option<Vec<TcpListener>> = (1..n as u16)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if let Some(_held) = rest {
            if !claim(base..base + n as u16) {
                continue;
            }
            // Held while the bus port is chosen, so it cannot fall inside the run.
            return (free_port(), base);
        }
    }
    panic!("no run of {n} consecutive free ports")
}

fn signal(child: &Child, sig: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), sig);
}

/// Whether a NATS server at `addr` answers a connection with its `INFO` line. A bare connect is
/// not enough: while nothing listens, the kernel may pick the probed port itself as the probe's
/// source port, and the socket then connects to itself (a TCP self-connect) and "succeeds".
pub(crate) fn greets(addr: impl std::net::ToSocketAddrs) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 4];
    s.read_exact(&mut head).is_ok() && &head == b"INFO"
}

/// A real nats-server with JetStream, on a free port, killed on drop. Secure unless started
/// open: TLS required of every client (with a certificate of its own CA) and one NKEY
/// identity per node and role (`idunno secure`), each with its role's permissions.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// Its config file, and its store unless given one.
    dir: tempfile::TempDir,
    /// The JetStream store directory.
    store: PathBuf,
    extra: Vec<String>,
    /// Whether JetStream fsyncs every write before acknowledging it (`sync_interval: always`).
    synced: bool,
    /// The identities and certificates of a secure server (in `dir/secure`); `None`: open.
    secure: Option<std::sync::Mutex<bus_client::secure::Secure>>,
}

/// Node identities a secure test server has from the start; others are added (and the server
/// reloaded) when a node with another id starts.
const FIRST_NODES: usize = 8;

impl NatsServer {
    /// Starts a secure server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_at(None, &[], false, true)
    }

    /// Starts an open server (no TLS, no users) with extra nats-server flags (e.g.
    /// `--auth <token>`), for the tests of open mode and of other credentials.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_at(None, extra, false, false)
    }

    /// An open server: anyone who reaches it may do anything.
    pub fn start_open() -> Self {
        Self::start_with(&[])
    }

    /// An open server whose JetStream fsyncs every write (as `local up --insecure` starts),
    /// for benchmarks against a secure one.
    pub fn start_open_synced() -> Self {
        Self::start_at(None, &[], true, false)
    }

    /// A secure server whose JetStream fsyncs every write before acknowledging it
    /// (`sync_interval: always`, as the shipped configs set), for the durability benchmark.
    pub fn start_synced() -> Self {
        Self::start_at(None, &[], true, true)
    }

    /// A secure server whose JetStream store is `store` (made if missing), e.g. under a
    /// [`crate::lazyfs::LazyFs`] mount; `synced` as [`NatsServer::start_synced`], else with
    /// JetStream's default sync (an fsync every 2 minutes). Its config file is kept elsewhere.
    pub fn start_in(store: &Path, synced: bool) -> Self {
        std::fs::create_dir_all(store).expect("make the store dir");
        Self::start_at(Some(store), &[], synced, true)
    }

    fn start_at(store: Option<&Path>, extra: &[&str], synced: bool, secure: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let secure = secure.then(|| {
            use bus_client::secure::{Secure, Spec};
            let ids: Vec<String> = (1..=FIRST_NODES).map(|i| format!("n{i}")).collect();
            let root = dir.path().join("secure");
            let spec = Spec {
                admin: true,
                ..Spec::local(&root, &ids)
            };
            std::sync::Mutex::new(Secure::init(&root, &spec).expect("make the secure dir"))
        });
        let mut server = Self {
            child: None,
            port: free_port(),
            // Not the temp dir itself: a wiped store must keep the config and credentials.
            store: store.map_or_else(|| dir.path().join("store"), Path::to_path_buf),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            synced,
            secure,
        };
        server.launch();
        server
    }

    /// The lines of the server's log that say it refused a node's publish or subscription
    /// (nodes name their connections `idunno-node-<id>` and `idunno-node-<id>-members`). Nodes
    /// are never refused anything: one means a permission missing from the node role.
    pub fn node_violations(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("Publish Violation") || l.contains("Subscription Violation"))
            .filter(|l| l.contains("idunno-node-"))
            .map(String::from)
            .collect()
    }

    /// Whether the server is secure.
    pub fn is_secure(&self) -> bool {
        self.secure.is_some()
    }

    /// How `identity` (`admin`, `operator`, `viewer`, `node-<id>`) connects; on an open
    /// server, just the URL.
    pub fn bus(&self, identity: &str) -> bus_client::BusOptions {
        match &self.secure {
            Some(s) => {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                bus_client::BusOptions::for_identity(self.url(), s.identity_dir(identity))
            }
            None => bus_client::BusOptions::for_url(self.url()),
        }
    }

    /// How node `id` connects: its own identity, made (and the server reloaded) if new.
    pub fn node_bus(&self, id: &str) -> bus_client::BusOptions {
        let identity = bus_schemas::roles::node_identity(id);
        if let Some(s) = &self.secure {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            if !s.has(&identity) {
                s.add(bus_schemas::roles::Role::Node, &identity, Some(id))
                    .expect("add a node identity");
                if let Some(child) = &self.child {
                    signal(child, Signal::SIGHUP);
                }
            }
        }
        self.bus(&identity)
    }

    /// The secure directory (`idunno secure init`'s layout), if the server is secure.
    pub fn secure_dir(&self) -> Option<PathBuf> {
        self.secure
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).dir.clone())
    }

    /// Asks the server to load its config again (`SIGHUP`, as `nats-server --signal reload`):
    /// identities added or rotated in its secure directory take effect.
    pub fn reload(&self) {
        if let Some(child) = &self.child {
            signal(child, Signal::SIGHUP);
        }
    }

    /// A client connected as `identity` (see [`NatsServer::bus`]).
    pub async fn connect_as(&self, identity: &str) -> async_nats::Client {
        let bus = self.bus(identity);
        let opts = bus.nats_options("test").await.expect("client options");
        opts.connect(self.url())
            .await
            .expect("connect to test nats")
    }

    /// A client that may do anything (the `admin` identity of a secure server), for tests
    /// that play the cluster's peers or its attackers.
    pub async fn connect(&self) -> async_nats::Client {
        self.connect_as("admin").await
    }

    fn config(&self) -> Option<String> {
        let secure = self.secure.as_ref()?;
        let s = secure.lock().unwrap_or_else(|e| e.into_inner());
        let server = bus_client::secure::natsconf::Server {
            name: "test".into(),
            listen: format!("127.0.0.1:{}", self.port),
            http: None,
            store_dir: self.store.display().to_string(),
            cluster: None,
            sync_always: self.synced,
        };
        let users = s.users_file();
        let users = users.strip_prefix(self.dir.path()).unwrap_or(&users);
        Some(bus_client::secure::natsconf::server(
            &server,
            &s.server_tls_dir("single"),
            &s.ca_file(),
            &users.display().to_string(),
        ))
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(bus_client::nats_server_binary());
        if let Some(text) = self.config() {
            let conf = self.dir.path().join("nats.conf");
            std::fs::write(&conf, text).expect("write the server's config");
            cmd.arg("-c").arg(conf);
        } else if self.synced {
            // `sync_interval` has no flag: a config file says it (kept out of the store dir,
            // which may lose unsynced writes).
            let conf = self.dir.path().join("nats.conf");
            let text = format!(
                "max_payload: 8MB\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                self.store.display().to_string()
            );
            std::fs::write(&conf, text).expect("write the server's config");
            cmd.arg("-c").arg(conf);
        } else {
            cmd.arg("-js").arg("-sd").arg(&self.store);
        }
        if self.secure.is_none() {
            cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("open the server's log");
        let child = cmd
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (run infra/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !greets(("127.0.0.1", self.port)) {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (0 while it is stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL) and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the server (SIGKILL), runs `between` while it is down (say, a power cut of its
    /// disk), and starts it again on the same port and store.
    pub fn restart_after(&mut self, between: impl FnOnce()) {
        self.stop();
        between();
        self.launch();
    }

    /// Stops the server (SIGKILL), deletes everything JetStream stored (streams, KV buckets),
    /// and starts it again on the same port: a server whose storage was lost.
    pub fn restart_wiped(&mut self) {
        self.stop();
        let entries = std::fs::read_dir(&self.store).expect("read the store dir");
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        self.launch();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `idunno-node` process, killed on drop.
pub struct NodeProc {
    /// The node id.
    pub id: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    child: Child,
}

impl NodeProc {
    /// Starts `binary` as node `id` on `bus` (its URL and credentials, given through the
    /// environment), with a free dashboard port.
    pub fn spawn(
        binary: &Path,
        id: &str,
        bus: &bus_client::BusOptions,
        data_dir: &Path,
        extra: &[&str],
    ) -> Self {
        Self::spawn_with(Command::new(binary), id, bus, data_dir, extra)
    }

    /// Starts `binary` as node `id` inside network namespace `netns` (through `ip netns
    /// exec`, which execs the binary: the child is the node itself), with its dashboard on a
    /// free port of `ip`.
    pub fn spawn_in(
        netns: &str,
        ip: &str,
        binary: &Path,
        id: &str,
        bus: &bus_client::BusOptions,
        data_dir: &Path,
        (extra, host): (&[&str], &str),
    ) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(binary);
        let http = format!("{ip}:0");
        let mut all = vec!["--http", &http, "--host", host];
        all.extend_from_slice(extra);
        Self::spawn_with(cmd, id, bus, data_dir, &all)
    }

    fn spawn_with(
        mut cmd: Command,
        id: &str,
        bus: &bus_client::BusOptions,
        data_dir: &Path,
        extra: &[&str],
    ) -> Self {
        std::fs::create_dir_all(data_dir).expect("data dir");
        // Appended: a node started again keeps its earlier runs' lines.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data_dir.join("stdout.log"))
            .expect("stdout log");
        // One tch thread unless the caller asks for more.
        let threads: &[&str] = if extra.contains(&"--threads") {
            &[]
        } else {
            &["--threads", "1"]
        };
        // A free loopback dashboard port unless the caller chose the address.
        let http: &[&str] = if extra.contains(&"--http") {
            &[]
        } else {
            &["--http", "127.0.0.1:0"]
        };
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("IDUNNO_NATS_")) {
            cmd.env_remove(key);
        }
        let child = cmd
            .args(["--id", id])
            .envs(bus.to_env())
            .args(http)
            .args(threads)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", node_log_filter())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start idunno-node");
        Self {
            id: id.into(),
            data_dir: data_dir.into(),
            child,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        signal(&self.child, Signal::SIGTERM);
    }

    /// Freezes the process (SIGSTOP).
    pub fn freeze(&self) {
        signal(&self.child, Signal::SIGSTOP);
    }

    /// Thaws the process (SIGCONT).
    pub fn thaw(&self) {
        signal(&self.child, Signal::SIGCONT);
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit; returns whether it exited successfully.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.thaw();
        self.kill9();
    }
}

/// The nodes' log filter: `IDUNNO_TEST_NODE_LOG` (to debug a test), else `info`.
fn node_log_filter() -> String {
    std::env::var("IDUNNO_TEST_NODE_LOG").unwrap_or_else(|_| "info".into())
}
