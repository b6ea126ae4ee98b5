//! How the job commands show jobs: the tables of `jobs`, `completed`, `job`, `job-stats`
//! and the record printed when a followed job ends.

use crate::output::millis;
use bus_schemas::jobs::{JobRecord, JobSpec, ServeState};
use std::time::{SystemTime, UNIX_EPOCH};

/// `job-stats`: rate, counts, accuracy and processing-time percentiles.
pub fn stats(job: &JobRecord, s: &ServeState) -> Vec<Vec<String>> {
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
    if let Some(p) = s.proc_ms {
        let cells: Vec<String> = (p.named().iter())
            .map(|(n, v)| format!("{n} {v:.1}"))
            .collect();
        rows.push(vec!["batch time (ms)".into(), cells.join(", ")]);
    }
    rows
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A job's state in lower case.
fn state(job: &JobRecord) -> String {
    format!("{:?}", job.state).to_lowercase()
}

/// How far a job got: queries and rate, epoch and loss, or its test accuracy once done.
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

/// `jobs`: one row per job.
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

/// `job`: the record of one job, row by row.
pub fn details(job: &JobRecord) -> Vec<Vec<String>> {
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
