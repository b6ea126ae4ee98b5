//! Job commands: train, jobs, job, cancel, watch, and following a job to its end with a
//! progress bar.

use crate::args::Command;
use crate::jobs_view::{details, stats, table};
use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_client::BusOptions;
use bus_schemas::jobs::{
    JobEvent, JobRecord, JobSpec, JobState, JobsFilter, Progress, QpsPolicy, ServeSpec, ServeState,
    TrainSpec,
};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Runs one job command.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    let client = bus.connect_once("idunno-cli").await?;
    let jobs = JobsClient::new(client.clone(), Duration::from_secs(10));
    match cmd {
        Command::Train { .. } | Command::Serve { .. } => {
            let (spec, detach) = submission(cmd)?;
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
        Command::Qps { policy } => qps(&jobs, policy, out).await,
        Command::Completed(page) => list(&jobs, JobsFilter::Ended, page, out).await,
        Command::Assignments => assignments(&jobs, out).await,
        Command::Workers => crate::workers::show(&client, &jobs, out).await,
        Command::Jobs(page) => list(&jobs, JobsFilter::All, page, out).await,
        Command::Job { id } => show_job(&jobs, &id, out).await,
        Command::Cancel { job } => {
            let job = jobs.cancel(&job).await?;
            out.print(&job, || vec![vec![format!("cancelled {}", job.id)]]);
            Ok(())
        }
        Command::Watch { job } => follow(&client, &jobs, &job, out).await,
        other => anyhow::bail!("{other:?} is not a job command"),
    }
}

/// `job <id>` (`ij`): the record, and an inference job's running accuracy and newest outputs
/// (from an older node that cannot say them: the record alone).
async fn show_job(jobs: &JobsClient, id: &str, out: &Output) -> anyhow::Result<()> {
    let (job, outputs) = match jobs.outputs(id, None).await {
        Ok(both) => both,
        Err(_) => (jobs.get(id).await?, Vec::new()),
    };
    out.print(&job, || {
        let mut rows = details(&job);
        if let Some(acc) = crate::results::accuracy(&job) {
            rows.push(vec![
                "accuracy".into(),
                format!("{:.2}% so far", acc * 100.0),
            ]);
        }
        if !outputs.is_empty() {
            rows.push(vec!["newest outputs".into(), String::new()]);
            rows.push(crate::results::header());
            rows.extend(outputs.iter().map(crate::results::row));
        }
        rows
    });
    Ok(())
}

/// The job a `train` or `serve` command submits, and whether it is `--detach`ed.
fn submission(cmd: Command) -> anyhow::Result<(JobSpec, bool)> {
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
            workers,
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
                workers,
            });
            Ok((spec, detach))
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
            Ok((spec, detach))
        }
        other => anyhow::bail!("{other:?} is not a job command"),
    }
}

/// `qps`: sets the query-rate policy (if given) and prints the one in force.
async fn qps(
    jobs: &JobsClient,
    policy: Option<crate::args::QpsArg>,
    out: &Output,
) -> anyhow::Result<()> {
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

/// `jobs`, `completed`: a page of jobs (or every page with --all); the cursor of the next page
/// goes to stderr, so that `--json` output stays a list.
async fn list(
    jobs: &JobsClient,
    which: JobsFilter,
    page: crate::args::PageArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let (list, next) = if page.all {
        (jobs.list_all(which, Some(page.limit)).await?, None)
    } else {
        let p = jobs.page(which, Some(page.limit), page.after).await?;
        (p.jobs, p.next)
    };
    out.print(&list, || table(&list));
    if let Some(next) = next {
        eprintln!("more: --after {next}");
    }
    Ok(())
}

/// `assignments`: the workers of each running job.
async fn assignments(jobs: &JobsClient, out: &Output) -> anyhow::Result<()> {
    let list = jobs.list_all(JobsFilter::Live, None).await?;
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
    let bar = job_bar(id, out);
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = Instant::now();
    let mut failing_since: Option<Instant> = None;
    let job = loop {
        tokio::select! {
            Some(msg) = progress.next() => on_progress(&bar, out, id, &msg.payload, &mut last_line),
            Some(msg) = events.next() => on_event(&bar, out, id, &msg.payload),
            _ = poll.tick() => {
                if let Some(job) = poll_job(jobs, id, &bar, out, &mut failing_since).await? {
                    break job;
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

/// The progress bar of following job `id` (never drawn with `--json`).
fn job_bar(id: &str, out: &Output) -> ProgressBar {
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
    bar
}

/// Shows a progress message on the bar; without a terminal (and without `--json`), as a
/// plain line at most every 5 s. An undecodable message is ignored.
fn on_progress(bar: &ProgressBar, out: &Output, id: &str, payload: &[u8], last: &mut Instant) {
    let Ok(p) = decode::<Progress>(payload) else {
        return;
    };
    show(bar, &p);
    if bar.is_hidden() && !out.json && last.elapsed() >= Duration::from_secs(5) {
        *last = Instant::now();
        crate::output::say(&format!("{id}: {}", bar.message()));
    }
}

/// Prints a job event of job `id` as a line (nothing with `--json`); events of other jobs
/// and undecodable messages are ignored.
fn on_event(bar: &ProgressBar, out: &Output, id: &str, payload: &[u8]) {
    let Ok(ev) = decode::<JobEvent>(payload) else {
        return;
    };
    if ev.job_id == id && !out.json {
        let who = ev.worker.map(|w| format!(" on {w}")).unwrap_or_default();
        let detail = ev.detail.map(|d| format!(": {d}")).unwrap_or_default();
        let line = format!(
            "{id}: {}{who}{detail}",
            format!("{:?}", ev.event).to_lowercase()
        );
        tracing_line(bar, out, &line);
    }
}

/// Polls job `id`'s record: the record once the job has ended, else `None` after showing
/// its progress on the bar. A failed poll is `None` (and a line) until polls have failed
/// for 30 s, then the error.
async fn poll_job(
    jobs: &JobsClient,
    id: &str,
    bar: &ProgressBar,
    out: &Output,
    failing_since: &mut Option<Instant>,
) -> anyhow::Result<Option<JobRecord>> {
    // A node dying mid-request is no reason to stop following; a cluster that stays
    // unreachable is.
    let job = match jobs.get(id).await {
        Ok(job) => {
            *failing_since = None;
            job
        }
        Err(e)
            if failing_since.get_or_insert_with(Instant::now).elapsed()
                < Duration::from_secs(30) =>
        {
            tracing_line(bar, out, &format!("{id}: {e}; still trying"));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if job.state.is_final() {
        return Ok(Some(job));
    }
    if let Some(s) = &job.serve {
        show_serve(bar, s);
    } else if let Some(p) = &job.progress {
        if bar.length() == Some(0) {
            show(bar, p);
        }
    }
    Ok(None)
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
    let on = match p.workers {
        0 | 1 => format!("on {}", p.worker),
        n => format!(
            "on {n} workers ({:.1} steps/s, all-reduce {:.0}%)",
            p.steps_per_s,
            p.allreduce_share * 100.0
        ),
    };
    set_message(
        bar,
        format!(
            "epoch {}/{} loss {:.3} acc {:.1}% {:.0} img/s {on}",
            p.epoch + 1,
            p.epochs,
            p.loss,
            p.accuracy * 100.0,
            p.images_per_s,
        ),
    );
}

/// The workers a running job uses now.
pub fn assigned(job: &JobRecord) -> Vec<String> {
    match (&job.serve, job.current()) {
        (Some(s), _) => s.workers.clone(),
        (None, Some(a)) => a.workers(),
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
