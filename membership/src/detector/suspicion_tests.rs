//! Suspicions on simulated clusters: a slow link is not a failure, a crash still is.

use super::sim::Sim;
use super::*;
use bus_schemas::membership::MemberEventKind;
use std::time::Duration;

/// Two halves; whatever the second sends the first arrives `lag` late (a busy route between
/// two servers, a starved server).
fn halves_with_a_slow_link(cfg: DetectorConfig, seed: u64, lag: Duration) -> Sim {
    let mut sim = Sim::with_config(4, seed, cfg);
    sim.run_for(Duration::from_secs(3));
    for from in [2, 3] {
        for to in [0, 1] {
            sim.lag.insert((from, to), lag);
        }
    }
    sim
}

#[test]
fn a_slow_link_raises_suspicions_but_fails_nobody() {
    for seed in 0..5 {
        let mut sim = halves_with_a_slow_link(DetectorConfig::default(), seed, ms(700));
        sim.run_for(Duration::from_secs(30));
        assert!(sim.count(MemberEventKind::Suspect) > 0, "seed {seed}");
        assert_eq!(sim.count(MemberEventKind::Fail), 0, "seed {seed}");
    }
}

#[test]
fn without_confirmations_the_same_slow_link_fails_live_nodes() {
    // The control: one fixed timeout, as before, fails nodes that were only slow to answer.
    let cfg = DetectorConfig {
        suspect_timeout_max: DetectorConfig::default().suspect_timeout,
        ..DetectorConfig::default()
    };
    let mut sim = halves_with_a_slow_link(cfg, 0, ms(700));
    sim.run_for(Duration::from_secs(30));
    assert!(sim.count(MemberEventKind::Fail) > 0);
}

#[test]
fn a_crash_is_confirmed_by_the_others_and_failed_fast() {
    let mut worst = Duration::ZERO;
    for seed in 0..40 {
        let mut sim = Sim::new(5, 100 + seed);
        sim.run_for(Duration::from_secs(3));
        sim.down.insert(3);
        let took = sim.until_all_see(3, MemberState::Failed, Duration::from_secs(5));
        worst = worst.max(took);
        let reporters: std::collections::HashSet<_> = (sim.events.iter())
            .filter(|e| e.kind == MemberEventKind::Suspect && e.node == "n3")
            .map(|e| e.reporter.clone())
            .collect();
        assert!(reporters.len() >= 2, "seed {seed}: {reporters:?}");
        assert_eq!(sim.count(MemberEventKind::Fail), 1, "seed {seed}");
    }
    assert!(worst <= Duration::from_millis(2000), "worst {worst:?}");
    eprintln!("worst detection of 40 crashes: {worst:?}");
}

#[test]
fn two_nodes_need_no_confirmation() {
    let mut sim = Sim::new(2, 7);
    sim.run_for(Duration::from_secs(2));
    sim.down.insert(1);
    let took = sim.until_all_see(1, MemberState::Failed, Duration::from_secs(3));
    let cfg = DetectorConfig::default();
    assert!(took <= cfg.period * 2 + cfg.suspect_timeout, "{took:?}");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
