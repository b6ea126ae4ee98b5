//! Every member with its work, from a membership view and the job records: what `idunno
//! workers` prints and the dashboard's Workers page shows.

use bus_schemas::control::{ControlReply, ControlRequest, NodeResources, NodeStats};
use bus_schemas::jobs::{JobRecord, JobState};
use bus_schemas::membership::{MemberRecord, MemberState, ViewSnapshot};
use bus_schemas::subjects;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A member with its work, as on the Workers page.
#[derive(Debug, Clone, Serialize)]
pub struct Worker {
    /// The member as this node sees it.
    #[serde(flatten)]
    pub member: MemberRecord,
    /// Whether it holds the coordinator lease.
    pub coordinator: bool,
    /// The training or import job it runs.
    pub training: Option<String>,
    /// The inference jobs it serves.
    pub serving: Vec<String>,
    /// Models its inference engine holds (`name vN`).
    pub models: Vec<String>,
    /// Queries it answered, over every inference job on record.
    pub queries: u64,
    /// Its CPU, memory, disk, libtorch threads and device; `null` when it did not answer.
    pub resources: Option<NodeResources>,
}

/// Every member of `view` with its work.
pub fn workers(
    view: &ViewSnapshot,
    jobs: &[JobRecord],
    stats: &BTreeMap<String, NodeStats>,
) -> Vec<Worker> {
    view.members
        .iter()
        .map(|m| Worker {
            member: m.clone(),
            coordinator: view.coordinator.as_deref() == Some(m.id.as_str()),
            training: jobs
                .iter()
                .find(|j| j.serve.is_none() && j.current().is_some_and(|a| a.worker == m.id))
                .map(|j| j.id.clone()),
            serving: jobs
                .iter()
                .filter(|j| j.state == JobState::Running)
                .filter(|j| j.serve.as_ref().is_some_and(|s| s.workers.contains(&m.id)))
                .map(|j| j.id.clone())
                .collect(),
            models: stats
                .get(&m.id)
                .map(|s| s.cached_models.clone())
                .unwrap_or_default(),
            queries: jobs
                .iter()
                .filter_map(|j| j.serve.as_ref()?.by_worker.get(&m.id))
                .sum(),
            // The figures of a member that failed or left are stale: none.
            resources: stats
                .get(&m.id)
                .filter(|_| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .and_then(|s| s.resources.clone()),
        })
        .collect()
}

/// Asks every live member (at once, each within `timeout`) for its figures (`stat`): the
/// models its inference engine holds and its resources; a member that does not answer is
/// left out.
pub async fn node_stats(
    client: &async_nats::Client,
    members: &[MemberRecord],
    timeout: Duration,
) -> BTreeMap<String, NodeStats> {
    let asks = members
        .iter()
        .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .map(|m| async move {
            let req = ControlRequest::Stat;
            let subject = subjects::node_control(&m.id, req.op());
            match crate::request::<_, ControlReply>(client, subject, &req, timeout).await {
                Ok(ControlReply::Stats { stats }) => Some((m.id.clone(), stats)),
                _ => None,
            }
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}
