//! How a training or import job's attempts end when their worker dies: what counts as a death
//! (declared failed, or seen again with a newer generation of a new process), and the reason a
//! job fails with once its workers died `--max-worker-deaths` times.
//!
//! A worker declared failed while its process kept running (a false failure: a loaded machine,
//! a short cut) rejoins with a new generation of the same process (`started_ms`): the job
//! moves on, but that worker did not die, and it is not counted against the limit.

use bus_schemas::jobs::{Attempt, GroupMember, JobRecord, LostMember};
use bus_schemas::membership::{MemberRecord, MemberState};
use std::collections::BTreeSet;

/// Workers held by a training or import job's current attempt (they serve no inference
/// meanwhile), among those alive or only suspected in `view`.
pub fn training_workers<'a>(
    jobs: impl IntoIterator<Item = &'a JobRecord>,
    view: &[MemberRecord],
) -> BTreeSet<String> {
    let usable = |w: &str| {
        view.iter()
            .any(|m| m.id == w && matches!(m.state, MemberState::Alive | MemberState::Suspect))
    };
    jobs.into_iter()
        .filter_map(JobRecord::current)
        .flat_map(Attempt::workers)
        .filter(|w| usable(w))
        .collect()
}

/// Whether `worker` is certainly gone: failed or left in the view.
pub fn gone(view: &[MemberRecord], worker: &str) -> bool {
    view.iter()
        .filter(|m| m.id == worker)
        .all(|m| matches!(m.state, MemberState::Failed | MemberState::Left))
        && view.iter().any(|m| m.id == worker)
}

/// How a running attempt lost its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// The worker left on purpose: the job moves on without counting a death.
    Left,
    /// The worker was declared failed but its process lived on and rejoined (what the
    /// coordinator saw): the job moves on without counting a death.
    Rejoined(String),
    /// The worker's process died (declared failed, or started again with a new generation):
    /// what the coordinator saw.
    Died(String),
}

/// Whether (and how) `job`'s current attempt lost its worker in `view`.
pub fn loss(view: &[MemberRecord], job: &JobRecord) -> Option<Loss> {
    loss_of(view, job, job.current()?)
}

/// Whether (and how) attempt `a` of `job` (or one member's part of it, see
/// [`as_attempt`]) lost its worker in `view`.
pub fn loss_of(view: &[MemberRecord], job: &JobRecord, a: &Attempt) -> Option<Loss> {
    let records = || view.iter().filter(|m| m.id == a.worker);
    let newer = |m: &&MemberRecord| a.generation.is_some_and(|g| m.generation > g);
    if records().filter(newer).any(|m| same_process(m, a)) {
        let what = format!("{} was declared failed and rejoined", a.worker);
        return Some(Loss::Rejoined(what));
    }
    let what = if records().any(|m| newer(&m)) {
        "started again"
    } else if !gone(view, &a.worker) {
        return None;
    } else if records().any(|m| m.state == MemberState::Failed) {
        "was declared failed"
    } else {
        return Some(Loss::Left);
    };
    let at = job
        .progress
        .as_ref()
        .filter(|p| p.attempt == a.attempt && p.epochs > 0)
        .map_or(String::new(), |p| {
            format!(
                " during epoch {} of {} (step {} of {})",
                p.epoch + 1,
                p.epochs,
                p.step,
                p.steps
            )
        });
    Some(Loss::Died(format!("{} {what}{at}", a.worker)))
}

/// Whether `m` is the process that ran attempt `a`: both name the same process start.
fn same_process(m: &MemberRecord, a: &Attempt) -> bool {
    m.id == a.worker && a.started_ms.is_some() && m.started_ms == a.started_ms
}

/// Whether the worker of `a`, recorded as dead, is in `view` again as the same process with a
/// newer generation, not failed: it was declared failed falsely and rejoined.
fn came_back(view: &[MemberRecord], a: &Attempt) -> bool {
    let live = |m: &&MemberRecord| matches!(m.state, MemberState::Alive | MemberState::Suspect);
    view.iter()
        .filter(live)
        .any(|m| same_process(m, a) && a.generation.is_some_and(|g| m.generation > g))
}

/// The workers that died running `job`, oldest first, then `last` if given; a worker seen in
/// `view` again as the process that ran the attempt (it rejoined) did not die.
pub fn dead_workers(job: &JobRecord, view: &[MemberRecord], last: Option<&str>) -> Vec<String> {
    let died = job
        .attempts
        .iter()
        .filter(|a| a.died.is_some() && !came_back(view, a));
    let mut workers: Vec<String> = died.map(|a| a.worker.clone()).collect();
    // Members of data-parallel groups that died (the group went on without them).
    let lost = (job.attempts.iter())
        .filter_map(|a| a.group.as_ref().map(|g| (a, g)))
        .flat_map(|(a, g)| g.lost.iter().filter(|l| l.died).map(move |l| (a, l)));
    for (a, l) in lost {
        let member = lost_attempt(a, l);
        if !came_back(view, &member) {
            workers.push(l.worker.clone());
        }
    }
    workers.extend(last.map(str::to_string));
    workers
}

/// The reason a job fails after its workers died: "the job's worker died 3 times: n2, n4, n1
/// (last error: n1 was declared failed during epoch 2 of 6 (step 30 of 47))".
pub fn died_reason(workers: &[String], holding: &str, last: &str) -> String {
    format!(
        "the job's worker died {} times{holding}: {} (last error: {last})",
        workers.len(),
        workers.join(", ")
    )
}

/// Marks the current attempt of `j` as ended by its worker's death.
pub fn mark_died(j: &mut JobRecord, died: &Option<String>) {
    if let (Some(what), Some(a)) = (died, j.attempts.last_mut()) {
        a.died = Some(what.clone());
    }
}

/// Attempt `a` as if member `m` ran it alone (what the loss rules read).
pub fn as_attempt(a: &Attempt, m: &GroupMember) -> Attempt {
    Attempt {
        worker: m.worker.clone(),
        generation: m.generation,
        started_ms: m.started_ms,
        group: None,
        ..a.clone()
    }
}

/// Attempt `a` as if lost member `l` ran it alone.
pub fn lost_attempt(a: &Attempt, l: &LostMember) -> Attempt {
    Attempt {
        worker: l.worker.clone(),
        generation: l.member_generation,
        started_ms: l.started_ms,
        group: None,
        died: Some(l.reason.clone()),
        ..a.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bus_schemas::jobs::{Attempt, JobSpec, JobState, Progress, TrainSpec};

    /// A member record for tests.
    pub(crate) fn member(id: &str, state: MemberState, generation: u64) -> MemberRecord {
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

    fn job(workers: &[(&str, bool)]) -> JobRecord {
        let spec = JobSpec::Train(TrainSpec {
            arch: "cnn".into(),
            name: "cnn".into(),
            dataset: "fm".into(),
            epochs: 6,
            batch: 64,
            lr: None,
            limit: None,
            seed: 0,
            workers: 1,
        });
        let attempts = workers.iter().enumerate().map(|(i, (w, died))| Attempt {
            started_ms: None,
            attempt: i as u32 + 1,
            worker: w.to_string(),
            assigned_ms: 0,
            resumed_at_epoch: None,
            generation: Some(5),
            died: died.then(|| format!("{w} was declared failed")),
            group: None,
        });
        JobRecord {
            state: JobState::Running,
            attempts: attempts.collect(),
            ..JobRecord::queued("train-1".into(), spec, 0, None)
        }
    }

    #[test]
    fn a_failed_or_restarted_worker_died_and_a_left_one_did_not() {
        let j = job(&[("n2", false)]);
        let view = |state, generation| vec![member("n2", state, generation)];
        assert_eq!(loss(&view(MemberState::Alive, 5), &j), None);
        assert_eq!(loss(&view(MemberState::Suspect, 5), &j), None);
        assert_eq!(loss(&view(MemberState::Left, 5), &j), Some(Loss::Left));
        let died = |what: &str| Some(Loss::Died(what.into()));
        assert_eq!(
            loss(&view(MemberState::Failed, 5), &j),
            died("n2 was declared failed")
        );
        assert_eq!(
            loss(&view(MemberState::Alive, 6), &j),
            died("n2 started again")
        );
    }

    #[test]
    fn a_death_names_the_epoch_the_worker_was_in() {
        let mut j = job(&[("n2", false)]);
        j.progress = Some(Progress {
            attempt: 1,
            epoch: 1,
            epochs: 6,
            step: 30,
            steps: 47,
            ..Default::default()
        });
        let view = vec![member("n2", MemberState::Failed, 5)];
        let Some(Loss::Died(what)) = loss(&view, &j) else {
            panic!("not a death");
        };
        assert_eq!(
            what,
            "n2 was declared failed during epoch 2 of 6 (step 30 of 47)"
        );
    }

    #[test]
    fn the_reason_lists_every_dead_worker_and_the_last_error() {
        let j = job(&[("n2", true), ("n4", true), ("n1", false)]);
        let dead = dead_workers(&j, &[], Some("n1"));
        assert_eq!(
            died_reason(&dead, "", "n1 was declared failed"),
            "the job's worker died 3 times: n2, n4, n1 (last error: n1 was declared failed)"
        );
    }

    /// `member` of the process started at `started`.
    fn process(id: &str, state: MemberState, generation: u64, started: u64) -> MemberRecord {
        MemberRecord {
            started_ms: Some(started),
            ..member(id, state, generation)
        }
    }

    #[test]
    fn a_worker_declared_failed_whose_process_rejoined_did_not_die() {
        // n2 ran attempt 1 as the process started at 3 (generation 5).
        let mut j = job(&[("n2", false)]);
        j.attempts[0].started_ms = Some(3);
        let rejoined = vec![process("n2", MemberState::Alive, 7, 3)];
        assert_eq!(
            loss(&rejoined, &j),
            Some(Loss::Rejoined("n2 was declared failed and rejoined".into()))
        );
        let restarted = vec![process("n2", MemberState::Alive, 7, 7)];
        assert_eq!(
            loss(&restarted, &j),
            Some(Loss::Died("n2 started again".into()))
        );
        // Counted as dead while failed; not once the same process is back.
        j.attempts[0].died = Some("n2 was declared failed".into());
        let failed = vec![process("n2", MemberState::Failed, 5, 3)];
        assert_eq!(dead_workers(&j, &failed, None), ["n2"]);
        assert!(dead_workers(&j, &rejoined, None).is_empty());
        assert_eq!(dead_workers(&j, &restarted, None), ["n2"]);
        // A record without a process start (an older node) proves nothing.
        let unknown = vec![member("n2", MemberState::Alive, 7)];
        assert_eq!(dead_workers(&j, &unknown, None), ["n2"]);
    }
}
