//! A nats-server and N nodes, with helpers to read each node's view.

use crate::process::{NatsServer, NodeProc};
use bus_schemas::control::{ControlReply, ControlRequest, NodeStats};
use bus_schemas::membership::{MemberRecord, MemberState};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A local cluster for one test: its own secure nats-server, nodes `n1..nN` (each with its own
/// node identity) and a client that may do anything (the server's `admin` identity).
pub struct Cluster {
    /// The nodes, `nodes[i]` has id `n{i+1}`.
    pub nodes: Vec<NodeProc>,
    /// The bus.
    pub client: async_nats::Client,
    /// The server (dropped last).
    pub nats: NatsServer,
    binary: PathBuf,
    /// The temp dir the nodes' data directories are in unless given a root (removed on drop).
    _dir: tempfile::TempDir,
    /// Where the nodes' data directories are (`<data>/<id>`).
    data: PathBuf,
    extra: Vec<String>,
}

impl Drop for Cluster {
    /// Fails the test if the server refused any node anything: a permission missing from the
    /// node role (unless the test failed already).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let refused = self.nats.node_violations();
        assert!(refused.is_empty(), "the server refused nodes: {refused:#?}");
    }
}

impl Cluster {
    /// Starts a server and `n` nodes and waits until every node sees every other alive.
    pub async fn start(binary: &Path, n: usize) -> Self {
        Self::start_with(binary, n, &[]).await
    }

    /// Like [`Cluster::start`], with extra `idunno-node` flags for every node.
    pub async fn start_with(binary: &Path, n: usize, extra: &[&str]) -> Self {
        Self::start_on(NatsServer::start(), binary, n, extra).await
    }

    /// Like [`Cluster::start_with`], on a server already started.
    pub async fn start_on(nats: NatsServer, binary: &Path, n: usize, extra: &[&str]) -> Self {
        Self::start_in(nats, binary, n, extra, None).await
    }

    /// Like [`Cluster::start_on`], with the nodes' data directories under `data` (e.g. a
    /// [`crate::lazyfs::LazyFs`] mount) instead of a temp dir.
    pub async fn start_in(
        nats: NatsServer,
        binary: &Path,
        n: usize,
        extra: &[&str],
        data: Option<&Path>,
    ) -> Self {
        let client = nats.connect().await;
        let dir = crate::machines::kept_dir("idunno-cluster-");
        let mut cluster = Self {
            nodes: Vec::new(),
            client,
            nats,
            binary: binary.into(),
            data: data.unwrap_or(dir.path()).to_path_buf(),
            _dir: dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 1..=n {
            let node = cluster.spawn_node(&format!("n{i}"));
            cluster.nodes.push(node);
        }
        cluster.wait_all_alive(Duration::from_secs(30)).await;
        cluster
    }

    /// Adds `extra` flags for the nodes started from now on (by [`Cluster::spawn_node`]).
    pub fn add_flags(&mut self, extra: &[&str]) {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
    }

    /// Starts (or restarts) node `id` with its data directory `<data>/<id>`.
    pub fn spawn_node(&self, id: &str) -> NodeProc {
        let data = self.data.join(id);
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        NodeProc::spawn(&self.binary, id, &self.nats.node_bus(id), &data, &extra)
    }

    /// The node with this id.
    pub fn node(&mut self, id: &str) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// Asks node `id` a control request (bounded by 2 s); `None` if it does not answer.
    pub async fn control(&self, id: &str, req: ControlRequest) -> Option<ControlReply> {
        crate::views::control(&self.client, id, req).await
    }

    /// The node holding the coordinator lease, as the first node that answers says (waits
    /// up to 30 s for one).
    pub async fn coordinator(&self) -> String {
        crate::wait_until("a coordinator", Duration::from_secs(30), || async {
            for n in &self.nodes {
                if let Some(ControlReply::Members {
                    coordinator: Some(id),
                    ..
                }) = self.control(&n.id, ControlRequest::Members).await
                {
                    return Some(id);
                }
            }
            None
        })
        .await
    }

    /// Node `observer`'s view, if it answers.
    pub async fn view(&self, observer: &str) -> Option<Vec<MemberRecord>> {
        crate::views::view(&self.client, observer).await
    }

    /// What `observer` thinks of `target`.
    pub async fn seen(&self, observer: &str, target: &str) -> Option<MemberRecord> {
        self.view(observer)
            .await?
            .into_iter()
            .find(|m| m.id == target)
    }

    /// Node `id`'s statistics.
    pub async fn stats(&self, id: &str) -> Option<NodeStats> {
        match self.control(id, ControlRequest::Stat).await? {
            ControlReply::Stats { stats } => Some(stats),
            _ => None,
        }
    }

    /// Whether every observer sees `target` in `state` (and, if given, generation > `after`).
    pub async fn all_see(
        &self,
        observers: &[&str],
        target: &str,
        state: MemberState,
        after: Option<u64>,
    ) -> bool {
        for o in observers {
            match self.seen(o, target).await {
                Some(m) if m.state == state && after.is_none_or(|g| m.generation > g) => {}
                _ => return false,
            }
        }
        true
    }

    /// Waits until every observer sees `target` in `state` (and, if given, with a generation
    /// above `after`); panics after `limit`.
    pub async fn wait_seen(
        &self,
        observers: &[&str],
        target: &str,
        state: MemberState,
        after: Option<u64>,
        limit: Duration,
    ) {
        let what = format!("{observers:?} see {target} {state:?}");
        crate::wait_until(&what, limit, || async {
            self.all_see(observers, target, state, after)
                .await
                .then_some(())
        })
        .await
    }

    /// Whether every node answers and sees every node alive.
    pub async fn everyone_alive(&self) -> bool {
        let ids = self.ids();
        crate::views::all_see_all(&self.client, &ids, &ids, MemberState::Alive).await
    }

    /// Ids of all nodes but `not`.
    pub fn others(&self, not: &[&str]) -> Vec<String> {
        self.ids()
            .into_iter()
            .filter(|i| !not.contains(&i.as_str()))
            .collect()
    }

    /// Ids of all nodes.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// Waits until every node sees every node alive.
    pub async fn wait_all_alive(&self, limit: Duration) {
        crate::wait_until("every node sees every node alive", limit, || async {
            self.everyone_alive().await.then_some(())
        })
        .await
    }
}
