//! The coordinator's rules for a data-parallel training attempt's group (`--workers N`): which
//! members are lost (the rules of [`crate::attempts`], applied to each member), which free
//! workers join (up to the job's size, as [`crate::assign::pick`] chooses), and when the
//! attempt as a whole is lost (every member gone: a new attempt resumes from the checkpoint).

use crate::assign::pick;
use crate::attempts::{as_attempt, loss_of, Loss};
use bus_schemas::jobs::{GroupMember, JobRecord};
use bus_schemas::membership::MemberRecord;
use std::collections::BTreeSet;

/// The members of `job`'s current group that are lost in `view`, with how.
pub fn lost_members(view: &[MemberRecord], job: &JobRecord) -> Vec<(String, Loss)> {
    let Some(a) = job.current() else {
        return Vec::new();
    };
    let Some(g) = &a.group else {
        return Vec::new();
    };
    g.members
        .iter()
        .filter_map(|m| loss_of(view, job, &as_attempt(a, m)).map(|l| (m.worker.clone(), l)))
        .collect()
}

/// Up to `n` free workers for `job_id`, each chosen as [`pick`] chooses one and then busy.
pub fn pick_many(
    me: &str,
    view: &[MemberRecord],
    busy: &BTreeSet<String>,
    avoid: &BTreeSet<String>,
    job_id: &str,
    n: usize,
) -> Vec<String> {
    let mut busy = busy.clone();
    let mut out = Vec::new();
    while out.len() < n {
        let Some(w) = pick(me, view, &busy, avoid, job_id) else {
            break;
        };
        busy.insert(w.clone());
        out.push(w);
    }
    out
}

/// A group member for `worker` as `view` knows it, joining at `now_ms`.
pub fn member(view: &[MemberRecord], worker: &str, now_ms: u64) -> GroupMember {
    let process = view
        .iter()
        .filter(|m| m.id == worker)
        .max_by_key(|m| m.generation);
    GroupMember {
        worker: worker.to_string(),
        generation: process.map(|m| m.generation),
        started_ms: process.and_then(|m| m.started_ms),
        joined_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempts::tests::member as record;
    use bus_schemas::jobs::{Attempt, Group, JobSpec, JobState, TrainSpec};
    use bus_schemas::membership::MemberState;

    fn job(members: &[&str]) -> JobRecord {
        let spec = JobSpec::Train(TrainSpec {
            arch: "cnn".into(),
            name: "cnn".into(),
            dataset: "d".into(),
            epochs: 5,
            batch: 128,
            lr: None,
            limit: None,
            seed: 0,
            workers: 3,
        });
        let mut j = JobRecord::queued("j".into(), spec, 0, None);
        j.state = JobState::Running;
        let view: Vec<MemberRecord> = members
            .iter()
            .map(|id| record(id, MemberState::Alive, 5))
            .collect();
        let group = Group {
            generation: 1,
            members: members.iter().map(|w| member(&view, w, 1)).collect(),
            lost: Vec::new(),
        };
        let mut a = as_attempt(
            &Attempt {
                attempt: 1,
                worker: String::new(),
                assigned_ms: 1,
                resumed_at_epoch: None,
                generation: None,
                started_ms: None,
                died: None,
                group: None,
            },
            &group.members[0],
        );
        a.group = Some(group);
        j.attempts.push(a);
        j
    }

    #[test]
    fn a_failed_or_restarted_member_is_lost_and_the_others_stay() {
        let j = job(&["n1", "n2", "n3"]);
        let view = vec![
            record("n1", MemberState::Alive, 5),
            record("n2", MemberState::Failed, 5),
            record("n3", MemberState::Alive, 6), // started again
        ];
        let lost = lost_members(&view, &j);
        let names: Vec<&str> = lost.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(names, ["n2", "n3"]);
        assert!(lost.iter().all(|(_, l)| matches!(l, Loss::Died(_))));
        let alive: Vec<MemberRecord> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| record(id, MemberState::Alive, 5))
            .collect();
        assert!(lost_members(&alive, &j).is_empty());
    }

    #[test]
    fn a_dead_member_counts_against_the_job_and_joiners_avoid_busy_workers() {
        let mut j = job(&["n1", "n2"]);
        let view: Vec<MemberRecord> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|id| record(id, MemberState::Alive, 5))
            .collect();
        if let Some(g) = j.attempts[0].group.as_mut() {
            g.remove("n2", "n2 was declared failed".into(), true, 2);
        }
        j.attempts[0].follow_group();
        let dead = crate::attempts::dead_workers(&j, &view, None);
        assert_eq!(dead, ["n2"]);
        let busy = crate::attempts::training_workers([&j], &view);
        assert_eq!(busy, BTreeSet::from(["n1".to_string()]));
        let avoid: BTreeSet<String> = dead.into_iter().collect();
        // Two free workers that have not died running the job.
        let joiners: BTreeSet<String> = pick_many("c", &view, &busy, &avoid, "j", 2)
            .into_iter()
            .collect();
        assert_eq!(
            joiners,
            BTreeSet::from(["n3".to_string(), "n4".to_string()])
        );
        // Only the dead one is left: it is taken rather than none.
        let busier: BTreeSet<String> = ["n1", "n3", "n4"].map(String::from).into();
        assert_eq!(pick_many("c", &view, &busier, &avoid, "j", 2), ["n2"]);
    }
}
