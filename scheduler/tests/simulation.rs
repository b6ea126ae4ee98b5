//! The dispatcher at scale, deterministic: 200 workers on 20 hosts serve 50 inference jobs of
//! different weights and costs while workers are killed (membership suspects them, declares
//! them failed, and they start again) and others hang. Fair share holds within 5%, every query
//! is counted exactly once, and the dispatcher's decisions per second are reported.
//! `cargo test --release -p idunno-scheduler --test simulation -- --nocapture` prints the figures.

use bus_schemas::jobs::JobState;
use bus_schemas::membership::MemberState;
use idunno_scheduler::sim::Sim;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

const WORKERS: usize = 200;
const JOBS: usize = 50;
const SECOND: Duration = Duration::from_secs(1);

/// A failure planned at a simulated second.
enum Trouble {
    /// Killed; suspected 1 s later, declared failed 3 s later, started again 8 s later.
    Kill(String),
    /// Hung for 2 s (membership says nothing).
    Hang(String),
}

fn plan(seed: u64, seconds: u64) -> Vec<(u64, Trouble)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan = Vec::new();
    for s in 2..seconds {
        let w = format!("w{:03}", rng.random_range(1..WORKERS));
        plan.push((s, Trouble::Kill(w)));
        if s % 5 == 0 {
            let w = format!("w{:03}", rng.random_range(1..WORKERS));
            plan.push((s, Trouble::Hang(w)));
        }
    }
    plan
}

/// Runs one simulated second, applying what happens at second `s` and the follow-ups of
/// earlier failures.
fn second(sim: &mut Sim, s: u64, plan: &[(u64, Trouble)]) {
    for (at, trouble) in plan {
        match trouble {
            Trouble::Kill(w) if *at == s => sim.worker(w).into_iter().for_each(|w| w.kill()),
            Trouble::Kill(w) if *at + 1 == s => sim.set_member(w, MemberState::Suspect),
            Trouble::Kill(w) if *at + 3 == s => sim.set_member(w, MemberState::Failed),
            Trouble::Kill(w) if *at + 8 == s => sim.restart(w),
            Trouble::Hang(w) if *at == s => sim.worker(w).into_iter().for_each(|w| w.hang(true)),
            Trouble::Hang(w) if *at + 2 == s => {
                sim.worker(w).into_iter().for_each(|w| w.hang(false))
            }
            _ => {}
        }
    }
    sim.run_for(SECOND);
}

#[test]
fn two_hundred_workers_fifty_jobs_random_failures_fair_and_counted_once() {
    let mut sim = Sim::new(WORKERS, 20, 2);
    let ids: Vec<String> = (0..JOBS).map(|i| format!("job{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let weight = 1 + (i % 3) as u32;
        let ms_per_query = [10.0, 20.0, 40.0][i / 3 % 3];
        // Long enough that every job still runs through the measured window.
        sim.submit(
            id,
            weight,
            64,
            Some(u64::from(weight) * 40_000),
            ms_per_query,
        );
    }
    let plan = plan(7, 80);
    let (from, to) = (20, 60);
    for s in 0..to {
        second(&mut sim, s, &plan);
    }
    let at = |s: u64| sim.start + Duration::from_secs(s);
    let window = (at(from), at(to));
    let per_weight: Vec<f64> = (ids.iter().enumerate())
        .map(|(i, id)| sim.counted_between(id, window.0, window.1) as f64 / (1 + i % 3) as f64)
        .collect();
    for id in &ids {
        let r = sim.record(id).expect("a record");
        if std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!(
                "{id} {:?} done {:?} next_batch {:?}",
                r.state,
                r.serve.as_ref().map(|s| s.done),
                r.serve.as_ref().map(|s| s.next_batch)
            );
            continue;
        }
        assert_eq!(
            r.state,
            JobState::Running,
            "{id} runs through the window: {:?}",
            r.error
        );
    }
    let mean = per_weight.iter().sum::<f64>() / per_weight.len() as f64;
    if std::env::var_os("SIM_DEBUG").is_some() {
        for (i, x) in per_weight.iter().enumerate() {
            let resent = sim
                .log
                .sends
                .iter()
                .filter(|s| s.0 == ids[i] && s.3)
                .count();
            eprintln!(
                "{} w{} c{} {:.0} ({:+.1}%) resent {resent}",
                ids[i],
                1 + i % 3,
                [10, 20, 40][i / 3 % 3],
                x,
                (x / mean - 1.0) * 100.0
            );
        }
    }
    let error = (per_weight.iter())
        .map(|x| (x / mean - 1.0).abs())
        .fold(0.0, f64::max);
    for s in to..80 {
        second(&mut sim, s, &plan);
    }
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    let ended = sim.run_to_end(&names, 600 * SECOND);
    let stats = sim.dispatcher.stats();
    let core = sim.log.core_time.as_secs_f64();
    println!(
        "scheduler simulation: {WORKERS} workers, {JOBS} jobs, {} failures: fair-share error {:.2}% \
         (queries per weight in {from}-{to} s, mean {mean:.0}); {} batches sent ({} again after \
         a loss), {} counted; {} inputs in {core:.3} s of dispatcher time: {:.0} decisions/s, \
         {:.0} batches sent/s; simulated {:.0} s",
        plan.len(),
        error * 100.0,
        stats.sent,
        stats.resent,
        sim.log.counts.len(),
        sim.log.inputs,
        sim.log.inputs as f64 / core,
        stats.sent as f64 / core,
        (sim.now - sim.start).as_secs_f64(),
    );
    assert!(error < 0.05, "fair-share error {:.2}%", error * 100.0);
    assert!(ended, "every job ends");
    assert!(sim.counted_twice().is_empty(), "{:?}", sim.counted_twice());
    for id in &ids {
        let r = sim.record(id).expect("a record");
        let s = r.serve.as_ref().expect("serve state");
        assert_eq!(r.state, JobState::Succeeded, "{id}: {:?}", r.error);
        assert_eq!(
            (Some(s.done), s.correct),
            (s.total, s.total),
            "{id}: each query once"
        );
        let batches = s.next_batch as usize;
        let counted = (sim.log.counts.keys()).filter(|(j, _)| j == id).count();
        assert_eq!(counted, batches, "{id}: every batch counted, none lost");
    }
    assert!(stats.resent > 0, "failures made some batches go again");
}
