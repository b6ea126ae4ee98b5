//! `idunno cluster status`, `idunno cluster replicas <n|auto>` and `idunno cluster
//! remove-server <name>`: the copies the NATS cluster keeps of IDunno's buckets and streams,
//! and whether each copy is current.

use crate::args::ClusterCommand;
use crate::output::Output;
use bus_client::{request, BusOptions, RequestError};
use bus_schemas::cluster::{ClusterReply, ClusterRequest, ClusterStatus, MAX_REPLICAS};
use bus_schemas::subjects;
use std::time::Duration;

/// Changing the copies waits for JetStream to apply it on every bucket and stream.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one `cluster` command; fails if a bucket or stream lacks copies or has one behind.
pub async fn run(cmd: ClusterCommand, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    let req = match cmd {
        ClusterCommand::Status => ClusterRequest::Status,
        ClusterCommand::Replicas { replicas } => ClusterRequest::Replicas {
            replicas: parse_replicas(&replicas)?,
        },
        ClusterCommand::RemoveServer { server } => ClusterRequest::RemoveServer { server },
    };
    let moving = matches!(req, ClusterRequest::RemoveServer { .. });
    let client = bus.connect_once("idunno-cli").await?;
    let reply = request(&client, subjects::cluster_rpc(req.op()), &req, TIMEOUT)
        .await
        .map_err(|e| match e {
            RequestError::NoResponders { .. } => {
                anyhow::anyhow!("no node answers cluster requests (is the cluster up?)")
            }
            other => anyhow::anyhow!("cluster request: {other}"),
        })?;
    let status = match reply {
        ClusterReply::Status { status } => status,
        ClusterReply::Error { message } => anyhow::bail!("{message}"),
    };
    out.print(&status, || table(&status));
    if moving {
        // The new copies are being caught up: `cluster status` says when they are current.
        crate::output::warn("the new copies catch up in the background: `idunno cluster status` exits 0 once every copy is current");
        return Ok(());
    }
    let behind: Vec<&str> = (status.assets.iter())
        .filter(|a| !a.healthy(status.replicas))
        .map(|a| a.name.as_str())
        .collect();
    anyhow::ensure!(
        behind.is_empty(),
        "{} of {} buckets and streams lack copies or have a copy behind: {}",
        behind.len(),
        status.assets.len(),
        behind.join(", ")
    );
    Ok(())
}

/// `auto`, or a number of copies from 1 to 5.
pub fn parse_replicas(text: &str) -> anyhow::Result<Option<u8>> {
    if text == "auto" {
        return Ok(None);
    }
    match text.parse::<u8>() {
        Ok(n) if (1..=MAX_REPLICAS).contains(&n) => Ok(Some(n)),
        _ => anyhow::bail!("replicas must be 1 to {MAX_REPLICAS}, or auto; not {text:?}"),
    }
}

fn table(s: &ClusterStatus) -> Vec<Vec<String>> {
    let setting = match s.replicas_set {
        Some(n) => format!("{n} (set)"),
        None => format!("{} (auto: min(3, servers))", s.replicas),
    };
    let cluster = s.cluster.as_deref().unwrap_or("(a server on its own)");
    crate::output::say(&format!(
        "NATS cluster {cluster}: {} server(s) {}; {} answered through {}; replication {setting}",
        s.servers.len(),
        s.servers.join(" "),
        s.node,
        s.server
    ));
    let mut rows = vec![["name", "kind", "copies", "leader", "copies (current?)"]
        .map(String::from)
        .to_vec()];
    for a in &s.assets {
        let copies = match &a.error {
            Some(e) => format!("error: {e}"),
            None => (a.copies.iter())
                .map(|c| {
                    let state = if c.offline {
                        "offline".to_string()
                    } else if c.current {
                        "current".to_string()
                    } else {
                        format!("behind {}", c.lag)
                    };
                    format!("{} {state}", c.server)
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        rows.push(vec![
            a.name.clone(),
            a.kind.clone(),
            format!("{}/{}", a.replicas, s.replicas),
            a.leader.clone().unwrap_or_else(|| "-".into()),
            copies,
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_auto_or_one_to_five() {
        assert_eq!(parse_replicas("auto").unwrap(), None);
        assert_eq!(parse_replicas("3").unwrap(), Some(3));
        for bad in ["0", "6", "-1", "three", ""] {
            assert!(parse_replicas(bad).is_err(), "{bad}");
        }
    }
}
