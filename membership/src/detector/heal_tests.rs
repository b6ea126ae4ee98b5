//! A cut and healed partition on the simulated cluster: the larger side carries on, the
//! smaller side's nodes rejoin, and every view agrees again.

use super::sim::Sim;
use super::*;

/// Every node's generation as node `observer` sees it.
fn generations(sim: &Sim, observer: usize) -> Vec<u64> {
    (0..sim.nodes.len())
        .map(|i| {
            sim.nodes[observer]
                .view()
                .get(&format!("n{i}"))
                .map_or(0, |m| m.generation)
        })
        .collect()
}

/// Whether every node sees every node alive.
fn all_alive(sim: &Sim) -> bool {
    let n = sim.nodes.len();
    (0..n).all(|o| {
        (0..n).all(|t| {
            let m = sim.nodes[o].view().get(&format!("n{t}"));
            m.is_some_and(|m| m.state == MemberState::Alive)
        })
    })
}

#[test]
fn the_smaller_side_of_a_healed_partition_rejoins_and_the_larger_carries_on() {
    for seed in 0..5 {
        let mut sim = Sim::new(6, 500 + seed);
        sim.run_for(Duration::from_secs(2));
        assert!(all_alive(&sim), "seed {seed}: a settled cluster");
        let before = generations(&sim, 0);
        sim.cut.extend([4, 5]);
        sim.run_for(Duration::from_secs(5));
        for (o, t) in [(0, 4), (3, 5), (4, 0), (5, 3)] {
            let m = sim.nodes[o].view().get(&format!("n{t}")).map(|m| m.state);
            assert_eq!(m, Some(MemberState::Failed), "seed {seed}: n{o} sees n{t}");
        }
        sim.cut.clear();
        let mut waited = Duration::ZERO;
        while !all_alive(&sim) {
            assert!(
                waited < Duration::from_secs(10),
                "seed {seed}: views disagree"
            );
            sim.run_for(Duration::from_millis(100));
            waited += Duration::from_millis(100);
        }
        let after = generations(&sim, 0);
        assert_eq!(
            after[..4],
            before[..4],
            "seed {seed}: the larger side did not rejoin"
        );
        assert!(
            after[4] > before[4] && after[5] > before[5],
            "seed {seed}: the cut-off rejoined"
        );
        for o in 1..6 {
            assert_eq!(generations(&sim, o), after, "seed {seed}: n{o} agrees");
        }
    }
}

#[test]
fn a_failed_member_news_of_others_is_ignored() {
    let mut sim = Sim::new(4, 77);
    sim.run_for(Duration::from_secs(2));
    sim.down.insert(3);
    sim.until_all_see(3, MemberState::Failed, Duration::from_secs(5));
    let n1 = sim.nodes[0].view().get("n1").cloned().unwrap();
    let forged = MemberEvent {
        started_ms: None,
        kind: MemberEventKind::Fail,
        node: "n1".into(),
        generation: n1.generation,
        incarnation: n1.incarnation,
        host: "h".into(),
        zone: None,
        http: None,
        reporter: "n3".into(),
        at_ms: sim.now.wall_ms,
    };
    let now = sim.now;
    assert!(sim.nodes[0].handle_event(&forged, now).is_empty());
    let state = sim.nodes[0].view().get("n1").map(|m| m.state);
    assert_eq!(state, Some(MemberState::Alive));
}
