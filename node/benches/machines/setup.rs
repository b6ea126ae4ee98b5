//! A set of nodes ready for work, on namespace machines (`testkit::Machines`) or on one
//! nats-server of this box (`testkit::Cluster`): every node alive and serving, JetStream's
//! copies current, Fashion-MNIST and the fixture model imported, and a client of each server
//! recording every results message.

use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::cluster::{ClusterReply, ClusterRequest};
use bus_schemas::subjects;
use std::path::Path;
use std::time::Duration;
use testkit::{collect_results, import_fashion, wait_until, Machines, Seen};

use crate::common;

/// A set of nodes ready for work, and what talks to it.
pub struct Setup {
    /// Where the nodes run (both sides of a comparison on namespace machines, so that both
    /// pay the same for the bridge).
    pub machines: Machines,
    /// A client of each server (`clients[i]` of machine `i`).
    pub clients: Vec<async_nats::Client>,
    /// The results messages each of those clients saw.
    pub seen: Vec<Seen>,
    /// SDFS through the first server.
    pub fs: SdfsClient,
    /// Jobs through the first server.
    pub jobs: JobsClient,
}

impl Setup {
    /// Starts `machines` machines of `per` nodes each and waits until they are ready.
    pub async fn machines(machines: usize, per: usize) -> Setup {
        let m = tokio::task::block_in_place(|| {
            let mut m = Machines::start(Path::new(common::machines::NODE), machines);
            m.spawn_nodes(per);
            m
        });
        let mut clients = Vec::new();
        for i in 0..machines {
            clients.push(m.client_of(i).await);
        }
        m.wait_all_alive(&clients[0], Duration::from_secs(60)).await;
        let ids = m.ids();
        Setup::ready(m, clients, &ids).await
    }

    /// Waits until nodes `ids` serve, imports the data and the fixture, and starts recording
    /// results.
    async fn ready(machines: Machines, clients: Vec<async_nats::Client>, ids: &[String]) -> Setup {
        serving(&clients[0], ids).await;
        let (fs, jobs) = import_fashion(&clients[0], "fm").await;
        common::import_fixture(&fs, &jobs, "fixture").await;
        let mut seen = Vec::new();
        for c in &clients {
            seen.push(collect_results(c).await);
        }
        wait_copies(&clients[0], clients.len().min(3) as u8).await;
        Setup {
            machines,
            clients,
            seen,
            fs,
            jobs,
        }
    }

    /// The machines.
    pub fn m(&mut self) -> &mut Machines {
        &mut self.machines
    }
}

/// Waits until every one of `ids` serves SDFS and some node answers cluster requests (as
/// the tests' `three_machines` does).
async fn serving(client: &async_nats::Client, ids: &[String]) {
    let inventory = bus_schemas::fsck::InventoryRequest { after: None };
    let wait = Duration::from_secs(2);
    for id in ids {
        let subject = subjects::sdfs_inventory(id);
        let what = format!("{id} serves SDFS");
        wait_until(&what, Duration::from_secs(60), || async {
            let reply: Result<bus_schemas::fsck::InventoryReply, _> =
                bus_client::request(client, subject.clone(), &inventory, wait).await;
            reply.ok().map(|_| ())
        })
        .await;
    }
    wait_until(
        "cluster requests are answered",
        Duration::from_secs(60),
        || async { status(client).await.map(|_| ()) },
    )
    .await;
}

/// The cluster's status as some node reports it, if one answers within 2 s.
pub async fn status(client: &async_nats::Client) -> Option<bus_schemas::cluster::ClusterStatus> {
    let req = ClusterRequest::Status;
    let wait = Duration::from_secs(2);
    match bus_client::request(client, subjects::cluster_rpc(req.op()), &req, wait).await {
        Ok(ClusterReply::Status { status }) => Some(status),
        _ => None,
    }
}

/// The buckets and streams whose leader is server `server`, as some node reports them.
pub async fn led_by(client: &async_nats::Client, server: &str) -> Vec<String> {
    let s = wait_until("the cluster's status", Duration::from_secs(30), || {
        status(client)
    })
    .await;
    let led = s
        .assets
        .into_iter()
        .filter(|a| a.leader.as_deref() == Some(server));
    led.map(|a| a.name).collect()
}

/// Waits until every bucket and stream has `copies` copies, all current.
pub async fn wait_copies(client: &async_nats::Client, copies: u8) {
    let what = format!("every bucket and stream has {copies} current copies");
    wait_until(&what, Duration::from_secs(120), || async {
        let s = status(client).await?;
        let healthy =
            (s.assets.iter()).all(|a| a.healthy(copies) && a.copies.len() == copies as usize);
        (s.replicas == copies && healthy).then_some(())
    })
    .await
}
