//! `workers`: every member as a worker, from the membership view and the job records.

use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_schemas::control::NodeResources;
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
    let stats =
        bus_client::workers::node_stats(client, &view.members, Duration::from_secs(2)).await;
    let workers = bus_client::workers::workers(&view, &list, &stats);
    out.print(&workers, || table(&workers));
    Ok(())
}

/// The table `idunno workers` prints: a header, then one row per member.
fn table(workers: &[bus_client::workers::Worker]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "worker",
        "state",
        "training",
        "serving",
        "models",
        "queries done",
        "cpu",
        "memory",
        "disk free",
        "threads",
        "device",
    ]
    .map(String::from)
    .to_vec()];
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    for w in workers {
        let id = if w.coordinator {
            format!("{} (coordinator)", w.member.id)
        } else {
            w.member.id.clone()
        };
        let mut row = vec![
            id,
            w.member.state.as_str().to_string(),
            w.training.clone().unwrap_or_else(|| "-".into()),
            list(&w.serving),
            list(&w.models),
            w.queries.to_string(),
        ];
        row.extend(resource_cells(w.resources.as_ref()));
        rows.push(row);
    }
    rows
}

/// A worker's CPU (cores in use / CPUs), memory, free disk, tch threads and device; `-` for a
/// node that did not answer.
fn resource_cells(r: Option<&NodeResources>) -> Vec<String> {
    let Some(r) = r else {
        return vec!["-".into(); 5];
    };
    let disk = if r.disk_total_bytes == 0 {
        "-".into()
    } else {
        format!("{} of {}", gib(r.disk_free_bytes), gib(r.disk_total_bytes))
    };
    vec![
        format!("{:.2}/{}", r.cpu_cores, r.cpus),
        format!("{:.0} MiB", r.rss_bytes as f64 / f64::from(1 << 20)),
        disk,
        r.tch_threads.to_string(),
        r.device.clone(),
    ]
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_read_like_ray_status() {
        let r = NodeResources {
            cpu_cores: 0.456,
            cpus: 2,
            rss_bytes: 300 << 20,
            disk_free_bytes: 40 << 30,
            disk_total_bytes: 100 << 30,
            tch_threads: 1,
            device: "cpu".into(),
        };
        assert_eq!(
            resource_cells(Some(&r)),
            ["0.46/2", "300 MiB", "40.0 GiB of 100.0 GiB", "1", "cpu"]
        );
        assert_eq!(resource_cells(None), ["-"; 5]);
    }
}
