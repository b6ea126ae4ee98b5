//! `workers`: every member as a worker, from the membership view and the job records.

use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::jobs::JobState;
use bus_schemas::membership::{MemberState, ViewRequest, ViewSnapshot};
use bus_schemas::subjects;
use std::collections::BTreeMap;
use std::time::Duration;

/// One worker's line.
#[derive(serde::Serialize)]
struct Worker {
    id: String,
    state: String,
    coordinator: bool,
    training: Option<String>,
    serving: Vec<String>,
    /// Models its inference engine holds (`name vN`).
    models: Vec<String>,
    queries: u64,
}

/// Prints every member with its jobs.
pub async fn show(
    client: &async_nats::Client,
    jobs: &JobsClient,
    out: &Output,
) -> anyhow::Result<()> {
    let req = ViewRequest { from: "cli".into() };
    let view: ViewSnapshot = bus_client::request(
        client,
        subjects::members_list(),
        &req,
        Duration::from_secs(2),
    )
    .await?;
    let list = jobs.list().await?;
    let asks = view
        .members
        .iter()
        .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .map(|m| async move {
            let reply = crate::cluster::control(client, &m.id, ControlRequest::Stat).await;
            match reply {
                Ok(ControlReply::Stats { stats }) => Some((m.id.clone(), stats.cached_models)),
                _ => None,
            }
        });
    let models: BTreeMap<String, Vec<String>> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let workers: Vec<Worker> = view
        .members
        .iter()
        .map(|m| Worker {
            id: m.id.clone(),
            state: m.state.as_str().to_string(),
            coordinator: view.coordinator.as_deref() == Some(m.id.as_str()),
            training: list
                .iter()
                .find(|j| j.current().is_some_and(|a| a.worker == m.id))
                .map(|j| j.id.clone()),
            serving: list
                .iter()
                .filter(|j| j.state == JobState::Running)
                .filter(|j| j.serve.as_ref().is_some_and(|s| s.workers.contains(&m.id)))
                .map(|j| j.id.clone())
                .collect(),
            models: models.get(&m.id).cloned().unwrap_or_default(),
            queries: list
                .iter()
                .filter_map(|j| j.serve.as_ref()?.by_worker.get(&m.id))
                .sum(),
        })
        .collect();
    out.print(&workers, || {
        let mut rows = vec![[
            "worker",
            "state",
            "training",
            "serving",
            "models",
            "queries done",
        ]
        .map(String::from)
        .to_vec()];
        for w in &workers {
            let id = if w.coordinator {
                format!("{} (coordinator)", w.id)
            } else {
                w.id.clone()
            };
            rows.push(vec![
                id,
                w.state.clone(),
                w.training.clone().unwrap_or_else(|| "-".into()),
                if w.serving.is_empty() {
                    "-".into()
                } else {
                    w.serving.join(", ")
                },
                if w.models.is_empty() {
                    "-".into()
                } else {
                    w.models.join(", ")
                },
                w.queries.to_string(),
            ]);
        }
        rows
    });
    Ok(())
}
