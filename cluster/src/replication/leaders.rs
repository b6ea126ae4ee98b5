//! Where the JetStream leaders are: the coordinator asks the NATS server it is connected to
//! (on its own machine, as the README's layout has it) to lead every IDunno bucket and stream.
//!
//! Why: a JetStream asset whose leader's server dies accepts no write until its other copies
//! elect a new leader, and nats-server's Raft waits 4 to 9 s (fixed in the server, not
//! configurable) before it even starts that election. Every serving step writes to the results
//! and acceptance streams and the job record, so a job would stall that long whenever the lost
//! machine happened to lead one of them. With the leaders beside the coordinator, losing any
//! other machine loses only followers (a quorum of 2 of 3 copies stays) and the work moves on
//! at membership's speed; losing the coordinator's own machine costs one election, which the
//! coordinator's move waits for anyway.
//!
//! The lease holder checks every [`PERIOD`] and right after it takes the lease; a leader moves
//! with `$JS.API.STREAM.LEADER.STEPDOWN.<stream>` naming the preferred server, only to a copy
//! that is current (JetStream refuses the others).

use super::ASSETS;
use crate::lease::Coordinator;
use async_nats::jetstream::stream::ClusterInfo;
use async_nats::jetstream::Context;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the coordinator checks where the leaders are.
pub const PERIOD: Duration = Duration::from_secs(2);
/// How long one stream-info or step-down request may take.
const CALL: Duration = Duration::from_secs(2);

/// Whether the asset described by `cluster` should be led by `here` and can be: another
/// server leads it, and `here` holds a current, online copy.
pub fn should_move(cluster: &ClusterInfo, here: &str) -> bool {
    if cluster.leader.as_deref() == Some(here) {
        return false;
    }
    (cluster.replicas.iter()).any(|p| p.name == here && p.current && !p.offline)
}

/// Moves to `here` the leader of every IDunno asset that another server leads; returns the
/// assets moved.
async fn gather(client: &async_nats::Client, js: &Context, here: &str) -> Vec<String> {
    let body = serde_json::json!({ "placement": { "preferred": here } }).to_string();
    let mut moved = Vec::new();
    for (name, kind) in ASSETS {
        let stream = kind.stream(name);
        let info = tokio::time::timeout(CALL, js.get_stream(&stream)).await;
        let Ok(Ok(info)) = info else {
            continue; // not made yet, or JetStream is electing: the next round sees it
        };
        let Some(cluster) = &info.cached_info().cluster else {
            continue;
        };
        if !should_move(cluster, here) {
            continue;
        }
        let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}");
        let asked = tokio::time::timeout(CALL, client.request(subject, body.clone().into()));
        let answer: serde_json::Value = match asked.await {
            Ok(Ok(msg)) => serde_json::from_slice(&msg.payload).unwrap_or_default(),
            Ok(Err(e)) => {
                tracing::debug!(%stream, "cannot move the leader: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if answer["success"].as_bool() == Some(true) {
            moved.push(stream);
        } else {
            let why = answer["error"]["description"].as_str().unwrap_or_default();
            tracing::debug!(%stream, %here, "JetStream kept the leader: {why}");
        }
    }
    moved
}

/// While this node holds the coordinator lease, keeps the leaders on its server, until
/// `shutdown`.
pub async fn run(
    client: async_nats::Client,
    js: Context,
    mut coordinator: watch::Receiver<Coordinator>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = coordinator.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(PERIOD) => {}
        }
        if !coordinator.borrow_and_update().me {
            continue;
        }
        let here = client.server_info().server_name;
        if here.is_empty() {
            continue;
        }
        let moved = gather(&client, &js, &here).await;
        if !moved.is_empty() {
            tracing::info!(server = %here, ?moved, "JetStream leaders moved to the coordinator's server");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::stream::PeerInfo;

    fn peer(name: &str, current: bool, offline: bool) -> PeerInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "current": current, "offline": offline, "active": 1000
        }))
        .unwrap()
    }

    fn cluster(leader: &str, peers: Vec<PeerInfo>) -> ClusterInfo {
        let mut c: ClusterInfo = serde_json::from_value(serde_json::json!({})).unwrap();
        c.leader = Some(leader.into());
        c.replicas = peers;
        c
    }

    #[test]
    fn a_current_copy_elsewhere_led_moves() {
        let c = cluster(
            "m-b",
            vec![peer("m-a", true, false), peer("m-c", true, false)],
        );
        assert!(should_move(&c, "m-a"));
    }

    #[test]
    fn the_leader_itself_stays() {
        let c = cluster(
            "m-a",
            vec![peer("m-b", true, false), peer("m-c", true, false)],
        );
        assert!(!should_move(&c, "m-a"));
    }

    #[test]
    fn a_lagging_offline_or_absent_copy_does_not_take_the_lead() {
        let lagging = cluster("m-b", vec![peer("m-a", false, false)]);
        assert!(!should_move(&lagging, "m-a"));
        let offline = cluster("m-b", vec![peer("m-a", true, true)]);
        assert!(!should_move(&offline, "m-a"));
        let absent = cluster("m-b", vec![peer("m-c", true, false)]);
        assert!(!should_move(&absent, "m-a"));
    }

    #[test]
    fn no_leader_yet_moves_only_to_a_current_copy() {
        let mut c = cluster("x", vec![peer("m-a", true, false)]);
        c.leader = None;
        assert!(should_move(&c, "m-a"));
    }
}
