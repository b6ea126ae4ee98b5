//! The README's walk-through of several machines ("Running on several machines"), run as
//! written: its `sh walkthrough` blocks are read from README.md when the test runs, so the
//! README cannot drift from what is tested. Three machines (network namespaces, nothing
//! running in them) install the bundle this build makes; the test's host makes the cluster's
//! credentials (`idunno secure init`, `export`); each machine starts NATS with the generated
//! config (TLS for clients and routes) and a node with its identity through the shipped units;
//! a fourth is added (its credentials, every server reloaded); the third is drained and
//! removed; the cluster's copies, its members and a file are checked after each stage.
//!
//! What stands in for real machines: each machine has a root directory under which the blocks'
//! `/opt`, `/etc/idunno`, `/etc/systemd/system` and `/var/lib/idunno` are (the paths in the
//! blocks and units are rewritten); `machine-x` becomes machine x's address; the README's
//! `idunno-<version>-linux-<arch>` becomes this bundle's name; `systemctl` and `useradd` are
//! stand-ins (`walkthrough/systemctl.rs`): units run as root (no User=, no useradd) and are not
//! restarted, and `/usr/local/bin/nats-server` is the build's nats-server. `# anywhere` blocks
//! run on the test's host (the administrator's), with machine a's `/opt/idunno/bin` on PATH;
//! the `secure-<x>` directories they make are what the README copies to each machine with
//! `scp`: the test copies them into every machine's home after each such block. `chown` is a
//! stand-in too (no user idunno).

mod common;
#[path = "walkthrough/readme.rs"]
mod readme;
#[path = "walkthrough/systemctl.rs"]
mod systemctl;

use bus_schemas::cluster::ClusterStatus;
use bus_schemas::membership::MemberState;
use readme::{Block, Concrete, Place};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::Machines;

/// The longest a block may run (its `until` loops wait for the cluster).
const BLOCK_LIMIT: Duration = Duration::from_secs(180);
/// The longest the test waits for the cluster to reach a state.
const WAIT: Duration = Duration::from_secs(120);

/// The machines and what the blocks need around them.
struct Walk {
    machines: Machines,
    /// The machines in the cluster now (`# on every machine` runs on these), by letter.
    cluster: Vec<char>,
    /// The `# on every machine` blocks run so far, for a machine added later.
    every_so_far: Vec<Block>,
    archive: PathBuf,
    bundle: String,
    stand_ins: PathBuf,
    anywhere: PathBuf,
}

impl Walk {
    fn new(machines: Machines, archive: PathBuf, dir: &Path) -> Walk {
        let name = archive.file_name().unwrap().to_string_lossy().into_owned();
        let bundle = name.strip_suffix(".tar.gz").unwrap().to_string();
        let stand_ins = dir.join("stand-ins");
        systemctl::install(&stand_ins);
        let anywhere = dir.join("anywhere");
        std::fs::create_dir_all(&anywhere).unwrap();
        let mut walk = Walk {
            machines,
            cluster: Vec::new(),
            every_so_far: Vec::new(),
            archive,
            bundle,
            stand_ins,
            anywhere,
        };
        for i in 0..walk.machines.machines.len() {
            walk.prepare(i);
        }
        walk
    }

    fn letter(&self, i: usize) -> char {
        self.machines.machines[i].name.chars().next().unwrap()
    }

    fn index(&self, letter: char) -> usize {
        (0..self.machines.machines.len())
            .find(|&i| self.letter(i) == letter)
            .unwrap_or_else(|| panic!("no machine {letter}"))
    }

    fn root(&self, i: usize) -> PathBuf {
        self.machines.machines[i].dir().join("root")
    }

    /// A fresh machine's file system: the usual directories, the archive and the exported
    /// credentials copied to its home.
    fn prepare(&mut self, i: usize) {
        let root = self.root(i);
        for d in ["opt", "etc/systemd/system", "var/lib", "home"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let copy = root.join("home").join(self.archive.file_name().unwrap());
        std::os::unix::fs::symlink(&self.archive, copy).unwrap();
        self.copy_credentials(i);
        self.cluster.push(self.letter(i));
    }

    /// `scp -rp secure-* machine:`: every `secure-<x>` directory the administrator's host
    /// holds, copied (replacing an older copy) into machine `i`'s home.
    fn copy_credentials(&self, i: usize) {
        let home = self.root(i).join("home");
        std::fs::create_dir_all(&home).unwrap();
        for entry in std::fs::read_dir(&self.anywhere).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("secure-") && entry.path().is_dir() {
                let to = home.join(&name);
                let _ = std::fs::remove_dir_all(&to);
                let cp = std::process::Command::new("cp")
                    .arg("-rp")
                    .arg(entry.path())
                    .arg(&to)
                    .status()
                    .unwrap();
                assert!(cp.success(), "cp {name}");
            }
        }
    }

    /// The operator identity `secure init` made on the administrator's host.
    fn operator(&self) -> PathBuf {
        self.anywhere.join("secure/identities/operator")
    }

    /// Adds a machine's namespace and address (a machine not yet in the cluster: the blocks
    /// may name it); returns its index.
    fn new_machine(&mut self) -> usize {
        self.machines.add_machine()
    }

    /// Prepares machine `i` (made by [`Walk::new_machine`]) and runs on it the `# on every
    /// machine` blocks run so far.
    fn add_machine(&mut self, i: usize) {
        self.prepare(i);
        for block in self.every_so_far.clone() {
            self.run_on(i, &block);
        }
    }

    fn addresses(&self) -> BTreeMap<char, Ipv4Addr> {
        let all = 0..self.machines.machines.len();
        all.map(|i| (self.letter(i), self.machines.machines[i].ip))
            .collect()
    }

    fn run(&mut self, block: &Block) {
        match block.place {
            Place::Every => {
                for letter in self.cluster.clone() {
                    self.run_on(self.index(letter), block);
                }
                self.every_so_far.push(block.clone());
            }
            Place::Machine(letter) => self.run_on(self.index(letter), block),
            Place::Anywhere => self.run_anywhere(block),
        }
    }

    fn run_on(&self, i: usize, block: &Block) {
        let root = self.root(i);
        let addresses = self.addresses();
        let concrete = Concrete {
            root: Some(&root),
            addresses: &addresses,
            bundle: &self.bundle,
        };
        let script = format!("set -e\n{}", concrete.apply(&block.script));
        let envs = [
            ("ME", self.letter(i).to_string()),
            ("PATH", self.path(&self.stand_ins)),
            ("WT_ROOT", root.display().to_string()),
            (
                "WT_NATS_SERVER",
                bus_client::nats_server_binary().display().to_string(),
            ),
        ];
        let ran = (self.machines).sh(i, &script, &envs, &root.join("home"), BLOCK_LIMIT);
        assert!(
            ran.ok,
            "on machine {}:\n{script}\n{}\n{}",
            self.letter(i),
            ran.output,
            unit_logs(&root)
        );
    }

    fn run_anywhere(&self, block: &Block) {
        let addresses = self.addresses();
        let concrete = Concrete {
            root: None,
            addresses: &addresses,
            bundle: &self.bundle,
        };
        let script = format!("set -e\n{}", concrete.apply(&block.script));
        let bin = self.root(0).join("opt/idunno/bin");
        let envs = [("PATH", self.path(&bin))];
        let ran = testkit::run_script(None, &script, &envs, &self.anywhere, BLOCK_LIMIT);
        assert!(ran.ok, "anywhere:\n{script}\n{}", ran.output);
        for i in 0..self.machines.machines.len() {
            self.copy_credentials(i);
        }
    }

    /// `first`, then this process's PATH.
    fn path(&self, first: &Path) -> String {
        let rest = std::env::var("PATH").unwrap_or_default();
        format!("{}:{rest}", first.display())
    }

    fn url(&self, letter: char) -> String {
        format!(
            "nats://{}:4222",
            self.machines.machines[self.index(letter)].ip
        )
    }

    /// `idunno --json cluster status` through machine a (it prints the status also when it
    /// exits 1), if it answers.
    fn status(&self) -> Option<ClusterStatus> {
        let cli = self.root(0).join("opt/idunno/bin/idunno");
        let out = std::process::Command::new(cli)
            .arg("--nats-identity")
            .arg(self.operator())
            .args(["--nats", &self.url('a'), "--json", "cluster", "status"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    async fn wait_status(&self, what: &str, ok: impl Fn(&ClusterStatus) -> bool) {
        self.wait_for(what, || async { self.status().is_some_and(|s| ok(&s)) })
            .await;
    }

    /// Waits until each of `observers` sees each of `targets` in `state` (asked through
    /// machine a).
    async fn wait_members(&self, observers: &[&str], targets: &[&str], state: MemberState) {
        let options = bus_client::BusOptions::for_identity(self.url('a'), self.operator());
        let client = options.connect_once("walkthrough").await.unwrap();
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (observers, targets) = (own(observers), own(targets));
        let what = format!("{observers:?} see {targets:?} {state:?}");
        self.wait_for(&what, || {
            testkit::views::all_see_all(&client, &observers, &targets, state)
        })
        .await;
    }

    /// Polls `check` until it holds; after [`WAIT`], panics with `what`, the last status and
    /// every unit's output.
    async fn wait_for<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + WAIT;
        while !check().await {
            if std::time::Instant::now() > deadline {
                let logs: Vec<String> = (0..self.machines.machines.len())
                    .map(|i| unit_logs(&self.root(i)))
                    .collect();
                panic!(
                    "timed out after {WAIT:?} waiting for: {what}\nstatus: {:#?}\n{}",
                    self.status(),
                    logs.join("")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.anywhere.join(name)).unwrap()
    }
}

/// Every bucket and stream has 3 copies, all current, on servers named in `on`.
fn three_current_on(s: &ClusterStatus, on: &[&str]) -> bool {
    s.replicas == 3
        && s.assets.iter().all(|a| {
            a.healthy(3)
                && a.copies.len() == 3
                && a.copies.iter().all(|c| on.contains(&c.server.as_str()))
        })
}

/// The tail of each unit's output on the machine rooted at `root`.
fn unit_logs(root: &Path) -> String {
    let dir = root.join("run/systemd");
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            text.push_str(&format!("--- {}\n{}\n", path.display(), tail.join("\n")));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_installs_adds_and_drains_machines() {
    if let Some(why) = testkit::machines_unavailable() {
        panic!("{why}");
    }
    let root = testkit::repo_dir();
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    let steps = readme::steps(&text);
    let numbers: Vec<u32> = steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [2, 3, 4, 5, 6, 7, 8], "the steps this test knows");
    let dir = tempfile::tempdir().unwrap();
    let archive = common::bundle::archive(dir.path());
    let mut walk = Walk::new(Machines::bare(3), archive, dir.path());
    let abc = ["idunno-a", "idunno-b", "idunno-c"];
    let abd = ["idunno-a", "idunno-b", "idunno-d"];

    let mut d = None;
    for step in &steps {
        if step.number == 7 {
            // Its credentials (the first block) name machine d's address.
            d = Some(walk.new_machine());
        }
        let mut anywhere = 0;
        for block in &step.blocks {
            if block.place == Place::Anywhere && step.number == 6 {
                walk.wait_members(&["a1", "b1", "c1"], &["a1", "b1", "c1"], MemberState::Alive)
                    .await;
            }
            if block.place == Place::Anywhere && step.number == 7 && anywhere == 1 {
                // "Then, on d, run steps 2, 4 and 5 as written, with ME=d" (its credentials
                // made and every server reloaded by the blocks before).
                walk.add_machine(d.expect("machine d"));
                let all = ["a1", "b1", "c1", "d1"];
                walk.wait_members(&all, &all, MemberState::Alive).await;
                walk.wait_status("4 servers", |s| s.servers.len() == 4)
                    .await;
            }
            walk.run(block);
            anywhere += usize::from(block.place == Place::Anywhere);
            if block.place == Place::Machine('c') && walk.cluster.contains(&'c') {
                // The node stopped: it left, and nobody declared it failed.
                walk.wait_members(&["a1", "b1", "d1"], &["c1"], MemberState::Left)
                    .await;
                walk.cluster.retain(|&l| l != 'c');
            }
        }
        match step.number {
            6 => {
                walk.wait_status("3 servers, 3 current copies each", |s| {
                    s.servers.len() == 3 && three_current_on(s, &abc)
                })
                .await;
                assert_eq!(walk.file("back.txt"), walk.file("hello.txt"));
            }
            7 => {
                walk.wait_status("4 servers, every copy current", |s| {
                    s.servers.len() == 4 && three_current_on(s, &abc)
                })
                .await;
            }
            8 => {
                walk.wait_status("3 servers, no copy on idunno-c", |s| {
                    s.servers.len() == 3 && three_current_on(s, &abd)
                })
                .await;
                assert_eq!(walk.file("again.txt"), walk.file("hello.txt"));
                walk.wait_members(&["a1", "b1", "d1"], &["c1"], MemberState::Left)
                    .await;
            }
            _ => {}
        }
    }
}
