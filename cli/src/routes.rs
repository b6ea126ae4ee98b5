//! `idunno model alias | rollout | promote | rollback | status`: a model's routes.

use crate::args::ModelCommand;
use crate::output::{note, render, Output};
use bus_client::jobs::JobsClient;
use bus_schemas::jobs::JobsRequest;
use bus_schemas::models::{ArmFigures, RoutesStatus};
use std::time::Duration;

/// Runs one routes command and prints the routes as they are after it.
pub async fn run(cmd: ModelCommand, jobs: &JobsClient, out: &Output) -> anyhow::Result<()> {
    let req = request(cmd)?;
    let status = jobs.routes(req).await?;
    print(&status, out);
    Ok(())
}

/// The jobs request of a routes command (checked here first).
fn request(cmd: ModelCommand) -> anyhow::Result<JobsRequest> {
    Ok(match cmd {
        ModelCommand::Alias {
            name,
            alias,
            version,
            remove,
        } => JobsRequest::Alias {
            model: name,
            alias,
            version: if remove { None } else { version },
        },
        ModelCommand::Rollout {
            name,
            version,
            canary,
            alias,
        } => JobsRequest::Rollout {
            model: name,
            alias,
            version,
            percent: percent(&canary)?,
        },
        ModelCommand::Promote { name, alias } => JobsRequest::Promote { model: name, alias },
        ModelCommand::Rollback { name, alias } => JobsRequest::Rollback { model: name, alias },
        ModelCommand::Status { name } => JobsRequest::Routes { model: name },
        ModelCommand::Import { .. } => anyhow::bail!("not a routes command"),
    })
}

/// `10%`, `10` or `0.5%` as a percentage above 0 and at most 100.
pub fn percent(text: &str) -> anyhow::Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    let p: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--canary takes a percentage such as 10%, not {text:?}"))?;
    anyhow::ensure!(
        p > 0.0 && p <= 100.0,
        "--canary is above 0% and at most 100%, not {text}"
    );
    Ok(p)
}

fn print(status: &RoutesStatus, out: &Output) {
    out.print(status, || {
        let r = &status.routes;
        let mut rows = vec![vec!["alias".to_string(), "version".into(), "before".into()]];
        for (alias, v) in &r.aliases {
            let before = r.previous.get(alias).map_or("-".into(), u64::to_string);
            rows.push(vec![format!("{}@{alias}", r.model), v.to_string(), before]);
        }
        note(&format!("model {}: versions {:?}", r.model, status.versions));
        if r.aliases.is_empty() {
            note("no aliases (a bare name takes the newest version)");
        } else {
            note(&render(&rows));
        }
        let shown = r.rollout.as_ref().or(r.last_rollout.as_ref());
        if let Some(x) = shown {
            let state = match &x.ended {
                None => "running".to_string(),
                Some(e) if e.promoted => "promoted".into(),
                Some(_) => "rolled back".into(),
            };
            note(&format!(
                "rollout on @{}: version {} at {}% beside version {} ({state}; figures from {} node(s))",
                x.alias,
                x.canary,
                x.percent,
                x.baseline,
                status.nodes.len()
            ));
        }
        arms(&status.figures)
    });
}

/// The arms side by side: one row each.
fn arms(figures: &[ArmFigures]) -> Vec<Vec<String>> {
    if figures.is_empty() {
        return Vec::new();
    }
    let total: u64 = figures.iter().map(|f| f.ok + f.errors).sum();
    let mut rows = vec![[
        "arm", "version", "requests", "share", "errors", "p50 ms", "p99 ms", "accuracy",
    ]
    .map(String::from)
    .to_vec()];
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("≤{v}"));
    for f in figures {
        let n = f.ok + f.errors;
        let share = if total > 0 {
            format!("{:.1}%", n as f64 * 100.0 / total as f64)
        } else {
            "-".into()
        };
        rows.push(vec![
            f.arm.map_or("-", |a| a.name()).to_string(),
            f.version.to_string(),
            n.to_string(),
            share,
            f.errors.to_string(),
            ms(f.latency_ms(0.5)),
            ms(f.latency_ms(0.99)),
            f.accuracy().map_or("-".into(), |a| {
                format!("{:.2}% of {}", a * 100.0, f.labelled)
            }),
        ]);
    }
    rows
}

/// How long a routes request may take (the answering node asks every node for figures).
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_shares_read_as_percentages() {
        assert_eq!(percent("10%").unwrap(), 10.0);
        assert_eq!(percent("0.5%").unwrap(), 0.5);
        assert_eq!(percent("100").unwrap(), 100.0);
        for bad in ["0%", "101%", "-3", "ten", "", "NaN"] {
            assert!(percent(bad).is_err(), "{bad:?}");
        }
    }
}
