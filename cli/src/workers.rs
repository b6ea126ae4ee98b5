//! `workers`: every member as a worker, from the membership view and the job records.

use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_schemas::jobs::JobsFilter;
use bus_schemas::membership::{ViewRequest, ViewSnapshot};
use bus_schemas::subjects;
use std::time::Duration;

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
    let list = jobs.list_all(JobsFilter::Live, None).await?;
    let models =
        bus_client::workers::cached_models(client, &view.members, Duration::from_secs(2)).await;
    let workers = bus_client::workers::workers(&view, &list, &models);
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
                format!("{} (coordinator)", w.member.id)
            } else {
                w.member.id.clone()
            };
            rows.push(vec![
                id,
                w.member.state.as_str().to_string(),
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
