//! Several machines on one box (network namespaces, `testkit::Machines`): three machines, each
//! with its own nats-server (one JetStream cluster over routes) and two nodes. The nodes announce
//! their machine as their host; a machine killed whole fails only its own nodes; a machine cut
//! off is failed by the others and rejoins when healed; the harness leaves nothing behind.

use bus_schemas::cluster::{ClusterReply, ClusterRequest, ClusterStatus};
use bus_schemas::jobs::JobState;
use bus_schemas::membership::MemberState;
use std::process::Command;
use std::time::Duration;
use testkit::views::{all_see_all, declared_failed, view, wait_all_see};
use testkit::wait_until;

mod common;

use common::machines::{three_machines, ZONES};

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_machine_killed_whole_fails_only_its_own_nodes() {
    let (mut m, client) = three_machines().await;
    let netns = m.machines[0].netns.clone();
    let view_a1 = view(&client, "a1").await.unwrap();
    for rec in &view_a1 {
        let machine = &rec.id[..1];
        assert_eq!(rec.host, machine, "{} announces its machine", rec.id);
        let zone = ZONES[usize::from(rec.id.as_bytes()[0] - b'a')];
        assert_eq!(
            rec.zone.as_deref(),
            Some(zone),
            "{} announces its zone",
            rec.id
        );
    }
    m.kill(2);
    let (lost, kept) = (m.ids_on(2), [m.ids_on(0), m.ids_on(1)].concat());
    wait_all_see(
        &client,
        &kept,
        &lost,
        MemberState::Failed,
        Duration::from_secs(30),
    )
    .await;
    let wrongly = declared_failed(&client, &kept, &kept, Duration::from_secs(20)).await;
    assert!(
        wrongly.is_empty(),
        "only the lost machine's nodes are failed: {wrongly:?}"
    );
    drop(m);
    assert!(!namespaces().contains(&netns), "{}", namespaces());
}

#[tokio::test]
async fn a_machine_cut_off_is_failed_and_rejoins_when_healed() {
    let (m, client) = three_machines().await;
    let (cut, kept) = (m.ids_on(1), [m.ids_on(0), m.ids_on(2)].concat());
    m.cut(1);
    wait_all_see(
        &client,
        &kept,
        &cut,
        MemberState::Failed,
        Duration::from_secs(30),
    )
    .await;
    m.heal(1);
    m.wait_all_alive(&client, Duration::from_secs(60)).await;
}

async fn cluster(client: &async_nats::Client, req: ClusterRequest) -> ClusterReply {
    let subject = bus_schemas::subjects::cluster_rpc(req.op());
    bus_client::request(client, subject, &req, Duration::from_secs(30))
        .await
        .unwrap()
}

/// Waits until every bucket and stream has `copies` copies, all current.
async fn wait_copies(client: &async_nats::Client, copies: u8) -> ClusterStatus {
    let what = format!("every bucket and stream has {copies} current copies");
    wait_until(&what, Duration::from_secs(90), || async {
        match cluster(client, ClusterRequest::Status).await {
            ClusterReply::Status { status }
                if status.replicas == copies
                    && status.assets.iter().all(|a| {
                        a.healthy(copies)
                            && a.replicas == copies
                            && a.copies.len() == copies as usize
                    }) =>
            {
                Some(status)
            }
            _ => None,
        }
    })
    .await
}

#[tokio::test]
async fn three_servers_keep_three_copies_of_everything_without_a_flag() {
    let (m, client) = three_machines().await;
    let status = wait_copies(&client, 3).await;
    assert_eq!(status.replicas_set, None, "automatic");
    assert_eq!(status.servers.len(), 3, "{status:?}");
    assert_eq!(status.assets.len(), 7, "{status:?}");
    // An operator's number applies both ways; `auto` raises again.
    let two = ClusterRequest::Replicas { replicas: Some(2) };
    assert!(matches!(
        cluster(&client, two).await,
        ClusterReply::Status { .. }
    ));
    wait_copies(&client, 2).await;
    let five = ClusterRequest::Replicas { replicas: Some(5) };
    match cluster(&client, five).await {
        ClusterReply::Error { message } => assert!(message.contains("3 server(s)"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Taking out a server that holds no copy is a mistake said, not a silent success.
    let typo = ClusterRequest::RemoveServer {
        server: "m-z".into(),
    };
    match cluster(&client, typo).await {
        ClusterReply::Error { message } => {
            assert!(
                message.contains("no bucket or stream has a copy on \"m-z\""),
                "{message}"
            );
            assert!(message.contains("m-a"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let auto = ClusterRequest::Replicas { replicas: None };
    assert!(matches!(
        cluster(&client, auto).await,
        ClusterReply::Status { .. }
    ));
    wait_copies(&client, 3).await;
    // A server lost: its copies show as not current.
    let mut m = m;
    m.kill(2);
    wait_until(
        "c's copies show offline or behind",
        Duration::from_secs(60),
        || async {
            match cluster(&client, ClusterRequest::Status).await {
                ClusterReply::Status { status } => {
                    (status.assets.iter().all(|a| !a.healthy(3))).then_some(())
                }
                _ => None,
            }
        },
    )
    .await;
}

/// Hosts (machine names, the first letter of a node id) of the replicas of every file.
async fn spread(fs: &bus_client::sdfs::SdfsClient, lost: &[String]) -> Vec<(usize, usize)> {
    let files = fs.ls("").await.unwrap_or_default();
    let newest = files.iter().filter_map(|f| f.versions.last());
    newest
        .map(|v| {
            let live: Vec<&String> = v.replicas.iter().filter(|r| !lost.contains(r)).collect();
            let mut hosts: Vec<&str> = live.iter().map(|r| &r[..1]).collect();
            hosts.sort();
            hosts.dedup();
            (live.len(), hosts.len())
        })
        .collect()
}

#[tokio::test]
async fn replicas_spread_over_machines_and_come_back_after_one_is_lost() {
    let (mut m, client) = three_machines().await;
    let fs = bus_client::sdfs::SdfsClient::new(client.clone(), Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let path = dir.path().join(format!("f{i}"));
        std::fs::write(&path, format!("file {i} ").repeat(1000)).unwrap();
        fs.put(&path, &format!("spread/f{i}"), None).await.unwrap();
    }
    // A put commits once 3 replicas stored it; a slow fourth is left to the keepers.
    wait_until(
        "4 copies of each file on 3 hosts",
        Duration::from_secs(60),
        || async {
            let before = spread(&fs, &[]).await;
            (before.len() == 20 && before.iter().all(|&(c, h)| c == 4 && h == 3)).then_some(())
        },
    )
    .await;
    let lost = m.ids_on(2);
    let killed = std::time::Instant::now();
    m.kill(2);
    wait_until(
        "4 live copies on 2 hosts again",
        Duration::from_secs(60),
        || async {
            let after = spread(&fs, &lost).await;
            (after.len() == 20 && after.iter().all(|&(c, h)| c >= 4 && h == 2)).then_some(())
        },
    )
    .await;
    eprintln!(
        "every file back to 4 live copies on the 2 hosts left {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
}

/// Every node's generation as `observer` sees it (a node declared failed rejoins with a new one).
async fn generations(client: &async_nats::Client, observer: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = (view(client, observer).await.unwrap_or_default().iter())
        .map(|r| (r.id.clone(), r.generation))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_rolling_restart_of_the_servers_loses_no_query_and_fails_no_node() {
    let (mut m, client) = three_machines().await;
    let (fs, jobs) = testkit::import_fashion(&client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let before = generations(&client, "a1").await;
    let id = jobs
        .submit(testkit::serve_spec("fixture", Some(1)))
        .await
        .unwrap();
    for i in 0..3 {
        // Each server in turn: killed, started again on its store, JetStream current again.
        m.kill_nats(i);
        m.start_nats(i);
        m.wait_jetstream(Duration::from_secs(60));
    }
    let done = common::wait_job(&jobs, &id, Duration::from_secs(300)).await;
    common::check_results(&fs, &done).await;
    let ids = m.ids();
    assert!(all_see_all(&client, &ids, &ids, MemberState::Alive).await);
    assert_eq!(
        generations(&client, "a1").await,
        before,
        "nobody was declared failed"
    );
}

#[tokio::test]
async fn a_power_cut_of_every_machine_loses_no_file_version_or_job() {
    let (mut m, client) = three_machines().await;
    let (fs, jobs) = testkit::import_fashion(&client, "fm").await;
    common::import_fixture(&fs, &jobs, "fixture").await;
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for i in 0..6 {
        let path = dir.path().join(format!("f{i}"));
        let bytes: Vec<u8> = (0..200_000u32).map(|k| (k * 7 + i) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        // Two versions of each file.
        fs.put(&path, &format!("cut/f{i}"), None).await.unwrap();
        fs.put(&path, &format!("cut/f{i}"), None).await.unwrap();
        written.push((format!("cut/f{i}"), bytes));
    }
    let id = jobs
        .submit(testkit::serve_spec("fixture", Some(1)))
        .await
        .unwrap();
    let served = common::wait_job(&jobs, &id, Duration::from_secs(300)).await;
    assert_eq!(served.state, JobState::Succeeded);
    let all_jobs = jobs.list().await.unwrap().len();
    // Every process of every machine, kill -9 at once; then everything again on its data.
    drop(client);
    for i in 0..3 {
        m.kill(i);
    }
    for i in 0..3 {
        m.start_nats(i);
    }
    m.wait_jetstream(Duration::from_secs(60));
    for i in 0..3 {
        for id in m.ids_on(i) {
            m.spawn_node(i, &id);
        }
    }
    let client = m.client_of(0).await;
    let (fs, jobs) = (
        bus_client::sdfs::SdfsClient::new(client.clone(), Duration::from_secs(10)),
        bus_client::jobs::JobsClient::new(client.clone(), Duration::from_secs(10)),
    );
    for (name, bytes) in &written {
        let out = dir.path().join("out");
        let _ = std::fs::remove_file(&out);
        let what = format!("{name} reads back");
        wait_until(&what, Duration::from_secs(90), || async {
            fs.get(name, None, &out, None).await.ok()
        })
        .await;
        assert_eq!(&std::fs::read(&out).unwrap(), bytes, "{name}");
        let info = fs.ls(name).await.unwrap();
        assert_eq!(info[0].versions.len(), 2, "{name}: both versions");
    }
    // Reads may come from a copy still catching up just after the restart: wait for them.
    wait_until(
        "every job is still on record",
        Duration::from_secs(30),
        || async { (jobs.list().await.ok()?.len() == all_jobs).then_some(()) },
    )
    .await;
    let again = common::wait_job(&jobs, &id, Duration::from_secs(30)).await;
    assert_eq!(again.state, JobState::Succeeded);
    common::check_results(&fs, &again).await;
}
