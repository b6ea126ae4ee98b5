//! The detector on simulated clusters: detection, refutation, loss, cost.

use super::sim::{Sim, STEP};
use super::*;
use bus_schemas::membership::MemberEventKind;
use std::time::Duration;

#[test]
fn a_healthy_cluster_stays_alive_and_agrees() {
    let mut sim = Sim::new(5, 1);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.count(MemberEventKind::Suspect), 0);
    let digest = sim.nodes[0].view().digest();
    for node in &sim.nodes {
        assert_eq!(node.view().digest(), digest);
        assert_eq!(
            node.view()
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .count(),
            5
        );
    }
}

#[test]
fn a_crashed_node_is_failed_everywhere_quickly() {
    let mut sim = Sim::new(5, 2);
    sim.run_for(Duration::from_secs(3));
    sim.down.insert(3);
    let took = sim.until_all_see(3, MemberState::Failed, Duration::from_secs(3));
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    assert_eq!(sim.count(MemberEventKind::Fail), 1);
}

#[test]
fn three_simultaneous_crashes_are_all_detected() {
    let mut sim = Sim::new(5, 3);
    sim.run_for(Duration::from_secs(3));
    sim.down.extend([1, 2, 4]);
    for dead in [1, 2, 4] {
        sim.until_all_see(dead, MemberState::Failed, Duration::from_secs(5));
    }
    assert_eq!(
        sim.nodes[0].view().get("n3").unwrap().state,
        MemberState::Alive
    );
}

#[test]
fn a_suspect_refutes_and_stays_alive() {
    let mut sim = Sim::new(5, 4);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let me = sim.nodes[2].me().clone();
    let suspect = sim.nodes[0].event(
        MemberEventKind::Suspect,
        &Member {
            state: MemberState::Suspect,
            ..me
        },
        now,
    );
    sim.route(0, vec![Output::Broadcast(suspect)]);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.count(MemberEventKind::Alive), 1);
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
    let seen = sim.nodes[4].view().get("n2").unwrap();
    assert_eq!((seen.state, seen.incarnation), (MemberState::Alive, 1));
}

#[test]
fn a_paused_node_is_failed_then_rejoins_and_blames_nobody() {
    let mut sim = Sim::new(5, 5);
    sim.run_for(Duration::from_secs(3));
    let old_generation = sim.nodes[1].me().generation;
    sim.paused.insert(1);
    sim.until_all_see(1, MemberState::Failed, Duration::from_secs(4));
    sim.run_for(Duration::from_secs(2));
    sim.paused.clear();
    for (to, d) in std::mem::take(&mut sim.held) {
        let out = sim.deliver(to, d);
        sim.route(to, out);
    }
    sim.until_all_see(1, MemberState::Alive, Duration::from_secs(3));
    let back = sim.nodes[0].view().get("n1").unwrap();
    assert!(back.generation > old_generation);
    // The same process: its start is the first generation, seen everywhere.
    assert_eq!(back.started_ms, Some(old_generation));
    sim.run_for(Duration::from_secs(5));
    let blamed: Vec<_> = sim
        .events
        .iter()
        .filter(|e| e.kind == MemberEventKind::Fail)
        .collect();
    assert_eq!(blamed.len(), 1, "{blamed:?}");
    assert_eq!(blamed[0].node, "n1");
}

#[test]
fn a_disconnected_node_declares_nobody_failed() {
    let mut sim = Sim::new(5, 6);
    sim.run_for(Duration::from_secs(3));
    sim.nodes[0].disconnected();
    sim.down.insert(0);
    sim.until_all_see(0, MemberState::Failed, Duration::from_secs(3));
    // The cut-off node keeps ticking but neither probes nor declares anything.
    sim.down.remove(&0);
    for _ in 0..300 {
        let now = sim.now;
        let out = sim.nodes[0].tick(now);
        assert!(out.is_empty(), "a cut-off node sent {out:?}");
        sim.now.mono += STEP;
        sim.now.wall_ms += 10;
    }
    let now = sim.now;
    let out = sim.nodes[0].reconnected(now);
    sim.route(0, out);
    sim.until_all_see(0, MemberState::Alive, Duration::from_secs(3));
    sim.run_for(Duration::from_secs(4));
    assert_eq!(sim.count(MemberEventKind::Fail), 1);
}

#[test]
fn a_node_suspected_while_reconnecting_refutes_at_once() {
    let mut sim = Sim::new(5, 16);
    sim.run_for(Duration::from_secs(3));
    // Its server restarts: n0 hears nothing until someone suspects it.
    sim.nodes[0].disconnected();
    sim.down.insert(0);
    sim.until_all_see(0, MemberState::Suspect, Duration::from_secs(3));
    sim.down.remove(&0);
    // Back on another server, before its view is synced: the alive event alone refutes.
    let now = sim.now;
    let out = sim.nodes[0].reconnected(now);
    let alive = out.iter().any(|o| {
        matches!(o, Output::Broadcast(ev) if ev.kind == MemberEventKind::Alive && ev.incarnation > 0)
    });
    assert!(alive, "no alive event on reconnecting: {out:?}");
    let out = out
        .into_iter()
        .filter(|o| !matches!(o, Output::SyncWith(_)));
    sim.route(0, out.collect());
    sim.until_all_see(0, MemberState::Alive, Duration::from_millis(10));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
}

#[test]
fn a_node_paused_briefly_announces_it_is_alive() {
    let mut sim = Sim::new(3, 17);
    sim.run_for(Duration::from_secs(2));
    let before = sim.nodes[2].me().incarnation;
    sim.now.mono += Duration::from_millis(1500);
    sim.now.wall_ms += 1500;
    let now = sim.now;
    let out = sim.nodes[2].tick(now);
    let alive = out.iter().any(|o| {
        matches!(o, Output::Broadcast(ev) if ev.kind == MemberEventKind::Alive && ev.incarnation > before)
    });
    assert!(alive, "no alive event after a pause: {out:?}");
}

#[test]
fn three_percent_loss_gives_no_false_positives() {
    let mut sim = Sim::new(5, 7);
    sim.loss = 0.03;
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
}

#[test]
fn thirty_percent_loss_is_refuted_not_failed() {
    let mut sim = Sim::new(5, 8);
    sim.loss = 0.3;
    sim.run_for(Duration::from_secs(60));
    assert!(sim.count(MemberEventKind::Suspect) > 0);
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
}

#[test]
fn cost_per_node_does_not_grow_with_cluster_size() {
    let per_node = |n: usize| {
        let mut sim = Sim::new(n, 9);
        sim.fd_sent = vec![0; n];
        sim.run_for(Duration::from_secs(20));
        sim.fd_sent.iter().sum::<u64>() as f64 / n as f64
    };
    let (small, large) = (per_node(5), per_node(40));
    assert!(
        large < small * 1.2 && large > small * 0.8,
        "{small} vs {large}"
    );
}

#[test]
fn a_left_node_stops_probing_and_can_rejoin() {
    let mut sim = Sim::new(4, 10);
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let out = sim.nodes[3].leave(now);
    sim.route(3, out);
    sim.until_all_see(3, MemberState::Left, Duration::from_millis(10));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.count(MemberEventKind::Fail), 0);
    let now = sim.now;
    let out = sim.nodes[3].rejoin(now);
    sim.route(3, out);
    sim.until_all_see(3, MemberState::Alive, Duration::from_millis(10));
}
