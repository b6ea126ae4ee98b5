//! Forged membership traffic against a real 3-node cluster: implausible events and records are
//! refused and counted, a forged failure is refuted, fake joins are capped, failed and forgotten,
//! and no node is kept out.

use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::membership::plausible::{MAX_HOST_LEN, MAX_INCARNATION};
use bus_schemas::membership::{FdMessage, MemberEvent, MemberEventKind, MemberRecord, MemberState};
use bus_schemas::{encode, subjects, validate_token};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::{holds_for, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const LIMIT: Duration = Duration::from_secs(30);
const MAX_MEMBERS: usize = 64;
const DAY_MS: u64 = 86_400_000;
const SKEW_MS: u64 = 300_000;

async fn cluster() -> Cluster {
    let flags = ["--forget-after-ms", "3000", "--max-members", "64"];
    Cluster::start_with(Path::new(NODE), 3, &flags).await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn publish<M: bus_schemas::Message>(c: &Cluster, subject: String, msg: &M) {
    bus_client::publish(&c.client, subject, msg)
        .await
        .expect("publish");
}

/// An event about `node` as a forger publishes it.
fn forged(kind: MemberEventKind, node: &str, generation: u64, incarnation: u64) -> MemberEvent {
    MemberEvent {
        started_ms: None,
        kind,
        node: node.into(),
        generation,
        incarnation,
        host: "vm".into(),
        zone: None,
        http: None,
        reporter: "mallory".into(),
        at_ms: now_ms(),
    }
}

async fn generation(c: &Cluster, id: &str) -> u64 {
    c.stats(id).await.expect("stats").generation
}

async fn refused(c: &Cluster, id: &str) -> u64 {
    c.stats(id).await.expect("stats").membership_refused
}

/// Waits until every node has refused at least `at_least` membership messages.
async fn wait_refused(c: &Cluster, at_least: u64) {
    wait_until(&format!("every node refused {at_least}"), LIMIT, || async {
        for id in c.ids() {
            if refused(c, &id).await < at_least {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// What no view may ever hold, whatever was sent.
fn sane(view: &[MemberRecord], now: u64) -> bool {
    view.len() <= MAX_MEMBERS
        && view.iter().all(|m| {
            validate_token(&m.id).is_ok()
                && m.host.len() <= MAX_HOST_LEN
                && m.generation <= now + SKEW_MS + 1000
                && m.incarnation <= MAX_INCARNATION
        })
}

async fn all_sane(c: &Cluster) -> bool {
    for id in c.ids() {
        match c.view(&id).await {
            Some(view) if sane(&view, now_ms()) => {}
            _ => return false,
        }
    }
    true
}

/// Makes n1 sync its view with a forged peer `mallory`, which answers with `records`.
async fn feed_records(c: &Cluster, records: Vec<MemberRecord>) {
    let mut ctl = c
        .client
        .subscribe(subjects::node_control_all("mallory"))
        .await
        .unwrap();
    c.client.flush().await.unwrap();
    let reply = ControlReply::Members {
        node: "mallory".into(),
        coordinator: None,
        members: records,
    };
    let payload = encode(&reply).unwrap();
    // A ping whose digest differs from n1's makes n1 fetch the sender's view.
    let ping = FdMessage::Ping {
        from: "mallory".into(),
        from_generation: now_ms(),
        seq: 1,
        digest: 42,
    };
    let deadline = Instant::now() + LIMIT;
    let request = loop {
        publish(c, subjects::member_fd("n1"), &ping).await;
        let wait = tokio::time::timeout(Duration::from_millis(500), ctl.next()).await;
        if let Ok(Some(msg)) = wait {
            break msg;
        }
        assert!(
            Instant::now() < deadline,
            "n1 never asked mallory for its view"
        );
    };
    let req: ControlRequest = bus_schemas::decode(&request.payload).unwrap();
    assert_eq!(req, ControlRequest::Members);
    let to = request.reply.expect("a request has a reply subject");
    c.client.publish(to, payload.into()).await.unwrap();
}

#[tokio::test]
async fn forged_membership_traffic_neither_evicts_nor_grows_anything() {
    let mut c = cluster().await;
    let old = generation(&c, "n2").await;

    // 1. Implausible events: refused by every node, and n2 does not outrun into the future.
    let implausible = [
        forged(MemberEventKind::Fail, "n2", u64::MAX, 0),
        forged(MemberEventKind::Fail, "n2", now_ms() + DAY_MS, 0),
        forged(MemberEventKind::Leave, "n2", now_ms() + DAY_MS, 0),
        forged(
            MemberEventKind::Suspect,
            "n1",
            generation(&c, "n1").await,
            u64::MAX,
        ),
        MemberEvent {
            host: "h".repeat(1_000_000),
            ..forged(MemberEventKind::Join, "big", now_ms(), 0)
        },
        forged(MemberEventKind::Join, "not.a.token", now_ms(), 0),
        forged(MemberEventKind::Fail, "n3", now_ms(), u64::MAX),
    ];
    for ev in &implausible {
        publish(&c, subjects::member_events(), ev).await;
    }
    wait_refused(&c, implausible.len() as u64).await;
    assert_eq!(
        generation(&c, "n2").await,
        old,
        "no generation from the future"
    );
    holds_for(
        "all alive after implausible events",
        Duration::from_secs(3),
        || c.everyone_alive(),
    )
    .await;

    // 2. A forged failure of n2's current generation: n2 refutes with a new generation.
    publish(
        &c,
        subjects::member_events(),
        &forged(MemberEventKind::Fail, "n2", old, 0),
    )
    .await;
    c.wait_seen(
        &["n1", "n2", "n3"],
        "n2",
        MemberState::Alive,
        Some(old),
        LIMIT,
    )
    .await;
    let new = generation(&c, "n2").await;
    assert!(new > old && new <= now_ms() + 1000, "{old} -> {new}");

    // 3. Forged records in a view sync: the implausible ones are refused.
    let before = refused(&c, "n1").await;
    let record = |id: &str, generation: u64, incarnation: u64, state: MemberState| MemberRecord {
        started_ms: None,
        id: id.into(),
        generation,
        incarnation,
        state,
        host: "vm".into(),
        zone: None,
        http: None,
        last_heard_ms: None,
    };
    let records = vec![
        record("a.b", now_ms(), 0, MemberState::Alive),
        record(&"x".repeat(65), now_ms(), 0, MemberState::Alive),
        record("", now_ms(), 0, MemberState::Alive),
        record("n2", u64::MAX, 0, MemberState::Failed),
        record("n3", now_ms() + DAY_MS, 0, MemberState::Left),
        record(
            "n1",
            generation(&c, "n1").await,
            u64::MAX,
            MemberState::Suspect,
        ),
        MemberRecord {
            host: "h".repeat(500_000),
            ..record("big", now_ms(), 0, MemberState::Alive)
        },
        MemberRecord {
            http: Some("javascript:alert(1)".into()),
            ..record("link", now_ms(), 0, MemberState::Alive)
        },
    ];
    let bad = records.len() as u64;
    feed_records(&c, records).await;
    wait_until("n1 refused every forged record", LIMIT, || async {
        (refused(&c, "n1").await >= before + bad).then_some(())
    })
    .await;

    // 4. 2,000 joins with random ids: the view is capped, the rest refused, then the fakes
    // are failed and forgotten.
    for _ in 0..2000 {
        let id = format!("fake-{:016x}", rand::random::<u64>());
        let ev = forged(MemberEventKind::Join, &id, now_ms(), 0);
        publish(&c, subjects::member_events(), &ev).await;
    }
    c.client.flush().await.unwrap();
    // At least 2000 - 64 are refused, fewer if fakes already failed make room meanwhile.
    wait_refused(&c, 1500).await;
    assert!(all_sane(&c).await, "views stay bounded and plausible");
    holds_for(
        "all alive under fake members",
        Duration::from_secs(3),
        || async { c.everyone_alive().await && all_sane(&c).await },
    )
    .await;
    wait_until(
        "the fakes are forgotten everywhere",
        Duration::from_secs(90),
        || async {
            for id in c.ids() {
                if c.view(&id).await?.len() != 3 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    // Every node still runs, answers and sees every node alive; refusals were warned about
    // a few times, not once per message, and no forged field reached the log.
    for node in c.nodes.iter_mut() {
        assert!(node.is_running(), "{} died", node.id);
        let log = std::fs::read_to_string(node.data_dir.join("node.log")).unwrap();
        let warned = log.lines().filter(|l| l.contains("refused")).count();
        assert!((1..=10).contains(&warned), "{}: {warned} lines", node.id);
        assert!(log.lines().all(|l| l.len() < 4096), "{}", node.id);
    }
    holds_for("all alive at the end", Duration::from_secs(3), || {
        c.everyone_alive()
    })
    .await;
}

#[tokio::test]
async fn a_killed_node_is_forgotten_after_the_forget_time_and_can_come_back() {
    let mut c = cluster().await;
    let old = generation(&c, "n3").await;
    c.node("n3").kill9();
    c.wait_seen(&["n1", "n2"], "n3", MemberState::Failed, None, LIMIT)
        .await;
    wait_until("n3 is forgotten by n1 and n2", LIMIT, || async {
        for id in ["n1", "n2"] {
            let view = c.view(id).await?;
            if view.iter().any(|m| m.id == "n3") || view.len() != 2 {
                return None;
            }
        }
        Some(())
    })
    .await;
    // A restarted n3 joins again: its tombstone holds only its old generation.
    let restarted = c.spawn_node("n3");
    *c.node("n3") = restarted;
    c.wait_seen(
        &["n1", "n2", "n3"],
        "n3",
        MemberState::Alive,
        Some(old),
        LIMIT,
    )
    .await;
    c.wait_all_alive(LIMIT).await;
}
