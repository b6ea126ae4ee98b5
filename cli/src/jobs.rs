//! Job commands: train, jobs, job, cancel, watch, and following a job to its end with a
//! progress bar.

use crate::args::Command;
use crate::output::{millis, Output};
use bus_client::jobs::JobsClient;
use bus_client::BusOptions;
use bus_schemas::jobs::{
    JobEvent, JobRecord, JobSpec, JobState, Progress, QpsPolicy, ServeSpec, ServeState, TrainSpec,
};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs one job command.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    let client = bus.connect_once("idunno-cli").await?;
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(10));
    match cmd {
        Command::Train {
            model,
            dataset,
            epochs,
            batch,
            lr,
            limit,
            name,
            seed,
            detach,
        } => {
            let spec = JobSpec::Train(TrainSpec {
                name: name.unwrap_or_else(|| model.clone()),
                arch: model,
                dataset,
                epochs,
                batch,
                lr,
                limit,
                seed,
            });
            let id = jobs.submit(spec).await?;
            submitted(&client, &jobs, &id, detach, out).await
        }
        Command::Serve {
            model,
            batch_size,
            dataset,
            split,
            model_version,
            passes,
            continuous,
            weight,
            detach,
        } => {
            let spec = JobSpec::Serve(ServeSpec {
                model,
                model_version,
                dataset: dataset.unwrap_or_default(),
                split,
                batch: batch_size,
                passes: (!continuous).then_some(passes),
                weight,
            });
            let id = jobs.submit(spec).await?;
            submitted(&client, &jobs, &id, detach, out).await
        }
        Command::JobStats { id } => {
            let job = jobs.get(&id).await?;
            let Some(s) = &job.serve else {
                anyhow::bail!("job {id} is not an inference job");
            };
            out.print(&job, || stats(&job, s));
            Ok(())
        }
        Command::Batch { job, size } => {
            let job = jobs.batch(&job, size).await?;
            out.print(&job, || {
                vec![vec![format!("{}: batch size now {size}", job.id)]]
            });
            Ok(())
        }
        Command::Qps { policy } => {
            let policy = policy.map(|p| match p {
                crate::args::QpsArg::Global => QpsPolicy::Global,
                crate::args::QpsArg::Local => QpsPolicy::Local,
            });
            let now = jobs.qps(policy).await?;
            out.print(&now, || {
                let name = format!("{now:?}").to_lowercase();
                vec![vec![format!("qps {name}")]]
            });
            Ok(())
        }
        Command::Completed => {
            let list: Vec<JobRecord> = jobs
                .list()
                .await?
                .into_iter()
                .filter(|j| j.state.is_final())
                .collect();
            out.print(&list, || table(&list));
            Ok(())
        }
        Command::Assignments => {
            let list = jobs.list().await?;
            let rows: Vec<(String, String, Vec<String>)> = list
                .iter()
                .filter(|j| j.state == JobState::Running)
                .map(|j| (j.id.clone(), j.spec.kind().to_string(), assigned(j)))
                .collect();
            out.print(&rows, || {
                let mut t = vec![vec!["job".into(), "kind".into(), "workers".into()]];
                t.extend(
                    rows.iter()
                        .map(|(id, k, w)| vec![id.clone(), k.clone(), w.join(", ")]),
                );
                t
            });
            Ok(())
        }
        Command::Workers => crate::workers::show(&client, &jobs, out).await,
        Command::Jobs => {
            let list = jobs.list().await?;
            out.print(&list, || table(&list));
            Ok(())
        }
        Command::Job { id } => {
            let job = jobs.get(&id).await?;
            out.print(&job, || details(&job));
            Ok(())
        }
        Command::Cancel { job } => {
            let job = jobs.cancel(&job).await?;
            out.print(&job, || vec![vec![format!("cancelled {}", job.id)]]);
            Ok(())
        }
        Command::Watch { job } => follow(&client, &jobs, &job, out).await,
        other => anyhow::bail!("{other:?} is not a job command"),
    }
}

/// After a submission: print the id and return (`--detach`), or follow the job.
pub async fn submitted(
    client: &async_nats::Client,
    jobs: &JobsClient,
    id: &str,
    detach: bool,
    out: &Output,
) -> anyhow::Result<()> {
    if detach {
        out.print(&serde_json::json!({ "job_id": id }), || {
            vec![vec![id.to_string()]]
        });
        return Ok(());
    }
    follow(client, jobs, id, out).await
}

/// Follows job `id` until it ends: a bar on a terminal (plain lines otherwise), from progress
/// messages and the job record (polled, so a lost message or a new coordinator changes
/// nothing). Fails if the job fails or is cancelled.
pub async fn follow(
    client: &async_nats::Client,
    jobs: &JobsClient,
    id: &str,
    out: &Output,
) -> anyhow::Result<()> {
    let mut progress = client.subscribe(subjects::job_progress(id)).await?;
    let mut events = client.subscribe(subjects::job_events()).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    if out.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = std::time::Instant::now();
    let mut failing_since: Option<std::time::Instant> = None;
    let job = loop {
        tokio::select! {
            Some(msg) = progress.next() => {
                let Ok(p) = decode::<Progress>(&msg.payload) else { continue };
                show(&bar, &p);
                if bar.is_hidden() && !out.json && last_line.elapsed() >= Duration::from_secs(5) {
                    last_line = std::time::Instant::now();
                    crate::output::say(&format!("{id}: {}", bar.message()));
                }
            }
            Some(msg) = events.next() => {
                let Ok(ev) = decode::<JobEvent>(&msg.payload) else { continue };
                if ev.job_id == id && !out.json {
                    let who = ev.worker.map(|w| format!(" on {w}")).unwrap_or_default();
                    let detail = ev.detail.map(|d| format!(": {d}")).unwrap_or_default();
                    let line = format!("{id}: {}{who}{detail}", format!("{:?}", ev.event).to_lowercase());
                    tracing_line(&bar, out, &line);
                }
            }
            _ = poll.tick() => {
                // A node dying mid-request is no reason to stop following; a cluster that stays
                // unreachable is.
                let job = match jobs.get(id).await {
                    Ok(job) => {
                        failing_since = None;
                        job
                    }
                    Err(e) if failing_since.get_or_insert_with(std::time::Instant::now).elapsed() < Duration::from_secs(30) => {
                        tracing_line(&bar, out, &format!("{id}: {e}; still trying"));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                if job.state.is_final() {
                    break job;
                }
                if let Some(s) = &job.serve {
                    show_serve(&bar, s);
                } else if let Some(p) = &job.progress {
                    if bar.length() == Some(0) {
                        show(&bar, p);
                    }
                }
            }
        }
    };
    bar.finish_and_clear();
    out.print(&job, || details(&job));
    match job.state {
        JobState::Succeeded => Ok(()),
        state => anyhow::bail!(
            "job {id} {}: {}",
            format!("{state:?}").to_lowercase(),
            job.error.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// Prints a line above the bar (or plainly without a terminal); nothing with `--json`.
fn tracing_line(bar: &ProgressBar, out: &Output, line: &str) {
    if out.json {
        return;
    }
    if bar.is_hidden() {
        crate::output::say(line);
    } else {
        bar.println(crate::output::clean(line));
    }
}

/// Sets a bar's message, cleaned (it holds worker ids from the cluster).
fn set_message(bar: &ProgressBar, text: String) {
    bar.set_message(crate::output::clean(&text).into_owned());
}

fn show(bar: &ProgressBar, p: &Progress) {
    if p.epochs == 0 {
        // An inference job: queries, not epochs.
        bar.set_length(p.total.unwrap_or(0));
        bar.set_position(p.queries);
        set_message(
            bar,
            format!("queries, {:.0} q/s on {}", p.query_rate, p.worker),
        );
        return;
    }
    bar.set_length(u64::from(p.epochs) * p.steps);
    bar.set_position(u64::from(p.epoch) * p.steps + p.step);
    set_message(
        bar,
        format!(
            "epoch {}/{} loss {:.3} acc {:.1}% {:.0} img/s on {}",
            p.epoch + 1,
            p.epochs,
            p.loss,
            p.accuracy * 100.0,
            p.images_per_s,
            p.worker
        ),
    );
}

/// The workers a running job uses now.
pub fn assigned(job: &JobRecord) -> Vec<String> {
    match (&job.serve, job.current()) {
        (Some(s), _) => s.workers.clone(),
        (None, Some(a)) => vec![a.worker.clone()],
        (None, None) => Vec::new(),
    }
}

fn show_serve(bar: &ProgressBar, s: &ServeState) {
    bar.set_length(s.total.unwrap_or(0));
    bar.set_position(s.done);
    let acc = s.correct.map_or(String::new(), |c| {
        format!(" acc {:.2}%", c as f64 * 100.0 / s.done.max(1) as f64)
    });
    set_message(
        bar,
        format!("queries, {:.0} q/s{acc} on {}", s.rate, s.workers.join(",")),
    );
}

/// `job-stats`: rate, counts, accuracy and processing-time percentiles.
fn stats(job: &JobRecord, s: &ServeState) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["job".into(), job.id.clone()],
        vec!["state".into(), state(job)],
        vec!["query rate (10 s)".into(), format!("{:.1} q/s", s.rate)],
        vec![
            "queries done".into(),
            match s.total {
                Some(t) => format!("{} of {t}", s.done),
                None => format!("{} (continuous)", s.done),
            },
        ],
        vec!["batch size".into(), s.batch.to_string()],
        vec!["workers".into(), s.workers.join(", ")],
    ];
    if let Some(c) = s.correct {
        rows.push(vec![
            "accuracy".into(),
            format!("{:.2}%", c as f64 * 100.0 / s.done.max(1) as f64),
        ]);
    }
    let names = ["mean", "std", "median", "p90", "p95", "p99"];
    if s.proc_ms.len() == names.len() {
        let cells: Vec<String> = names
            .iter()
            .zip(&s.proc_ms)
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect();
        rows.push(vec!["batch time (ms)".into(), cells.join(", ")]);
    }
    rows
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn state(job: &JobRecord) -> String {
    format!("{:?}", job.state).to_lowercase()
}

fn progress_cell(job: &JobRecord) -> String {
    if let (None, Some(s)) = (&job.outcome, &job.serve) {
        return format!("{} queries, {:.0} q/s", s.done, s.rate);
    }
    match (&job.outcome, &job.progress) {
        (Some(o), _) => o
            .test_accuracy
            .map_or("done".into(), |a| format!("test acc {:.2}%", a * 100.0)),
        (None, Some(p)) => format!(
            "epoch {}/{} step {}/{} loss {:.3}",
            p.epoch + 1,
            p.epochs,
            p.step,
            p.steps,
            p.loss
        ),
        (None, None) => String::new(),
    }
}

pub fn table(jobs: &[JobRecord]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "job", "kind", "model", "dataset", "state", "worker", "progress", "age",
    ]
    .map(String::from)
    .to_vec()];
    for j in jobs {
        rows.push(vec![
            j.id.clone(),
            j.spec.kind().into(),
            j.spec.model().into(),
            j.spec.dataset().into(),
            state(j),
            j.attempts.last().map_or("-".into(), |a| a.worker.clone()),
            progress_cell(j),
            millis(now_ms().saturating_sub(j.submitted_ms)),
        ]);
    }
    rows
}

fn details(job: &JobRecord) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["job".into(), job.id.clone()],
        vec!["kind".into(), job.spec.kind().into()],
        vec!["model".into(), job.spec.model().into()],
        vec!["dataset".into(), job.spec.dataset().into()],
        vec!["state".into(), state(job)],
    ];
    if let JobSpec::Train(t) = &job.spec {
        let lr = t.lr.map_or("default".into(), |l| l.to_string());
        rows.push(vec![
            "schedule".into(),
            format!(
                "{} epochs, batch {}, lr {lr}, arch {}",
                t.epochs, t.batch, t.arch
            ),
        ]);
    }
    for a in &job.attempts {
        let resumed = match a.resumed_at_epoch {
            Some(0) => "from scratch".to_string(),
            Some(e) => format!("resumed at epoch {}", e + 1),
            None => "starting".into(),
        };
        rows.push(vec![
            format!("attempt {}", a.attempt),
            format!("{} ({resumed})", a.worker),
        ]);
    }
    if job.checkpoint_epochs > 0 {
        rows.push(vec![
            "checkpoint".into(),
            format!("after epoch {}", job.checkpoint_epochs),
        ]);
    }
    if job.progress.is_some() || job.outcome.is_some() {
        rows.push(vec!["progress".into(), progress_cell(job)]);
    }
    if let Some(o) = &job.outcome {
        rows.push(vec![
            "model".into(),
            format!("{} v{}", o.model_file, o.model_version),
        ]);
        if let Some(r) = &o.results_file {
            rows.push(vec!["results".into(), r.clone()]);
        }
        rows.push(vec!["took".into(), format!("{:.1}s", o.seconds)]);
    }
    if let Some(e) = &job.error {
        rows.push(vec!["error".into(), e.clone()]);
    }
    rows
}
