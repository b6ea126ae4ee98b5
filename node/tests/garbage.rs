//! Garbage on every subject a node subscribes to: it stays up, counts it, and membership holds.

use bus_schemas::control::{ControlReply, ControlRequest};
use bus_schemas::membership::MemberState;
use bus_schemas::subjects;
use std::path::Path;
use std::time::Duration;
use testkit::{holds_for, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn garbage_payloads() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"not msgpack at all".to_vec(),
        vec![0xc1, 0xff, 0x00],
        vec![0x81, 0xa1, b'x', 0x01],
        // {"schema_version": 99, "type": "ping"}: a version from the future.
        vec![
            0x82, 0xae, b's', b'c', b'h', b'e', b'm', b'a', b'_', b'v', b'e', b'r', b's', b'i',
            b'o', b'n', 0x63, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'i', b'n', b'g',
        ],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
    ]
}

#[tokio::test]
async fn garbage_on_every_subject_is_counted_and_harmless() {
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let ids = c.ids();
    let mut subjects_hit = vec![
        subjects::member_events(),
        subjects::members_list(),
        subjects::sdfs_rpc("ls"),
    ];
    for id in &ids {
        subjects_hit.push(subjects::member_fd(id));
        subjects_hit.push(subjects::node_control(id, "stat"));
        subjects_hit.push(subjects::sdfs_store(id));
        subjects_hit.push(subjects::sdfs_read(id));
    }
    let payloads = garbage_payloads();
    for subject in &subjects_hit {
        for p in &payloads {
            c.client
                .publish(subject.clone(), p.clone().into())
                .await
                .unwrap();
        }
    }
    // A request with garbage gets a typed error back, not silence.
    let reply = c
        .client
        .request(
            subjects::node_control("n1", "stat"),
            b"junk".to_vec().into(),
        )
        .await
        .unwrap();
    let reply: ControlReply = bus_schemas::decode(&reply.payload).unwrap();
    assert!(matches!(reply, ControlReply::Error { .. }), "{reply:?}");
    wrong_operations_are_refused(&c).await;
    c.client.flush().await.unwrap();
    // Each node subscribes to its fd, control, store and read subjects and to the events.
    let per_node = payloads.len() as u64 * 5;
    wait_until(
        "every node counted its garbage",
        Duration::from_secs(10),
        || async {
            for id in &ids {
                let s = c.stats(id).await?;
                if s.garbage_dropped < per_node {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for node in c.nodes.iter_mut() {
        assert!(node.is_running(), "{} died", node.id);
    }
    holds_for("membership stays correct", Duration::from_secs(3), || {
        c.everyone_alive()
    })
    .await;
    c.node("n2").kill9();
    let watchers = ["n1", "n3", "n4", "n5"];
    c.wait_seen(
        &watchers,
        "n2",
        MemberState::Failed,
        None,
        Duration::from_secs(15),
    )
    .await;
    let stat = c.control("n1", ControlRequest::Stat).await;
    assert!(matches!(stat, Some(ControlReply::Stats { .. })));
}

/// A valid request sent on another operation's subject (a `leave` on `…ctl.stat`, a `del_dir`
/// on `…sdfs.rpc.ls`, a `cancel` on `…jobs.rpc.list`) would slip past NATS permissions that
/// allow only that operation: nodes refuse it as a bad request and do nothing.
async fn wrong_operations_are_refused(c: &Cluster) {
    use bus_schemas::jobs::{JobsErrorKind, JobsReply, JobsRequest};
    use bus_schemas::sdfs::{SdfsErrorKind, SdfsReply, SdfsRequest};
    let wait = Duration::from_secs(5);
    let leave = ControlRequest::Leave;
    let reply: ControlReply = bus_client::request(
        &c.client,
        subjects::node_control("n1", "stat"),
        &leave,
        wait,
    )
    .await
    .unwrap();
    assert!(
        matches!(reply, ControlReply::Error { ref message, .. } if message.contains("leave")),
        "{reply:?}"
    );
    let deldir = SdfsRequest::DelDir { dir: "d".into() };
    let reply: SdfsReply = bus_client::request(&c.client, subjects::sdfs_rpc("ls"), &deldir, wait)
        .await
        .unwrap();
    assert!(
        matches!(
            reply,
            SdfsReply::Error {
                kind: SdfsErrorKind::BadRequest,
                ..
            }
        ),
        "{reply:?}"
    );
    let cancel = JobsRequest::Cancel { id: "x".into() };
    let reply: JobsReply =
        bus_client::request(&c.client, subjects::jobs_rpc("list"), &cancel, wait)
            .await
            .unwrap();
    assert!(
        matches!(
            reply,
            JobsReply::Error {
                kind: JobsErrorKind::BadRequest,
                ..
            }
        ),
        "{reply:?}"
    );
    let view = c.view("n1").await.unwrap();
    assert!(
        view.iter().all(|m| m.state == MemberState::Alive),
        "{view:?}"
    );
}
