//! What nodes say about the cluster, asked over the bus: shared by [`crate::Cluster`] and
//! [`crate::Machines`].

use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::membership::{MemberRecord, MemberState};
use bus_schemas::subjects;
use std::time::Duration;

/// Asks node `id` a control request (bounded by 2 s); `None` if it does not answer.
pub async fn control(
    client: &async_nats::Client,
    id: &str,
    req: ControlRequest,
) -> Option<ControlReply> {
    let subject = subjects::node_control(id, req.op());
    bus_client::request(client, subject, &req, Duration::from_secs(2))
        .await
        .ok()
}

/// Node `observer`'s view, if it answers.
pub async fn view(client: &async_nats::Client, observer: &str) -> Option<Vec<MemberRecord>> {
    match control(client, observer, ControlRequest::Members).await? {
        ControlReply::Members { members, .. } => Some(members),
        _ => None,
    }
}

/// Whether every observer answers and sees each of `targets` in `state`.
pub async fn all_see_all(
    client: &async_nats::Client,
    observers: &[String],
    targets: &[String],
    state: MemberState,
) -> bool {
    for o in observers {
        let Some(view) = view(client, o).await else {
            return false;
        };
        let seen = |t: &String| view.iter().any(|m| &m.id == t && m.state == state);
        if !targets.iter().all(seen) {
            return false;
        }
    }
    true
}

/// Waits until every observer answers and sees each of `targets` in `state`; panics after
/// `limit`.
pub async fn wait_all_see(
    client: &async_nats::Client,
    observers: &[String],
    targets: &[String],
    state: MemberState,
    limit: Duration,
) {
    let what = format!("{observers:?} see {targets:?} {state:?}");
    crate::wait_until(&what, limit, || async {
        all_see_all(client, observers, targets, state)
            .await
            .then_some(())
    })
    .await
}

/// Which of `targets` any observer holds `Failed` or `Left`, as `"observer: target state"`
/// lines; every observer is asked until it answers (up to `limit` each, so a request lost while
/// the cluster reroutes is not taken for a verdict). `Suspect` is not a verdict: a node under
/// load may be suspected and refute. Panics if an observer never answers.
pub async fn declared_failed(
    client: &async_nats::Client,
    observers: &[String],
    targets: &[String],
    limit: Duration,
) -> Vec<String> {
    let mut found = Vec::new();
    for o in observers {
        let members = crate::wait_until(&format!("{o} answers"), limit, || view(client, o)).await;
        for m in members.iter().filter(|m| targets.contains(&m.id)) {
            if matches!(m.state, MemberState::Failed | MemberState::Left) {
                found.push(format!("{o}: {} {:?}", m.id, m.state));
            }
        }
    }
    found
}
