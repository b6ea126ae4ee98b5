//! Membership with a real nats-server and real node processes.

use bus_schemas::membership::{MemberEvent, MemberEventKind, MemberState};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use testkit::{holds_for, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const LIMIT: Duration = Duration::from_secs(15);

async fn cluster(n: usize) -> Cluster {
    Cluster::start(Path::new(NODE), n).await
}

fn others<'a>(ids: &'a [String], not: &[&str]) -> Vec<&'a str> {
    ids.iter()
        .map(String::as_str)
        .filter(|i| !not.contains(i))
        .collect()
}

#[tokio::test]
async fn a_killed_node_is_marked_failed_by_every_other_node() {
    let mut c = cluster(5).await;
    c.node("n3").kill9();
    let ids = c.ids();
    let watchers = others(&ids, &["n3"]);
    wait_until("n3 failed everywhere", LIMIT, || async {
        c.all_see(&watchers, "n3", MemberState::Failed, None)
            .await
            .then_some(())
    })
    .await;
    for w in &watchers {
        for t in &watchers {
            assert_eq!(
                c.seen(w, t).await.unwrap().state,
                MemberState::Alive,
                "{w} sees {t}"
            );
        }
    }
}

#[tokio::test]
async fn three_simultaneous_kills_are_all_detected() {
    let mut c = cluster(5).await;
    for id in ["n1", "n2", "n4"] {
        c.node(id).kill9();
    }
    wait_until("n1, n2 and n4 failed on n3 and n5", LIMIT, || async {
        for dead in ["n1", "n2", "n4"] {
            if !c
                .all_see(&["n3", "n5"], dead, MemberState::Failed, None)
                .await
            {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn a_terminated_node_is_marked_left_never_failed() {
    let mut c = cluster(5).await;
    let mut events = c.client.subscribe(subjects::member_events()).await.unwrap();
    c.client.flush().await.unwrap();
    c.node("n2").terminate();
    assert_eq!(c.node("n2").wait_exit(Duration::from_secs(10)), Some(true));
    let ids = c.ids();
    let watchers = others(&ids, &["n2"]);
    wait_until("n2 left everywhere", LIMIT, || async {
        c.all_see(&watchers, "n2", MemberState::Left, None)
            .await
            .then_some(())
    })
    .await;
    holds_for("n2 stays left", Duration::from_secs(3), || async {
        c.all_see(&watchers, "n2", MemberState::Left, None).await
    })
    .await;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        let ev: MemberEvent = decode(&msg.payload).unwrap();
        assert!(
            ev.kind != MemberEventKind::Fail && ev.kind != MemberEventKind::Suspect,
            "{ev:?}"
        );
    }
}

#[tokio::test]
async fn a_restarted_node_rejoins_with_a_new_generation() {
    let mut c = cluster(5).await;
    let old = c.seen("n1", "n4").await.unwrap().generation;
    c.node("n4").kill9();
    let ids = c.ids();
    let watchers = others(&ids, &["n4"]);
    wait_until("n4 failed", LIMIT, || async {
        c.all_see(&watchers, "n4", MemberState::Failed, None)
            .await
            .then_some(())
    })
    .await;
    let restarted = c.spawn_node("n4");
    *c.node("n4") = restarted;
    wait_until("n4 back with a new generation", LIMIT, || async {
        c.all_see(&watchers, "n4", MemberState::Alive, Some(old))
            .await
            .then_some(())
    })
    .await;
    c.wait_all_alive(LIMIT).await;
}

#[tokio::test]
async fn a_frozen_node_is_suspected_then_failed_and_rejoins_after_thawing() {
    let mut c = cluster(5).await;
    let mut events = c.client.subscribe(subjects::member_events()).await.unwrap();
    c.client.flush().await.unwrap();
    let old = c.seen("n1", "n5").await.unwrap().generation;
    c.node("n5").freeze();
    let ids = c.ids();
    let watchers = others(&ids, &["n5"]);
    wait_until("n5 failed", LIMIT, || async {
        c.all_see(&watchers, "n5", MemberState::Failed, None)
            .await
            .then_some(())
    })
    .await;
    let mut kinds = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        let ev: MemberEvent = decode(&msg.payload).unwrap();
        if ev.node == "n5" {
            kinds.push(ev.kind);
        }
    }
    let suspect = kinds.iter().position(|k| *k == MemberEventKind::Suspect);
    let fail = kinds.iter().position(|k| *k == MemberEventKind::Fail);
    assert!(
        suspect.is_some() && fail.is_some() && suspect < fail,
        "{kinds:?}"
    );
    c.node("n5").thaw();
    wait_until("n5 rejoined with a new generation", LIMIT, || async {
        c.all_see(&watchers, "n5", MemberState::Alive, Some(old))
            .await
            .then_some(())
    })
    .await;
    c.wait_all_alive(LIMIT).await;
}

#[tokio::test]
async fn restarting_the_nats_server_makes_nobody_declare_anybody_failed() {
    let mut c = cluster(5).await;
    c.nats.restart();
    let client = async_nats::connect(c.nats.url()).await.unwrap();
    c.client = client;
    c.wait_all_alive(LIMIT).await;
    let ids = c.ids();
    holds_for(
        "everybody alive everywhere",
        Duration::from_secs(6),
        || async {
            for o in &ids {
                let Some(view) = c.view(o).await else {
                    return false;
                };
                if view.iter().any(|m| m.state != MemberState::Alive) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for id in &ids {
        let stats = c.stats(id).await.unwrap();
        assert_eq!(stats.failures_detected, 0, "{id}");
    }
}
