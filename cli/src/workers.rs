//! `workers`: every member as a worker, from the membership view and the job records.

use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_schemas::jobs::JobState;
use bus_schemas::membership::{ViewRequest, ViewSnapshot};
use bus_schemas::subjects;
use std::time::Duration;

/// One worker's line.
#[derive(serde::Serialize)]
struct Worker {
    id: String,
    state: String,
    coordinator: bool,
    training: Option<String>,
    serving: Vec<String>,
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
            queries: list
                .iter()
                .filter_map(|j| j.serve.as_ref()?.by_worker.get(&m.id))
                .sum(),
        })
        .collect();
    out.print(&workers, || {
        let mut rows = vec![["worker", "state", "training", "serving", "queries done"]
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
                w.queries.to_string(),
            ]);
        }
        rows
    });
    Ok(())
}
