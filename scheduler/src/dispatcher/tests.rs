//! The dispatcher on a simulated cluster ([`crate::sim`]): every scenario of the coordinator's
//! inference path on injected time, in milliseconds of real time.

use super::*;
use crate::sim::{Refusal, Sim};
use bus_schemas::jobs::JobState;
use bus_schemas::membership::MemberState;

const SECOND: Duration = Duration::from_secs(1);

/// Queries counted per second for `job` over the `secs` seconds before now.
fn rate(sim: &Sim, job: &str, secs: u64) -> f64 {
    let from = sim.now - Duration::from_secs(secs);
    sim.counted_between(job, from, sim.now) as f64 / secs as f64
}

/// Every job ended well, each query counted once.
fn all_counted_once(sim: &Sim, jobs: &[&str]) {
    assert!(sim.counted_twice().is_empty(), "{:?}", sim.counted_twice());
    for id in jobs {
        let r = sim.record(id).expect("a record");
        let s = r.serve.as_ref().expect("serve state");
        assert_eq!(r.state, JobState::Succeeded, "{id}: {:?}", r.error);
        assert_eq!(Some(s.done), s.total, "{id}");
        assert!(s.pending.is_empty(), "{id}");
        assert_eq!(s.correct, s.total, "{id}: each query counted once");
    }
}

#[test]
fn fair_time_follows_the_weights_whatever_a_query_costs() {
    let mut sim = Sim::new(4, 4, 2);
    sim.submit("light", 1, 16, None, 1.0);
    sim.submit("heavy", 3, 16, None, 3.0); // three times the cost, three times the weight
    sim.run_for(10 * SECOND);
    let (light, heavy) = (rate(&sim, "light", 5), rate(&sim, "heavy", 5));
    let ratio = heavy / light;
    assert!(
        (ratio - 3.0).abs() < 0.3,
        "heavy {heavy:.0} q/s, light {light:.0} q/s"
    );
    // The lanes are kept busy: 8 lanes, 4 ms of lane per 3 queries (1 light + 3 heavy's per 4).
    let busy_ms = (light * 1.0 + heavy * 3.0) / 8.0;
    assert!(busy_ms > 900.0, "lanes busy {busy_ms:.0} ms of each second");
}

#[test]
fn a_new_job_starts_level_and_is_owed_no_burst() {
    let mut sim = Sim::new(3, 3, 2);
    sim.submit("old", 1, 16, None, 1.0);
    sim.run_for(10 * SECOND);
    sim.submit("new", 1, 16, None, 1.0);
    sim.run_for(2 * SECOND);
    let (old, new) = (rate(&sim, "old", 1), rate(&sim, "new", 1));
    assert!(
        old > 0.8 * new && new > 0.8 * old,
        "old {old:.0}, new {new:.0}"
    );
}

#[test]
fn qps_local_gives_each_job_its_own_workers_by_cost_and_weight() {
    let mut sim = Sim::new(6, 6, 1);
    sim.set_policy(QpsPolicy::Local);
    sim.submit("a", 1, 16, None, 1.0);
    sim.submit("b", 1, 16, None, 2.0);
    sim.run_for(20 * SECOND); // measured costs, then divided again
    let workers = |j: &str| -> BTreeSet<String> {
        sim.dispatcher
            .workers_of(j)
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    let (a, b) = (workers("a"), workers("b"));
    assert_eq!((a.len(), b.len()), (2, 4), "a {a:?}, b {b:?}");
    assert!(a.is_disjoint(&b));
    // From now on each job's batches go to its own workers only.
    let before = |j: &str| {
        sim.serve(j)
            .map(|s| s.by_worker.clone())
            .unwrap_or_default()
    };
    let (a0, b0) = (before("a"), before("b"));
    sim.run_for(5 * SECOND);
    for (job, mine, then) in [("a", &a, a0), ("b", &b, b0)] {
        let now = sim
            .serve(job)
            .map(|s| s.by_worker.clone())
            .unwrap_or_default();
        let grew: Vec<&String> = now
            .keys()
            .filter(|w| now[*w] > then.get(*w).copied().unwrap_or(0))
            .collect();
        assert!(
            grew.iter().all(|w| mine.contains(*w)),
            "{job}: {grew:?} outside {mine:?}"
        );
    }
    let (ra, rb) = (rate(&sim, "a", 5), rate(&sim, "b", 5));
    assert!(
        (ra / rb - 1.0).abs() < 0.25,
        "equal weights, equal rates: a {ra:.0}, b {rb:.0}"
    );
}

#[test]
fn a_hung_worker_is_probed_and_its_batches_go_elsewhere_long_before_their_deadline() {
    let mut sim = Sim::new(3, 3, 1);
    sim.submit("j", 1, 16, Some(6_000), 2.0);
    sim.run_for(2 * SECOND);
    let hung_at = sim.now;
    sim.worker("w002").expect("a worker").hang(true);
    let held = |s: &Sim| {
        s.serve("j")
            .map_or(0, |s| s.by_worker.get("w002").copied().unwrap_or(0))
    };
    let before = held(&sim);
    // The quiet worker is probed, found unanswering, and left out; the job goes on.
    let out = |s: &Sim| {
        s.dispatcher
            .workers_of("j")
            .is_some_and(|w| !w.contains(&"w002".to_string()))
    };
    assert!(
        sim.run_until(out, hung_at + SECOND),
        "left out within a second"
    );
    assert!(sim.run_to_end(&["j"], 60 * SECOND));
    all_counted_once(&sim, &["j"]);
    assert_eq!(held(&sim), before, "nothing counted from the hung worker");
}

#[test]
fn a_slow_worker_keeps_its_answered_batches_and_loses_the_late_ones() {
    let mut sim = Sim::new(3, 3, 1);
    sim.submit("j", 1, 32, Some(8_000), 2.0);
    sim.run_for(2 * SECOND);
    // 64 ms batches become 6.4 s: past the 3 s deadline, sent again elsewhere.
    sim.worker("w001").expect("a worker").slow = 100.0;
    let began = sim.now;
    assert!(sim.run_to_end(&["j"], 120 * SECOND));
    all_counted_once(&sim, &["j"]);
    // Once late, it holds one batch at a time, and a batch it lost goes elsewhere.
    let took = sim.now - began;
    assert!(took < 20 * SECOND, "{took:?}");
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing_and_its_death_is_recorded_while_pending() {
    let mut sim = Sim::new(4, 4, 2);
    sim.submit("j", 1, 64, Some(20_000), 4.0); // 256 ms batches
    sim.run_for(2 * SECOND);
    sim.worker("w003").expect("a worker").kill();
    sim.run_for(Duration::from_millis(50));
    let in_flight_on_dead = sim
        .dispatcher
        .flights
        .values()
        .filter(|f| f.worker == "w003")
        .count();
    assert!(in_flight_on_dead > 0, "it held batches when it died");
    sim.set_member("w003", MemberState::Suspect); // membership suspects it
    sim.run_for(Duration::from_millis(100)); // the next tick
    assert_eq!(
        sim.dispatcher
            .flights
            .values()
            .filter(|f| f.worker == "w003")
            .count(),
        0
    );
    sim.set_member("w003", MemberState::Failed); // and declares it failed
    sim.run_for(Duration::from_millis(100));
    let deaths = sim.serve("j").map(|s| s.deaths.clone()).unwrap_or_default();
    assert!(
        !deaths.is_empty(),
        "recorded against the batches it held, still pending"
    );
    assert!(deaths.iter().all(|d| d.workers == ["w003"]), "{deaths:?}");
    assert!(sim.run_to_end(&["j"], 120 * SECOND));
    all_counted_once(&sim, &["j"]);
    let s = sim.serve("j").expect("serve state");
    assert!(
        s.deaths.is_empty(),
        "deaths are cleared as their batches are counted"
    );
}

#[test]
fn a_new_coordinator_sends_the_recorded_batches_again_and_counts_each_once() {
    let mut sim = Sim::new(3, 3, 2);
    sim.submit("j", 1, 16, Some(4_000), 2.0);
    sim.run_for(SECOND);
    let pending = sim.serve("j").map_or(0, |s| s.pending.len());
    assert!(
        pending > 0,
        "batches in flight when the coordinator changes"
    );
    // The old coordinator is gone; another node takes the lease, with the records.
    let mut next = Dispatcher::new("w001", Config::default());
    next.set_coordinating(true);
    next.set_view(sim.dispatcher.view.clone());
    next.replace_jobs(sim.records.values());
    sim.dispatcher.set_coordinating(false);
    assert!(
        sim.dispatcher.tick(sim.now).is_empty(),
        "no longer coordinating: no action"
    );
    sim.dispatcher = next;
    assert!(sim.run_to_end(&["j"], 60 * SECOND));
    all_counted_once(&sim, &["j"]);
}

#[test]
fn a_cut_the_old_coordinator_lands_after_the_takeover_is_sent_and_counted_once() {
    let mut sim = Sim::new(3, 3, 2);
    sim.submit("j", 1, 16, Some(4_000), 2.0);
    sim.run_for(SECOND);
    let mut next = Dispatcher::new("w001", Config::default());
    next.set_coordinating(true);
    next.set_view(sim.dispatcher.view.clone());
    next.replace_jobs(sim.records.values());
    sim.dispatcher.set_coordinating(false);
    sim.dispatcher = next;
    sim.run_for(Duration::from_millis(300)); // the new coordinator took the job up
                                             // The deposed coordinator's cut, retried while its lease ran out, lands now: batches the
                                             // new one never read nor cut.
    let mut late = Vec::new();
    sim.change("j", |r| {
        if let Some(s) = r.serve.as_mut() {
            late = crate::batches::cut(s, 2);
        }
    });
    assert_eq!(late.len(), 2);
    assert!(sim.run_to_end(&["j"], 60 * SECOND), "{:?}", sim.serve("j"));
    all_counted_once(&sim, &["j"]);
}

#[test]
fn a_batch_size_change_applies_to_the_batches_cut_from_then_on() {
    let mut sim = Sim::new(2, 2, 1);
    sim.submit("j", 1, 32, Some(3_000), 1.0);
    sim.run_for(SECOND);
    let cut_before = sim.serve("j").map_or(0, |s| s.next_batch);
    sim.change("j", |r| {
        if let Some(s) = r.serve.as_mut() {
            s.batch = 8;
        }
    });
    assert!(sim.run_to_end(&["j"], 60 * SECOND));
    all_counted_once(&sim, &["j"]);
    let s = sim.serve("j").expect("serve state");
    let small = s.next_batch - cut_before;
    let left = 3_000 - cut_before * 32;
    assert!(small >= left / 8, "{small} batches of 8 after the change");
}

#[test]
fn a_cancelled_job_is_left_and_counts_nothing_more() {
    let mut sim = Sim::new(3, 3, 2);
    sim.submit("keep", 1, 16, None, 1.0);
    sim.submit("stop", 1, 16, None, 1.0);
    sim.run_for(2 * SECOND);
    sim.change("stop", |r| r.state = JobState::Cancelled);
    let done = sim.serve("stop").map_or(0, |s| s.done);
    sim.run_for(2 * SECOND);
    assert_eq!(sim.serve("stop").map_or(0, |s| s.done), done);
    assert!(
        sim.dispatcher.workers_of("stop").is_none(),
        "no longer dispatched"
    );
    assert!(sim.dispatcher.flights.values().all(|f| f.job == "keep"));
    assert!(
        rate(&sim, "keep", 1) > 0.0,
        "the other job takes every worker"
    );
}

#[test]
fn a_job_no_worker_can_serve_fails_and_a_bad_model_fails_at_once() {
    let mut sim = Sim::new(2, 2, 1);
    for w in ["w000", "w001"] {
        sim.worker(w).expect("a worker").refuse = Refusal::lasting("no space");
    }
    sim.submit("full", 1, 16, Some(100), 1.0);
    assert!(sim.run_to_end(&["full"], 10 * SECOND));
    let r = sim.record("full").expect("a record");
    assert_eq!(r.state, JobState::Failed);
    assert_eq!(r.error.as_deref(), Some("no worker can serve it: no space"));
    sim.worker("w001").expect("a worker").refuse = Refusal::bad_input("corrupt model");
    sim.worker("w000").expect("a worker").refuse = None;
    sim.submit("bad", 1, 16, Some(100), 1.0);
    assert!(sim.run_to_end(&["bad"], 10 * SECOND));
    let r = sim.record("bad").expect("a record");
    assert_eq!(r.error.as_deref(), Some("cannot be served: corrupt model"));
}

#[test]
fn a_job_every_worker_refuses_for_a_passing_reason_waits_and_then_runs() {
    let mut sim = Sim::new(2, 2, 1);
    for w in ["w000", "w001"] {
        sim.worker(w).expect("a worker").refuse = Refusal::transient("file store: no answer");
    }
    sim.submit("wait", 1, 16, Some(100), 1.0);
    sim.run_for(30 * SECOND);
    let r = sim.record("wait").expect("a record");
    assert_eq!(r.state, JobState::Running, "{:?}", r.error);
    for w in ["w000", "w001"] {
        sim.worker(w).expect("a worker").refuse = None;
    }
    assert!(sim.run_to_end(&["wait"], 30 * SECOND));
    let r = sim.record("wait").expect("a record");
    assert_eq!(r.state, JobState::Succeeded);
}

#[test]
fn a_batch_lost_on_the_coordinator_goes_to_another_worker() {
    let mut sim = Sim::new(2, 2, 1);
    sim.submit("j", 1, 16, Some(2_000), 4.0);
    sim.run_for(SECOND);
    // The coordinator's own worker (w000) loses its batches: past their deadline.
    sim.worker("w000").expect("a worker").slow = 1000.0;
    sim.run_for(5 * SECOND);
    sim.worker("w000").expect("a worker").slow = 1.0;
    assert!(sim.run_to_end(&["j"], 60 * SECOND));
    all_counted_once(&sim, &["j"]);
    // A batch that may kill its worker never goes back to the coordinator.
    let mut lost_here = BTreeSet::new();
    for (_, batch, worker, again) in &sim.log.sends {
        if *again && worker == "w000" {
            assert!(
                !lost_here.contains(batch),
                "batch {batch} sent to the coordinator again"
            );
        }
        if worker == "w000" {
            lost_here.insert(*batch);
        }
    }
    assert!(
        sim.log.sends.iter().any(|s| s.3),
        "some batch was sent again"
    );
}
