//! `idunno results <job> [--follow]`: an inference job's outputs (query, sample, class, score,
//! label). An ended job's come from its results file in SDFS; a running job's newest come from
//! the cluster, and with `--follow` every batch's as it is stored, until the job ends.

use crate::output::{clean, Output};
use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_schemas::jobs::JobRecord;
use bus_schemas::serve::{QueryResult, ResultsBatch};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::time::Duration;

/// The columns of an output line.
pub fn row(r: &QueryResult) -> Vec<String> {
    vec![
        r.query_id.to_string(),
        r.sample.to_string(),
        format!("{} {}", r.predicted, clean(&r.class_name)),
        format!("{:.3}", r.score),
        r.label.map_or("-".into(), |l| l.to_string()),
    ]
}

/// The header of the output lines.
pub fn header() -> Vec<String> {
    ["query", "sample", "class", "score", "label"]
        .map(String::from)
        .to_vec()
}

/// A line of fixed-width columns (lines are printed as they come, so no table can align them).
fn line(cols: &[String]) -> String {
    let col = |i: usize| cols.get(i).map_or("", String::as_str);
    format!(
        "{:>8}  {:>7}  {:<24}  {:>6}  {}",
        col(0),
        col(1),
        col(2),
        col(3),
        col(4)
    )
}

/// Prints one output: a JSON line under `--json`, else a line of columns.
fn print(r: &QueryResult, out: &Output) {
    if out.json {
        if let Ok(json) = serde_json::to_string(r) {
            println!("{json}");
        }
    } else {
        println!("{}", line(&row(r)));
    }
}

/// The running accuracy of an inference job's answered queries, when its split is labelled.
pub fn accuracy(job: &JobRecord) -> Option<f64> {
    let s = job.serve.as_ref()?;
    let correct = s.correct?;
    (s.done > 0).then(|| correct as f64 / s.done as f64)
}

/// Runs `idunno results`.
pub async fn run(
    client: &async_nats::Client,
    id: &str,
    follow: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(5));
    // Subscribed before the newest are read, so that nothing falls between the two.
    let mut live = match follow {
        true => Some(client.subscribe(subjects::job_results(id)).await?),
        false => None,
    };
    let (job, newest) = jobs
        .outputs(id, Some(bus_schemas::jobs::MAX_OUTPUTS))
        .await?;
    if job.serve.is_none() {
        anyhow::bail!("job {id} is not an inference job: it has no outputs");
    }
    if !out.json {
        println!("{}", line(&header()));
    }
    if let (Some(file), true) = (
        job.outcome.as_ref().and_then(|o| o.results_file.clone()),
        !follow,
    ) {
        return whole_file(client, &file, out).await;
    }
    let mut seen = BTreeSet::new();
    for r in &newest {
        seen.insert(r.query_id);
        print(r, out);
    }
    let Some(sub) = live.as_mut() else {
        crate::output::warn("(the newest outputs; --follow prints every batch as it is stored)");
        return Ok(());
    };
    follow_batches(&jobs, id, sub, &mut seen, out).await
}

/// Prints each batch stored from now on until the job ends.
async fn follow_batches(
    jobs: &JobsClient,
    id: &str,
    sub: &mut async_nats::Subscriber,
    seen: &mut BTreeSet<u64>,
    out: &Output,
) -> anyhow::Result<()> {
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let Ok(batch) = decode::<ResultsBatch>(&msg.payload) else { continue };
                for r in batch.results.iter().filter(|r| seen.insert(r.query_id)) {
                    print(r, out);
                }
            }
            _ = poll.tick() => {
                let job = jobs.get(id).await?;
                if job.state.is_final() {
                    crate::output::warn(&format!("job {id} ended ({:?})", job.state));
                    return Ok(());
                }
            }
        }
    }
}

/// Prints every output of an ended job's results file (`results/<id>.jsonl`).
async fn whole_file(client: &async_nats::Client, file: &str, out: &Output) -> anyhow::Result<()> {
    let sdfs = SdfsClient::new(client.clone(), Duration::from_secs(10));
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("results.jsonl");
    sdfs.get(file, None, &local, None).await?;
    let text = std::fs::read_to_string(&local)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<QueryResult>(line) {
            Ok(r) => print(&r, out),
            Err(e) => crate::output::warn(&format!("{file}: a line skipped: {e}")),
        }
    }
    Ok(())
}
