//! The coordinator's side of data-parallel training jobs (`--workers N`): give a queued job
//! up to N free workers at once (a group), take lost members out of a running group (the
//! others go on, [`super::dp`]), let free workers join up to N, and when every member is lost
//! start a new attempt from the last checkpoint, as for a job on one worker. Deaths of members
//! count against `--max-worker-deaths` like deaths of a job's only worker.

use super::{takeover, Ctx};
use crate::cluster::error::KvError;
use crate::cluster::lease::now_ms;
use bus_schemas::jobs::{Attempt, Group, JobEventKind, JobRecord, JobState};
use bus_schemas::membership::MemberRecord;
use idunno_scheduler::attempts::{dead_workers, died_reason, Loss};
use idunno_scheduler::group::{lost_members, member, pick_many};
use std::collections::BTreeSet;

/// One pass over data-parallel job `job` of `size` workers; `busy` gains the workers given.
pub(super) async fn pass(
    ctx: &Ctx,
    job: &JobRecord,
    size: usize,
    view: &[MemberRecord],
    busy: &mut BTreeSet<String>,
) -> Result<(), KvError> {
    let Some(a) = job.current() else {
        return start(ctx, job, size, view, busy, None).await;
    };
    let Some(group) = &a.group else {
        return Ok(()); // an attempt of before the job was data-parallel: left alone
    };
    let lost = lost_members(view, job);
    if lost.is_empty() {
        return grow(ctx, job, a, group, size, view, busy).await;
    }
    let died: Vec<&String> = (lost.iter())
        .filter_map(|(_, l)| match l {
            Loss::Died(what) => Some(what),
            _ => None,
        })
        .collect();
    let mut dead = dead_workers(job, view, None);
    dead.extend(
        lost.iter()
            .filter(|(_, l)| matches!(l, Loss::Died(_)))
            .map(|(w, _)| w.clone()),
    );
    if let Some(last) = died.last() {
        if dead.len() >= ctx.max_worker_deaths as usize {
            let reason = died_reason(&dead, "", last);
            return takeover::fail(ctx, job, last, reason).await;
        }
    }
    if lost.len() >= group.members.len() {
        // Every member is gone: a new attempt resumes from the checkpoint.
        let what = died.last().map(|w| w.to_string());
        return start(ctx, job, size, view, busy, what).await;
    }
    shrink(ctx, job, a, group, &lost).await
}

/// Gives a queued job (or one whose group is all gone) up to `size` free workers.
async fn start(
    ctx: &Ctx,
    job: &JobRecord,
    size: usize,
    view: &[MemberRecord],
    busy: &mut BTreeSet<String>,
    died: Option<String>,
) -> Result<(), KvError> {
    let avoid: BTreeSet<String> = dead_workers(job, view, None).into_iter().collect();
    let workers = pick_many(&ctx.id, view, busy, &avoid, &job.id, size);
    if workers.is_empty() {
        if job.state == JobState::Running {
            takeover::requeue(ctx, job, died).await?;
        }
        return Ok(());
    }
    let attempt = new_attempt(job, view, &workers);
    let expected = (job.state, job.attempts.len());
    let changed = ctx
        .store
        .modify(&job.id, |j| {
            if (j.state, j.attempts.len()) != expected {
                return false;
            }
            idunno_scheduler::attempts::mark_died(j, &died);
            j.state = JobState::Running;
            j.attempts.push(attempt.clone());
            true
        })
        .await?;
    let Some(job) = changed else {
        return Ok(());
    };
    busy.extend(workers.iter().cloned());
    let names = workers.join(", ");
    let (event, detail) = match job.attempts.len() {
        1 => (
            JobEventKind::Started,
            format!("on {} workers: {names}", workers.len()),
        ),
        _ => (
            JobEventKind::Reassigned,
            format!("to {names}, resuming after epoch {}", job.checkpoint_epochs),
        ),
    };
    tracing::info!(job = %job.id, workers = %names, ?event, "group assigned");
    ctx.event(
        &job.id,
        event,
        workers.first().map(String::as_str),
        Some(detail),
    )
    .await;
    Ok(())
}

/// The next attempt of `job`, on a group of `workers` (rank order).
fn new_attempt(job: &JobRecord, view: &[MemberRecord], workers: &[String]) -> Attempt {
    let now = now_ms();
    let group = Group {
        generation: 1,
        members: workers.iter().map(|w| member(view, w, now)).collect(),
        lost: Vec::new(),
    };
    let mut attempt = Attempt {
        attempt: job.attempts.len() as u32 + 1,
        worker: String::new(),
        assigned_ms: now,
        resumed_at_epoch: None,
        generation: None,
        started_ms: None,
        died: None,
        group: Some(group),
    };
    attempt.follow_group();
    attempt
}

/// Takes the lost members out of the group; the others go on.
async fn shrink(
    ctx: &Ctx,
    job: &JobRecord,
    a: &Attempt,
    group: &Group,
    lost: &[(String, Loss)],
) -> Result<(), KvError> {
    let detail = (lost.iter())
        .map(|(w, l)| match l {
            Loss::Died(what) | Loss::Rejoined(what) => what.clone(),
            Loss::Left => format!("{w} left"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let changed = change(ctx, job, a, group, |g| {
        for (w, l) in lost {
            let died = matches!(l, Loss::Died(_));
            let reason = match l {
                Loss::Died(what) | Loss::Rejoined(what) => what.clone(),
                Loss::Left => format!("{w} left"),
            };
            g.remove(w, reason, died, now_ms());
        }
    })
    .await?;
    if let Some(g) = changed {
        let detail = format!("{detail}: goes on with {} workers", g.members.len());
        tracing::warn!(job = %job.id, "{detail}");
        let worker = lost.first().map(|(w, _)| w.as_str());
        ctx.event(&job.id, JobEventKind::Regrouped, worker, Some(detail))
            .await;
    }
    Ok(())
}

/// Lets free workers join a group smaller than `size`.
async fn grow(
    ctx: &Ctx,
    job: &JobRecord,
    a: &Attempt,
    group: &Group,
    size: usize,
    view: &[MemberRecord],
    busy: &mut BTreeSet<String>,
) -> Result<(), KvError> {
    let want = size.saturating_sub(group.members.len());
    if want == 0 {
        return Ok(());
    }
    let avoid: BTreeSet<String> = dead_workers(job, view, None).into_iter().collect();
    // Only workers that have not died running the job join a running group.
    let joiners: Vec<String> = pick_many(&ctx.id, view, busy, &avoid, &job.id, want)
        .into_iter()
        .filter(|w| !avoid.contains(w))
        .collect();
    if joiners.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let changed = change(ctx, job, a, group, |g| {
        for w in &joiners {
            g.add(member(view, w, now));
        }
    })
    .await?;
    if let Some(g) = changed {
        busy.extend(joiners.iter().cloned());
        let detail = format!(
            "{} joined: goes on with {} workers",
            joiners.join(", "),
            g.members.len()
        );
        tracing::info!(job = %job.id, "{detail}");
        let worker = joiners.first().map(String::as_str);
        ctx.event(&job.id, JobEventKind::Regrouped, worker, Some(detail))
            .await;
    }
    Ok(())
}

/// Changes the group of attempt `a` while it is still at `group`'s generation; the new group.
async fn change(
    ctx: &Ctx,
    job: &JobRecord,
    a: &Attempt,
    group: &Group,
    mut apply: impl FnMut(&mut Group),
) -> Result<Option<Group>, KvError> {
    let (attempt, generation) = (a.attempt, group.generation);
    let changed = ctx
        .store
        .modify(&job.id, |j| {
            if j.state != JobState::Running {
                return false;
            }
            let Some(a) = j.attempts.last_mut().filter(|a| a.attempt == attempt) else {
                return false;
            };
            let Some(g) = a.group.as_mut().filter(|g| g.generation == generation) else {
                return false;
            };
            apply(g);
            a.follow_group();
            true
        })
        .await?;
    Ok(changed.and_then(|j| j.current().and_then(|a| a.group.clone())))
}
