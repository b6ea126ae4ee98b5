//! Forged and implausible membership messages: refused, refuted, bounded, forgotten.

use super::sim::Sim;
use super::*;
use bus_schemas::membership::plausible::MAX_INCARNATION;
use bus_schemas::membership::MemberRecord;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(5);

/// An event about node `i` of the sim as a forger would publish it.
fn forged(sim: &Sim, i: usize, kind: MemberEventKind, generation: u64) -> MemberEvent {
    let me = sim.nodes[i].me();
    MemberEvent {
        started_ms: None,
        kind,
        node: me.id.clone(),
        generation,
        incarnation: me.incarnation,
        host: me.host.clone(),
        zone: me.zone.clone(),
        http: None,
        reporter: "mallory".into(),
        at_ms: sim.now.wall_ms,
    }
}

fn generation_of(sim: &Sim, i: usize) -> u64 {
    sim.nodes[i].me().generation
}

fn skew_ms() -> u64 {
    DetectorConfig::default().max_clock_skew.as_millis() as u64
}

/// Every node sees every node alive, with the generation node `i` holds itself.
fn all_alive_and_agreed(sim: &Sim) {
    for n in &sim.nodes {
        for m in &sim.nodes {
            let seen = n.view().get(&m.me().id).expect("every node known");
            assert_eq!(
                seen.state,
                MemberState::Alive,
                "{} of {}",
                n.me().id,
                seen.id
            );
            assert_eq!(seen.generation, m.me().generation, "{}", seen.id);
        }
    }
}

#[test]
fn a_forged_fail_of_the_current_generation_is_refuted_everywhere() {
    let mut sim = Sim::new(3, 21);
    sim.run_for(Duration::from_secs(2));
    let old = generation_of(&sim, 1);
    let ev = forged(&sim, 1, MemberEventKind::Fail, old);
    sim.inject(ev);
    sim.until_all_see(1, MemberState::Alive, Duration::from_secs(1));
    assert!(generation_of(&sim, 1) > old);
    sim.run_for(SETTLE);
    all_alive_and_agreed(&sim);
}

#[test]
fn forged_generations_far_ahead_are_refused_and_change_nothing() {
    let mut sim = Sim::new(3, 22);
    sim.run_for(Duration::from_secs(2));
    let old = generation_of(&sim, 1);
    let digests: Vec<u64> = sim.nodes.iter().map(|n| n.view().digest()).collect();
    let day_ahead = sim.now.wall_ms + 86_400_000;
    for generation in [u64::MAX, day_ahead, sim.now.wall_ms + skew_ms() + 1] {
        for kind in [
            MemberEventKind::Fail,
            MemberEventKind::Leave,
            MemberEventKind::Join,
        ] {
            let before = sim.refused;
            sim.inject(forged(&sim, 1, kind, generation));
            assert_eq!(
                sim.refused,
                before + 3,
                "every node refuses {kind:?} {generation}"
            );
        }
    }
    let after: Vec<u64> = sim.nodes.iter().map(|n| n.view().digest()).collect();
    assert_eq!(digests, after);
    assert_eq!(generation_of(&sim, 1), old, "no outrunning into the future");
    sim.run_for(SETTLE);
    all_alive_and_agreed(&sim);
}

#[test]
fn a_forged_fail_within_the_skew_is_outrun_by_a_plausible_generation() {
    for ahead in [60_000, skew_ms()] {
        let mut sim = Sim::new(3, 23);
        sim.run_for(Duration::from_secs(2));
        let forged_gen = sim.now.wall_ms + ahead;
        sim.inject(forged(&sim, 2, MemberEventKind::Fail, forged_gen));
        assert_eq!(generation_of(&sim, 2), forged_gen + 1);
        // At the very edge of the skew peers refuse the rejoin for a millisecond, then learn
        // it from the view sync their digests ask for.
        sim.until_all_see(2, MemberState::Alive, Duration::from_secs(6));
        sim.run_for(SETTLE);
        all_alive_and_agreed(&sim);
    }
}

#[test]
fn a_suspicion_at_the_maximum_incarnation_is_refuted_with_a_new_generation() {
    let mut sim = Sim::new(3, 24);
    sim.run_for(Duration::from_secs(2));
    let old = generation_of(&sim, 0);
    let mut ev = forged(&sim, 0, MemberEventKind::Suspect, old);
    ev.incarnation = u64::MAX;
    let before = sim.refused;
    sim.inject(ev.clone());
    assert_eq!(sim.refused, before + 3);
    ev.incarnation = MAX_INCARNATION;
    sim.inject(ev);
    assert!(generation_of(&sim, 0) > old);
    assert_eq!(sim.nodes[0].me().incarnation, 0);
    sim.until_all_see(0, MemberState::Alive, Duration::from_secs(1));
    sim.run_for(SETTLE);
    all_alive_and_agreed(&sim);
}

#[test]
fn ids_that_are_not_tokens_and_oversized_fields_are_refused() {
    let mut sim = Sim::new(3, 25);
    sim.run_for(Duration::from_secs(1));
    let digest = sim.nodes[0].view().digest();
    let base = forged(&sim, 1, MemberEventKind::Join, sim.now.wall_ms);
    let bad = [
        MemberEvent {
            node: "n1.>".into(),
            ..base.clone()
        },
        MemberEvent {
            reporter: "a b".into(),
            ..base.clone()
        },
        MemberEvent {
            host: "h".repeat(1_000_000),
            ..base.clone()
        },
        MemberEvent {
            http: Some("javascript:alert(1)".into()),
            ..base.clone()
        },
    ];
    for ev in bad {
        let out = sim.nodes[0].handle_event(&ev, sim.now);
        assert!(matches!(out.as_slice(), [Output::Refused(_)]), "{out:?}");
    }
    let record = MemberRecord {
        started_ms: None,
        id: "x".repeat(65),
        generation: 1,
        incarnation: 0,
        state: MemberState::Alive,
        host: String::new(),
        zone: None,
        http: None,
        last_heard_ms: None,
    };
    let out = sim.nodes[0].merge_records("n1", &[record], sim.now);
    assert!(matches!(out.as_slice(), [Output::Refused(_)]), "{out:?}");
    let ping = FdMessage::Ping {
        from: "*".into(),
        from_generation: 1,
        seq: 1,
        digest: 0,
    };
    let out = sim.nodes[0].handle_fd(ping, sim.now);
    assert!(matches!(out.as_slice(), [Output::Refused(_)]), "{out:?}");
    assert_eq!(sim.nodes[0].view().digest(), digest);
}

fn small_config() -> DetectorConfig {
    DetectorConfig {
        max_members: 16,
        forget_after: Duration::from_secs(5),
        ..DetectorConfig::default()
    }
}

#[test]
fn a_flood_of_fake_joins_is_capped_then_failed_and_forgotten() {
    let mut sim = Sim::with_config(3, 26, small_config());
    sim.run_for(Duration::from_secs(1));
    for i in 0..200 {
        let mut ev = forged(&sim, 0, MemberEventKind::Join, sim.now.wall_ms);
        ev.node = format!("fake{i}");
        sim.inject(ev);
    }
    for n in &sim.nodes {
        assert_eq!(n.view().len(), 16);
    }
    assert_eq!(sim.refused, 3 * (200 - 13));
    // Fakes never answer: probed, suspected, failed, then forgotten.
    sim.run_for(Duration::from_secs(30));
    for n in &sim.nodes {
        assert_eq!(n.view().len(), 3, "{:?}", n.view().records(sim.now.mono));
        assert!(n.stats().forgotten >= 13);
    }
    all_alive_and_agreed(&sim);
}

#[test]
fn a_forgotten_member_is_not_resurrected_by_a_stale_view() {
    let mut sim = Sim::with_config(3, 27, small_config());
    sim.run_for(Duration::from_secs(1));
    let stale = sim.nodes[1].view().records(sim.now.mono);
    sim.down.insert(2);
    sim.until_all_see(2, MemberState::Failed, Duration::from_secs(3));
    sim.run_for(Duration::from_secs(6));
    assert!(sim.nodes[0].view().get("n2").is_none(), "forgotten");
    let now = sim.now;
    sim.nodes[0].merge_records("n1", &stale, now);
    assert!(sim.nodes[0].view().get("n2").is_none(), "a tombstone holds");
    assert_eq!(sim.nodes[0].view().len(), 2);
}

#[test]
fn generations_and_incarnations_saturate_instead_of_overflowing() {
    let now = Now {
        mono: Instant::now(),
        wall_ms: u64::MAX,
    };
    let rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mut d = Detector::new(DetectorConfig::default(), "n0", "h", None, None, rng, now);
    let mut ev = MemberEvent {
        started_ms: None,
        kind: MemberEventKind::Fail,
        node: "n0".into(),
        generation: u64::MAX,
        incarnation: MAX_INCARNATION,
        host: String::new(),
        zone: None,
        http: None,
        reporter: "n1".into(),
        at_ms: 0,
    };
    d.handle_event(&ev, now);
    ev.kind = MemberEventKind::Suspect;
    d.handle_event(&ev, now);
    d.leave(now);
    d.rejoin(now);
    assert!(d.is_member());
    assert_eq!((d.me().generation, d.me().incarnation), (u64::MAX, 0));
}
