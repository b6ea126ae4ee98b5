//! `idunno fsck [--rebuild]`: the health of SDFS, and the metadata rebuilt from the nodes.

use crate::output::Output;
use bus_client::fsck::{self, FsckReport};
use bus_client::sdfs::SdfsClient;
use bus_client::BusOptions;
use std::time::{Duration, Instant};

/// How long `--rebuild` waits for every node to trust the rebuilt metadata.
const SETTLE: Duration = Duration::from_secs(30);

/// Checks SDFS (and rebuilds its metadata with `rebuild`); fails if anything is wrong after.
pub async fn run(
    rebuild: bool,
    replication: usize,
    bus: &BusOptions,
    out: &Output,
) -> anyhow::Result<()> {
    let client = bus.connect_once("idunno-cli").await?;
    let timeout = Duration::from_secs(5);
    let sdfs = SdfsClient::new(client.clone(), timeout);
    let mut report = fsck::check(&client, &sdfs, replication, timeout).await?;
    let mut restored = None;
    if rebuild {
        let outcome = fsck::rebuild(&sdfs, &report).await?;
        if !out.json {
            crate::output::note(&format!(
                "restored {} version(s) of {} file(s); {} unlabelled blob(s) left in quarantine",
                outcome.versions, outcome.files, outcome.unlabelled
            ));
        }
        restored = Some(outcome);
        // The nodes' keepers see the restored entries, re-record their labels and trust the
        // metadata again once it names every blob they hold.
        let started = Instant::now();
        loop {
            report = fsck::check(&client, &sdfs, replication, timeout).await?;
            let settled = report.orphans.is_empty() && report.nodes.iter().all(|n| n.trusted);
            if settled || started.elapsed() > SETTLE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let json = serde_json::json!({"report": &report, "restored": restored});
    out.print(&json, || table(&report));
    anyhow::ensure!(report.healthy(), "{}", summary(&report));
    Ok(())
}

fn summary(r: &FsckReport) -> String {
    format!(
        "SDFS is not healthy: {} orphan blob(s), {} under-replicated and {} unreadable version(s), {} node(s) in quarantine, {} node(s) unreachable",
        r.orphans.len(),
        r.under_replicated.len(),
        r.unreadable.len(),
        r.nodes.iter().filter(|n| !n.trusted).count(),
        r.unreachable.len()
    )
}

fn table(r: &FsckReport) -> Vec<Vec<String>> {
    let mut rows = vec![vec![format!(
        "{} file(s), {} version(s) on {} node(s)",
        r.files,
        r.versions,
        r.nodes.len()
    )]];
    for n in &r.nodes {
        let state = if n.trusted {
            "trusts the metadata"
        } else {
            "QUARANTINE"
        };
        rows.push(vec![
            format!("node {}", n.node),
            format!("{} blob(s)", n.blobs),
            format!("{} quarantined", n.quarantined),
            state.into(),
        ]);
    }
    for node in &r.unreachable {
        rows.push(vec![format!("node {node}"), "did not answer".into()]);
    }
    for o in &r.orphans {
        let what = o.label.as_ref().map_or("no label".to_string(), |l| {
            format!(
                "{} v{}",
                l.name,
                l.version.map_or("?".into(), |v| v.to_string())
            )
        });
        rows.push(vec![
            "orphan".into(),
            o.blob.clone(),
            what,
            format!("on {}", o.holders.join(",")),
        ]);
    }
    for (kind, list) in [
        ("under-replicated", &r.under_replicated),
        ("unreadable", &r.unreadable),
    ] {
        for v in list {
            rows.push(vec![
                kind.into(),
                format!("{} v{}", v.name, v.version),
                format!("{}/{} replicas", v.holders.len(), v.target),
            ]);
        }
    }
    if r.healthy() {
        rows.push(vec!["healthy".into()]);
    }
    rows
}
