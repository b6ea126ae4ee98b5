//! Commands that talk to the cluster's nodes: members, leave, join, stat, droprate, clear-log.

use crate::args::{parse_drop_rate, Command};
use crate::output::{millis, say, warn, Output};
use async_nats::Client;
use bus_client::{request, BusOptions, RequestError};
use bus_schemas::control::{ControlReply, ControlRequest, NodeStats};
use bus_schemas::membership::{MemberState, ViewRequest, ViewSnapshot};
use bus_schemas::subjects;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one cluster command.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    if let Command::Droprate { rate, .. } = &cmd {
        parse_drop_rate(rate)?;
    }
    let client = bus.connect_once("idunno-cli").await?;
    match cmd {
        Command::Members { node } => members(&client, node, out).await,
        Command::SelfEntry { node } => self_entry(&client, node, out).await,
        Command::Leave { node } => one(&client, &node, ControlRequest::Leave, out).await,
        Command::Join { node } => one(&client, &node, ControlRequest::Join, out).await,
        Command::Stat { node } => stat(&client, node, out).await,
        Command::Droprate { rate, node } => {
            let rate = parse_drop_rate(&rate)?;
            each(&client, node, ControlRequest::DropRate { rate }, out).await
        }
        Command::ClearLog { node } => each(&client, node, ControlRequest::ClearLog, out).await,
        other => anyhow::bail!("{other:?} is not a cluster command"),
    }
}

fn explain(e: RequestError, what: &str) -> anyhow::Error {
    match e {
        RequestError::NoResponders { .. } => {
            anyhow::anyhow!("{what}: no node answers (is the cluster up?)")
        }
        other => anyhow::anyhow!("{what}: {other}"),
    }
}

/// One control request to one node, with errors phrased for the user.
pub async fn control(
    client: &Client,
    node: &str,
    req: ControlRequest,
) -> anyhow::Result<ControlReply> {
    bus_schemas::validate_token(node).map_err(|e| anyhow::anyhow!("node {node:?}: {e}"))?;
    request(
        client,
        subjects::node_control(node, req.op()),
        &req,
        TIMEOUT,
    )
    .await
    .map_err(|e| match e {
        RequestError::NoResponders { .. } => anyhow::anyhow!("no node {node:?} is running"),
        other => explain(other, &format!("node {node}")),
    })
}

async fn view(client: &Client, node: Option<String>) -> anyhow::Result<ViewSnapshot> {
    match node {
        Some(node) => match control(client, &node, ControlRequest::Members).await? {
            ControlReply::Members {
                node,
                coordinator,
                members,
            } => Ok(ViewSnapshot {
                node,
                coordinator,
                members,
                version: 0,
            }),
            other => anyhow::bail!("node {node} answered unexpectedly: {other:?}"),
        },
        None => any_view(client).await,
    }
}

/// Any one node's view. The queue group may hand the request to a frozen node, so a timeout
/// is retried (another node is likely to get it) within the 2 s budget.
pub async fn any_view(client: &Client) -> anyhow::Result<ViewSnapshot> {
    let req = ViewRequest { from: "cli".into() };
    let attempt = TIMEOUT / 3;
    let mut result = request(client, subjects::members_list(), &req, attempt).await;
    for _ in 1..3 {
        if !matches!(result, Err(RequestError::Timeout { .. })) {
            break;
        }
        result = request(client, subjects::members_list(), &req, attempt).await;
    }
    result.map_err(|e| explain(e, "members"))
}

async fn members(client: &Client, node: Option<String>, out: &Output) -> anyhow::Result<()> {
    let view = view(client, node).await?;
    out.print(&view, || {
        let mut rows = vec![[
            "id",
            "state",
            "host",
            "generation",
            "incarnation",
            "last heard",
            "dashboard",
        ]
        .map(String::from)
        .to_vec()];
        for m in &view.members {
            let coordinator = view.coordinator.as_deref() == Some(m.id.as_str());
            rows.push(vec![
                if coordinator {
                    format!("{} (coordinator)", m.id)
                } else {
                    m.id.clone()
                },
                m.state.as_str().to_string(),
                match &m.zone {
                    Some(zone) => format!("{} (zone {zone})", m.host),
                    None => m.host.clone(),
                },
                m.generation.to_string(),
                m.incarnation.to_string(),
                match (m.id == view.node, m.last_heard_ms) {
                    (true, _) => "(self)".into(),
                    (false, Some(ms)) => format!("{} ago", millis(ms)),
                    (false, None) => "-".into(),
                },
                m.http.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        rows
    });
    if !out.json {
        let coordinator = view.coordinator.as_deref().unwrap_or("none yet");
        say(&format!(
            "(view of {}; coordinator: {coordinator})",
            view.node
        ));
    }
    Ok(())
}

/// The answering node's own member record.
async fn self_entry(client: &Client, node: Option<String>, out: &Output) -> anyhow::Result<()> {
    let view = view(client, node).await?;
    let Some(me) = view.members.iter().find(|m| m.id == view.node) else {
        anyhow::bail!("node {} has no entry of its own in its view", view.node);
    };
    out.print(me, || {
        vec![
            vec!["id".into(), me.id.clone()],
            vec!["state".into(), me.state.as_str().to_string()],
            vec!["host".into(), me.host.clone()],
            vec!["generation".into(), me.generation.to_string()],
            vec!["incarnation".into(), me.incarnation.to_string()],
            vec![
                "dashboard".into(),
                me.http.clone().unwrap_or_else(|| "-".into()),
            ],
        ]
    });
    Ok(())
}

/// The nodes a command goes to: `--node X`, else every alive or suspect member.
async fn targets(client: &Client, node: Option<String>) -> anyhow::Result<Vec<String>> {
    if let Some(node) = node {
        return Ok(vec![node]);
    }
    let view = view(client, None).await?;
    Ok(view
        .members
        .into_iter()
        .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .map(|m| m.id)
        .collect())
}

async fn ask_all(
    client: &Client,
    nodes: &[String],
    req: &ControlRequest,
) -> Vec<(String, anyhow::Result<ControlReply>)> {
    let asks = nodes
        .iter()
        .map(|n| async move { (n.clone(), control(client, n, req.clone()).await) });
    futures::future::join_all(asks).await
}

async fn one(client: &Client, node: &str, req: ControlRequest, out: &Output) -> anyhow::Result<()> {
    let reply = control(client, node, req).await?;
    report(vec![(node.to_string(), Ok(reply))], out)
}

async fn each(
    client: &Client,
    node: Option<String>,
    req: ControlRequest,
    out: &Output,
) -> anyhow::Result<()> {
    let nodes = targets(client, node).await?;
    report(ask_all(client, &nodes, &req).await, out)
}

fn report(
    replies: Vec<(String, anyhow::Result<ControlReply>)>,
    out: &Output,
) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut json = Vec::new();
    for (node, reply) in replies {
        match reply {
            Ok(ControlReply::Done { message, .. }) => {
                if !out.json {
                    say(&format!("{node}: {message}"));
                }
                json.push(serde_json::json!({"node": node, "ok": true, "message": message}));
            }
            Ok(ControlReply::Error { message, kind, .. }) => {
                failed += 1;
                warn(&format!("{node}: {message}"));
                json.push(serde_json::json!({"node": node, "ok": false, "kind": kind, "message": message}));
            }
            Ok(other) => anyhow::bail!("{node} answered unexpectedly: {other:?}"),
            Err(e) => {
                failed += 1;
                warn(&format!("{node}: {e:#}"));
                json.push(
                    serde_json::json!({"node": node, "ok": false, "message": format!("{e:#}")}),
                );
            }
        }
    }
    if out.json {
        println!("{}", serde_json::Value::Array(json));
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} node(s) did not carry out the command"
    );
    Ok(())
}

async fn stat(client: &Client, node: Option<String>, out: &Output) -> anyhow::Result<()> {
    let nodes = targets(client, node).await?;
    let mut stats: Vec<NodeStats> = Vec::new();
    for (node, reply) in ask_all(client, &nodes, &ControlRequest::Stat).await {
        match reply {
            Ok(ControlReply::Stats { stats: s }) => stats.push(s),
            Ok(other) => warn(&format!("{node}: unexpected answer {other:?}")),
            Err(e) => warn(&format!("{node}: {e:#}")),
        }
    }
    anyhow::ensure!(!stats.is_empty(), "no node answered");
    out.print(&stats, || {
        let header = [
            "node",
            "in B/s",
            "out B/s",
            "in msg/s",
            "out msg/s",
            "msgs in",
            "msgs out",
            "probes",
            "failures",
            "garbage",
            "refused",
            "droprate",
            "uptime",
        ];
        let mut rows = vec![header.map(String::from).to_vec()];
        for s in &stats {
            rows.push(vec![
                s.node.clone(),
                format!("{:.0}", s.bytes_in_per_s),
                format!("{:.0}", s.bytes_out_per_s),
                format!("{:.1}", s.msgs_in_per_s),
                format!("{:.1}", s.msgs_out_per_s),
                s.msgs_in.to_string(),
                s.msgs_out.to_string(),
                s.probes_sent.to_string(),
                s.failures_detected.to_string(),
                s.garbage_dropped.to_string(),
                s.membership_refused.to_string(),
                format!("{:.0}%", s.drop_rate * 100.0),
                millis(s.uptime_ms),
            ]);
        }
        rows
    });
    Ok(())
}
