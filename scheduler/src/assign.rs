//! Which worker a training or import job goes to: a free alive worker, not one that died
//! running the job and not the coordinator while another is free, on the host running the
//! fewest such jobs (losing a machine stops as few as can be), spread by a hash of the job id.

use bus_schemas::membership::{MemberRecord, MemberState};
use std::collections::BTreeSet;

/// A free alive worker for `job_id`: not one that died running it, and not the coordinator,
/// if another is free; then on a host running the fewest exclusive jobs (so that losing a
/// machine stops as few as can be); then spread by a hash of the job id.
pub fn pick(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempts::tests::member;

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
