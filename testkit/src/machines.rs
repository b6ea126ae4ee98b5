//! "Machines" on one box, for tests of several machines. Each machine is a Linux network
//! namespace with its own address on a bridge, its own nats-server (the servers form one
//! JetStream cluster over routes) and its own nodes, which reach the cluster only through their
//! machine's address. The test process talks to every machine over the bridge. A machine can be
//! killed (every process in it, `kill -9`), cut off (its link down) and healed.
//!
//! The machines are secure, as `idunno secure init` makes a cluster: every server requires TLS
//! of clients and routes, every node connects as its own identity, and the test's clients as
//! the `admin` identity.
//!
//! Everything the harness makes (namespaces, links, the bridge, processes, directories) is
//! removed when [`Machines`] drops, also when a test fails. A bridge left behind by a run that
//! was itself killed names its owner's pid; the next run that finds it with that pid gone
//! removes it with its namespaces and processes.

mod net;
mod shell;

pub use shell::{run_script, ScriptRun};

use crate::process::{greets, NodeProc};
use bus_schemas::membership::MemberState;
use net::{bridge, claim_slot, healthy, ip_cmd, is_root, remove_slot};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The client port of every machine's nats-server (each machine has its own address).
pub const NATS_PORT: u16 = 4222;
/// The route port of every machine's nats-server.
const ROUTE_PORT: u16 = 6222;
/// The monitoring port of every machine's nats-server (`/healthz`).
const MONITOR_PORT: u16 = 8222;
/// Slots for harnesses alive at once on this box: slot `k` owns bridge `idnb{k}` and the
/// subnet 10.213.k.0/24.
const SLOTS: u8 = 200;

/// One machine: a namespace, its address, its nats-server and its nodes.
pub struct Machine {
    /// Its name (`a`, `b`, …), also the `--host` its nodes announce.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// Its nodes.
    pub nodes: Vec<NodeProc>,
    /// The `--zone` its nodes announce, if any.
    pub zone: Option<String>,
    link: String,
    nats: Option<Child>,
    dir: PathBuf,
}

impl Machine {
    /// The URL of this machine's nats-server.
    pub fn url(&self) -> String {
        format!("nats://{}:{NATS_PORT}", self.ip)
    }

    /// Its directory (under the machines' temporary directory): its nats-server's store and
    /// log, its nodes' data, and whatever a test keeps there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether its nats-server runs.
    pub fn nats_running(&mut self) -> bool {
        self.nats
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn stop_nats(&mut self) {
        if let Some(mut child) = self.nats.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// M machines on one box (see the module's doc); dropped, it removes all it made.
pub struct Machines {
    /// The machines, `machines[i]` named `a`, `b`, ….
    pub machines: Vec<Machine>,
    slot: u8,
    binary: PathBuf,
    extra: Vec<String>,
    dir: tempfile::TempDir,
    /// The credentials of the machines' cluster (`<dir>/secure`).
    secure: bus_client::secure::Secure,
    _turn: Turn,
}

/// Node identities made with the machines (`a1`…`f3`); others are added when a node with
/// another id starts (and every server reloads).
fn first_node_ids() -> Vec<String> {
    ('a'..='f')
        .flat_map(|m| (1..=3).map(move |k| format!("{m}{k}")))
        .collect()
}

/// The machines' directory (servers' stores, nodes' data and logs).
fn machines_dir() -> tempfile::TempDir {
    kept_dir("idunno-machines-")
}

/// A directory for a test's servers and nodes (stores, data, logs) named `prefix…`: removed at
/// the end, unless `IDUNNO_TEST_KEEP` is set (then its path is printed, to read the logs).
pub(crate) fn kept_dir(prefix: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("IDUNNO_TEST_KEEP").is_some();
    let dir = (tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep))
    .tempdir()
    .expect("temp dir");
    if keep {
        eprintln!("test files kept in {}", dir.path().display());
    }
    dir
}

/// Sets of machines alive at once in one test process (`IDUNNO_MACHINES_AT_ONCE`, default 2):
/// each set runs several servers and nodes, and more at once would starve a small box.
static RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One place among the sets of machines alive at once, given back on drop.
struct Turn;

impl Turn {
    fn take() -> Turn {
        let most: usize = std::env::var("IDUNNO_MACHINES_AT_ONCE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
            .max(1);
        let (lock, freed) = &RUNNING;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= most {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (lock, freed) = &RUNNING;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        freed.notify_one();
    }
}

/// Why this box cannot run the machines (not root, no `ip`), or None.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("tests of several machines need root (network namespaces)".into());
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        return Some("tests of several machines need iproute2's `ip` on PATH".into());
    }
    if !Path::new("/sys/class/net").exists() {
        return Some("tests of several machines need /sys/class/net".into());
    }
    None
}

impl Machines {
    /// Makes `m` machines (namespaces on a fresh bridge), starts a nats-server on each, all
    /// in one JetStream cluster, and waits until JetStream answers on every one. Panics with
    /// what is missing where namespaces cannot be made (see [`unavailable`]).
    pub fn start(binary: &Path, m: usize) -> Self {
        let mut all = Self::namespaces(binary, m);
        for i in 0..m {
            all.start_nats(i);
        }
        all.wait_jetstream(Duration::from_secs(60));
        all
    }

    /// Makes `m` machines with nothing running in them (see [`Machines::bare`]).
    fn namespaces(binary: &Path, m: usize) -> Self {
        if let Some(why) = unavailable() {
            panic!("{why}");
        }
        assert!((1..=26).contains(&m), "1 to 26 machines, not {m}");
        let turn = Turn::take();
        let slot = claim_slot();
        let dir = machines_dir();
        let root = dir.path().join("secure");
        let spec = bus_client::secure::Spec {
            admin: true,
            ..bus_client::secure::Spec::local(&root, &first_node_ids())
        };
        let secure =
            bus_client::secure::Secure::init(&root, &spec).expect("the machines' credentials");
        let mut all = Self {
            machines: Vec::new(),
            slot,
            binary: binary.into(),
            extra: Vec::new(),
            dir,
            secure,
            _turn: turn,
        };
        for _ in 0..m {
            all.add_machine();
        }
        all
    }

    /// Extra `idunno-node` flags for every node started from now on.
    pub fn with_node_flags(mut self, extra: &[&str]) -> Self {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The zone of each machine (`zones[i]` for machine `i`), announced by nodes started
    /// from now on.
    pub fn with_zones(mut self, zones: &[&str]) -> Self {
        for (m, z) in self.machines.iter_mut().zip(zones) {
            m.zone = Some(z.to_string());
        }
        self
    }

    /// The nats-server config of machine `i`: TLS and the identities, routes to every other
    /// machine (no cluster at all for a machine on its own: JetStream refuses a cluster
    /// without routes).
    fn nats_conf(&self, i: usize) -> String {
        use bus_client::secure::natsconf;
        let me = &self.machines[i];
        let routes: Vec<String> = (self.machines.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| format!("tls://{}:{ROUTE_PORT}", m.ip))
            .collect();
        let cluster = (!routes.is_empty()).then(|| (format!("{}:{ROUTE_PORT}", me.ip), routes));
        let server = natsconf::Server {
            name: format!("m-{}", me.name),
            listen: format!("{}:{NATS_PORT}", me.ip),
            http: Some(format!("{}:{MONITOR_PORT}", me.ip)),
            store_dir: me.dir.join("nats").display().to_string(),
            cluster,
            sync_always: true,
        };
        // nats.conf is in the machine's directory, beside `secure/`.
        natsconf::server(
            &server,
            &self.secure.server_tls_dir(&server.name),
            &self.secure.ca_file(),
            "../secure/nats/users.conf",
        )
    }

    /// How `identity` connects to machine `i`'s server.
    pub fn bus_of(&self, i: usize, identity: &str) -> bus_client::BusOptions {
        let dir = self.secure.identity_dir(identity);
        bus_client::BusOptions::for_identity(self.machines[i].url(), dir)
    }

    /// The machines' credentials (`idunno secure init`'s layout).
    pub fn secure_dir(&self) -> &Path {
        &self.secure.dir
    }

    /// Makes node `id`'s identity if it has none yet, and makes every running server load it.
    fn ensure_node_identity(&mut self, id: &str) {
        let identity = bus_schemas::roles::node_identity(id);
        if self.secure.has(&identity) {
            return;
        }
        (self
            .secure
            .add(bus_schemas::roles::Role::Node, &identity, Some(id)))
        .expect("add a node identity");
        for m in &self.machines {
            if let Some(child) = &m.nats {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
            }
        }
    }

    /// Starts (or starts again, on the same store) machine `i`'s nats-server and waits until
    /// it greets clients.
    pub fn start_nats(&mut self, i: usize) {
        let conf = self.machines[i].dir.join("nats.conf");
        std::fs::write(&conf, self.nats_conf(i)).expect("write nats.conf");
        let m = &mut self.machines[i];
        m.stop_nats();
        let log = std::fs::File::create(m.dir.join("nats.log")).expect("nats log");
        let child = Command::new("ip")
            .args(["netns", "exec", &m.netns])
            .arg(bus_client::nats_server_binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server (run infra/setup.sh)");
        m.nats = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !greets((m.ip, NATS_PORT)) {
            assert!(
                Instant::now() < deadline,
                "nats-server of {} did not listen",
                m.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running server's `/healthz` says JetStream is current.
    pub fn wait_jetstream(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for i in 0..self.machines.len() {
            if !self.machines[i].nats_running() {
                continue;
            }
            let addr = format!("{}:{MONITOR_PORT}", self.machines[i].ip);
            while !healthy(&addr) {
                assert!(Instant::now() < deadline, "JetStream not ready on {addr}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Every server's URL, for a client that may use any of them.
    pub fn urls(&self) -> Vec<String> {
        self.machines.iter().map(Machine::url).collect()
    }

    /// A client of machine `i`'s server (it learns the others from it, and reconnects to one
    /// of them if that server goes). A test that cuts a machine off talks through another
    /// one: a client of the cut server would not notice for a while.
    pub async fn client_of(&self, i: usize) -> async_nats::Client {
        let bus = self.bus_of(i, "admin");
        let opts = bus.nats_options("test").await.expect("client options");
        opts.connect(bus.url.as_str())
            .await
            .expect("connect to the machine")
    }

    /// A client that knows every server (and reconnects to another when one goes).
    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = (self.urls().iter())
            .map(|u| u.parse().expect("server address"))
            .collect();
        let opts = (self.bus_of(0, "admin").nats_options("test").await).expect("client options");
        opts.connect(addrs).await.expect("connect to the machines")
    }

    /// A client of machine `i`'s server connected from inside the machine (it still reaches
    /// that server while the machine is cut off).
    pub fn client_inside(&self, i: usize) -> crate::netns::NsClient {
        crate::netns::NsClient::connect(&self.machines[i].netns, &self.bus_of(i, "admin"))
    }

    /// Starts node `id` on machine `i` (its data in the machine's directory), connected to
    /// that machine's server and announcing the machine's name as its host.
    pub fn spawn_node(&mut self, i: usize, id: &str) {
        self.ensure_node_identity(id);
        let bus = self.bus_of(i, &bus_schemas::roles::node_identity(id));
        let mut extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let m = &mut self.machines[i];
        if let Some(zone) = &m.zone {
            extra.extend(["--zone", zone]);
        }
        let data = m.dir.join("nodes").join(id);
        let ip = m.ip.to_string();
        let host = m.name.clone();
        let node = NodeProc::spawn_in(
            &m.netns,
            &ip,
            &self.binary,
            id,
            &bus,
            &data,
            (&extra, &host),
        );
        m.nodes.retain(|n| n.id != id);
        m.nodes.push(node);
    }

    /// Starts `per` nodes on every machine, `<machine><k>` (`a1`, `a2`, `b1`, …).
    pub fn spawn_nodes(&mut self, per: usize) {
        for i in 0..self.machines.len() {
            let name = self.machines[i].name.clone();
            for k in 1..=per {
                self.spawn_node(i, &format!("{name}{k}"));
            }
        }
    }

    /// Waits until every node (seen through `client`) sees every node alive.
    pub async fn wait_all_alive(&self, client: &async_nats::Client, limit: Duration) {
        let ids = self.ids();
        crate::views::wait_all_see(client, &ids, &ids, MemberState::Alive, limit).await
    }

    /// Ids of every node on every machine.
    pub fn ids(&self) -> Vec<String> {
        let nodes = self.machines.iter().flat_map(|m| &m.nodes);
        nodes.map(|n| n.id.clone()).collect()
    }

    /// Ids of the nodes on machine `i`.
    pub fn ids_on(&self, i: usize) -> Vec<String> {
        self.machines[i]
            .nodes
            .iter()
            .map(|n| n.id.clone())
            .collect()
    }

    /// Kills machine `i` at once: its nats-server and every node, `kill -9`. Its directories
    /// stay, so it can be started again on them.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.machines[i];
        m.stop_nats();
        for n in &mut m.nodes {
            n.kill9();
        }
    }

    /// Kills machine `i`'s nats-server alone (`kill -9`); its nodes keep running.
    pub fn kill_nats(&mut self, i: usize) {
        self.machines[i].stop_nats();
    }

    /// Cuts machine `i` off: its link to the bridge goes down (its processes keep running).
    pub fn cut(&self, i: usize) {
        ip_cmd(&["link", "set", &self.machines[i].link, "down"]);
    }

    /// Heals a cut: the link comes up again.
    pub fn heal(&self, i: usize) {
        ip_cmd(&["link", "set", &self.machines[i].link, "up"]);
    }
}

/// Lines of each node's log printed when a test fails.
const LOG_TAIL: usize = 40;

/// The last [`LOG_TAIL`] lines of the log of every node of `machines`, to stderr: a test that
/// fails in CI (where nothing is kept) says what its nodes did last.
fn print_log_tails(machines: &[Machine]) {
    for node in machines.iter().flat_map(|m| &m.nodes) {
        let log = node.data_dir.join("node.log");
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "---- the last lines of {}'s log ({}) ----",
            node.id,
            log.display()
        );
        for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
            eprintln!("{line}");
        }
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.machines);
        }
        for m in &mut self.machines {
            m.stop_nats();
            m.nodes.clear();
        }
        remove_slot(self.slot);
    }
}
