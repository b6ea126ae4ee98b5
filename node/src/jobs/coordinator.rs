//! The coordinator's loop, run by whichever node holds the lease: give queued jobs to free
//! workers, and give a running job whose worker failed or left to another worker (which
//! resumes from the job's last checkpoint). A training job holds its worker exclusively.
//!
//! A worker that died running a job (declared failed, or seen again with a newer generation:
//! it restarted) is recorded in the attempt; after `--max-worker-deaths` such deaths the job
//! fails with the workers and the last error, instead of walking through the whole cluster
//! (a job that kills its worker would otherwise kill them all). A worker that left on purpose
//! is not counted, nor is one declared failed whose process lived on and rejoined (see
//! [`super::attempts`]). A new attempt prefers workers that have not died running the job.

use super::Ctx;
use crate::cluster::lease::now_ms;
use bus_schemas::jobs::{Attempt, JobEventKind, JobRecord, JobSpec, JobState};
use bus_schemas::membership::{MemberRecord, MemberState};
use idunno_scheduler::attempts::{
    dead_workers, died_reason, loss, mark_died, training_workers, Loss,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the coordinator looks at the jobs.
pub const PASS: Duration = Duration::from_millis(300);

/// Runs coordinator passes while this node holds the lease, until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PASS) => {}
        }
        if !ctx.coordinator.borrow().me {
            continue;
        }
        if let Err(e) = pass(&ctx).await {
            tracing::debug!("coordinator pass: {e:#}");
        }
    }
}

async fn pass(ctx: &Ctx) -> anyhow::Result<()> {
    let (view, mut jobs) = ctx.snapshot().await?;
    jobs.sort_by_key(|j| j.submitted_ms);
    let mut busy = training_workers(&jobs, &view);
    let exclusive = jobs
        .iter()
        .filter(|j| !j.state.is_final() && !matches!(j.spec, JobSpec::Serve(_)));
    for job in exclusive {
        let lost = loss(&view, job);
        if job.state != JobState::Queued && lost.is_none() {
            continue;
        }
        let died = match lost {
            Some(Loss::Died(what)) => Some(what),
            Some(Loss::Rejoined(what)) => {
                tracing::info!(job = %job.id, "{what}: moving on, not counted as a death");
                None
            }
            _ => None,
        };
        if let Some(what) = &died {
            let current = job.current().map(|a| a.worker.as_str());
            let dead = dead_workers(job, &view, current);
            if dead.len() >= ctx.max_worker_deaths as usize {
                fail(ctx, job, what, died_reason(&dead, "", what)).await?;
                continue;
            }
        }
        let avoid: BTreeSet<String> = dead_workers(job, &view, None).into_iter().collect();
        let Some(worker) = pick(&ctx.id, &view, &busy, &avoid, &job.id) else {
            if job.state == JobState::Running {
                requeue(ctx, job, died).await?;
            }
            continue;
        };
        let process = view
            .iter()
            .filter(|m| m.id == worker && m.state == MemberState::Alive)
            .max_by_key(|m| m.generation)
            .map(|m| (m.generation, m.started_ms));
        if assign(ctx, job, &worker, process, died).await? {
            busy.insert(worker);
        }
    }
    Ok(())
}

/// A free alive worker for `job_id`: not one that died running it, and not the coordinator,
/// if another is free; then on a host running the fewest exclusive jobs (so that losing a
/// machine stops as few as can be); then spread by a hash of the job id.
fn pick(
    me: &str,
    view: &[MemberRecord],
    busy: &BTreeSet<String>,
    avoid: &BTreeSet<String>,
    job_id: &str,
) -> Option<String> {
    let free: Vec<&MemberRecord> = view
        .iter()
        .filter(|m| m.state == MemberState::Alive && !busy.contains(&m.id))
        .collect();
    let pool = prefer(free, |m| !avoid.contains(&m.id));
    let pool = prefer(pool, |m| m.id != me);
    let running_on = |host: &str| {
        let on_host = view
            .iter()
            .filter(|m| m.host == host && busy.contains(&m.id));
        on_host.map(|m| &m.id).collect::<BTreeSet<_>>().len()
    };
    pool.into_iter()
        .min_by_key(|m| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (job_id, &m.id).hash(&mut h);
            (running_on(&m.host), std::cmp::Reverse(h.finish()))
        })
        .map(|m| m.id.clone())
}

/// The members of `pool` that are `wanted`, or all of `pool` if none is.
fn prefer(pool: Vec<&MemberRecord>, wanted: impl Fn(&MemberRecord) -> bool) -> Vec<&MemberRecord> {
    let rest: Vec<&MemberRecord> = pool.iter().copied().filter(|m| wanted(m)).collect();
    if rest.is_empty() {
        pool
    } else {
        rest
    }
}

async fn assign(
    ctx: &Ctx,
    job: &JobRecord,
    worker: &str,
    process: Option<(u64, Option<u64>)>,
    died: Option<String>,
) -> anyhow::Result<bool> {
    let previous = job.current().map(|a| a.worker.clone());
    let expected = (job.state, job.attempts.len());
    let changed = ctx
        .store
        .modify(&job.id, |j| {
            if (j.state, j.attempts.len()) != expected {
                return false;
            }
            mark_died(j, &died);
            j.state = JobState::Running;
            j.attempts.push(Attempt {
                attempt: j.attempts.len() as u32 + 1,
                worker: worker.into(),
                assigned_ms: now_ms(),
                resumed_at_epoch: None,
                generation: process.map(|p| p.0),
                started_ms: process.and_then(|p| p.1),
                died: None,
            });
            true
        })
        .await?;
    let Some(job) = changed else {
        return Ok(false);
    };
    let (event, detail) = if job.attempts.len() > 1 {
        let from = previous.or_else(|| job.attempts.iter().rev().nth(1).map(|a| a.worker.clone()));
        let detail = format!(
            "from {} to {worker}, resuming after epoch {}",
            from.unwrap_or_default(),
            job.checkpoint_epochs
        );
        (JobEventKind::Reassigned, Some(detail))
    } else {
        (JobEventKind::Started, None)
    };
    tracing::info!(job = %job.id, %worker, ?event, "assigned");
    ctx.event(&job.id, event, Some(worker), detail).await;
    Ok(true)
}

/// A running job whose worker is gone and no other worker is free waits in the queue.
async fn requeue(ctx: &Ctx, job: &JobRecord, died: Option<String>) -> anyhow::Result<()> {
    let attempts = job.attempts.len();
    ctx.store
        .modify(&job.id, |j| {
            let same = j.state == JobState::Running && j.attempts.len() == attempts;
            if same {
                mark_died(j, &died);
                j.state = JobState::Queued;
            }
            same
        })
        .await?;
    Ok(())
}

/// Fails a running job whose workers died too often (only while its attempt is unchanged).
async fn fail(ctx: &Ctx, job: &JobRecord, what: &str, reason: String) -> anyhow::Result<()> {
    let attempts = job.attempts.len();
    let died = Some(what.to_string());
    let failed = ctx
        .store
        .modify(&job.id, |j| {
            let same = j.state == JobState::Running && j.attempts.len() == attempts;
            if same {
                mark_died(j, &died);
                j.state = JobState::Failed;
                j.error = Some(reason.clone());
                j.finished_ms = Some(now_ms());
            }
            same
        })
        .await?;
    if let Some(job) = failed {
        tracing::warn!(job = %job.id, "failed: {reason}");
        let worker = job.attempts.last().map(|a| a.worker.as_str());
        ctx.event(&job.id, JobEventKind::Failed, worker, Some(reason))
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, state: MemberState, generation: u64) -> MemberRecord {
        MemberRecord {
            started_ms: None,
            id: id.into(),
            generation,
            incarnation: 0,
            state,
            host: String::new(),
            zone: None,
            http: None,
            last_heard_ms: None,
        }
    }

    #[test]
    fn a_new_attempt_avoids_dead_workers_and_the_coordinator_while_others_are_free() {
        let view: Vec<MemberRecord> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| member(id, MemberState::Alive, 5))
            .collect();
        let none = BTreeSet::new();
        let avoid: BTreeSet<String> = ["n2".to_string()].into();
        assert_eq!(pick("n1", &view, &none, &avoid, "j").as_deref(), Some("n3"));
        let busy: BTreeSet<String> = ["n3".to_string()].into();
        // Only a dead worker and the coordinator are free: the dead one is avoided first.
        assert_eq!(pick("n1", &view, &busy, &avoid, "j").as_deref(), Some("n1"));
        let all: BTreeSet<String> = ["n1", "n3"].iter().map(|s| s.to_string()).collect();
        assert_eq!(pick("n1", &view, &all, &avoid, "j").as_deref(), Some("n2"));
    }

    #[test]
    fn exclusive_jobs_spread_over_hosts() {
        // a1 runs a job: whatever the job id, the next one goes to machine b.
        let view: Vec<MemberRecord> = ["a1", "a2", "b1", "b2"]
            .iter()
            .map(|id| MemberRecord {
                host: id[..1].into(),
                ..member(id, MemberState::Alive, 5)
            })
            .collect();
        let busy: BTreeSet<String> = ["a1".to_string()].into();
        for j in 0..50 {
            let w = pick("c", &view, &busy, &BTreeSet::new(), &format!("j{j}")).unwrap();
            assert!(w.starts_with('b'), "j{j}: {w}");
        }
    }
}
