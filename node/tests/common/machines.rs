//! Three machines (network namespaces, `testkit::Machines`) with two nodes each, ready for work.

use bus_schemas::cluster::{ClusterReply, ClusterRequest};
use std::time::Duration;
use testkit::{wait_until, Machines};

/// The node binary.
pub const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// The zones of machines a, b and c.
pub const ZONES: [&str; 3] = ["left", "left", "right"];

/// 3 machines, nodes `a1 a2 b1 b2 c1 c2`, a and b in zone `left`, c in zone `right`, every
/// node seeing every node alive, and a client of machine a's server.
pub async fn three_machines() -> (Machines, async_nats::Client) {
    let mut m = Machines::start(std::path::Path::new(NODE), 3).with_zones(&ZONES);
    m.spawn_nodes(2);
    let client = m.client_of(0).await;
    m.wait_all_alive(&client, Duration::from_secs(60)).await;
    // SDFS and the jobs' services start once the JetStream cluster has their buckets (slow on
    // a loaded box): wait until each node serves SDFS and some node answers cluster requests.
    let inventory = bus_schemas::fsck::InventoryRequest { after: None };
    let wait = Duration::from_secs(2);
    for id in &m.ids() {
        let subject = bus_schemas::subjects::sdfs_inventory(id);
        wait_until(
            &format!("{id} serves SDFS"),
            Duration::from_secs(60),
            || async {
                let reply: Result<bus_schemas::fsck::InventoryReply, _> =
                    bus_client::request(&client, subject.clone(), &inventory, wait).await;
                reply.ok().map(|_| ())
            },
        )
        .await;
    }
    let subject = bus_schemas::subjects::cluster_rpc("status");
    wait_until(
        "cluster requests are answered",
        Duration::from_secs(60),
        || async {
            let reply: Result<ClusterReply, _> =
                bus_client::request(&client, subject.clone(), &ClusterRequest::Status, wait).await;
            reply.ok().map(|_| ())
        },
    )
    .await;
    (m, client)
}
