//! SDFS under failure: re-replication, corrupt replicas, stale and kept copies on restart.

use bus_client::sdfs::SdfsClient;
use bus_schemas::membership::MemberState;
use bus_schemas::sdfs::VersionInfo;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const LIMIT: Duration = Duration::from_secs(30);

fn file_of(dir: &Path, len: usize) -> PathBuf {
    let data: Vec<u8> = (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 11) as u8)
        .collect();
    let path = dir.join("src.bin");
    std::fs::write(&path, data).unwrap();
    path
}

async fn ready(c: &Cluster) -> SdfsClient {
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok().map(|_| ())
    })
    .await;
    fs
}

fn blob_path(c: &mut Cluster, node: &str, v: &VersionInfo) -> PathBuf {
    c.node(node).data_dir.join("sdfs/blobs").join(&v.blob)
}

/// Waits until the newest version of `name` has 4 replicas, each holding `good` on disk.
async fn wait_all_hold(c: &Cluster, fs: &SdfsClient, name: &str, good: &[u8]) {
    wait_until(
        "every listed replica holds the right bytes again",
        LIMIT,
        || async {
            let v = fs.locate(name, None).await.ok()?;
            let holds = |n: &String| {
                let node = c.nodes.iter().find(|x| &x.id == n)?;
                std::fs::read(node.data_dir.join("sdfs/blobs").join(&v.blob)).ok()
            };
            let all = v.replicas.len() == 4
                && v.replicas.iter().all(|n| holds(n).as_deref() == Some(good));
            all.then_some(())
        },
    )
    .await
}

/// Waits until the newest version has `n` replicas, none of them in `not`.
async fn wait_replicas(fs: &SdfsClient, name: &str, n: usize, not: &[&str]) -> VersionInfo {
    wait_until(&format!("{name} back to {n} replicas"), LIMIT, || async {
        let v = fs.locate(name, None).await.ok()?;
        let fine = v.replicas.len() == n && !v.replicas.iter().any(|r| not.contains(&r.as_str()));
        fine.then_some(v)
    })
    .await
}

#[tokio::test]
async fn three_killed_holders_are_replaced_within_bounded_time() {
    let mut c = Cluster::start(Path::new(NODE), 7).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_of(dir.path(), 2_000_000);
    fs.put(&src, "r/file", None).await.unwrap();
    let v = fs.locate("r/file", None).await.unwrap();
    let dead: Vec<String> = v.replicas.iter().take(3).cloned().collect();
    for d in &dead {
        c.node(d).kill9();
    }
    let dead: Vec<&str> = dead.iter().map(String::as_str).collect();
    let repaired = wait_replicas(&fs, "r/file", 4, &dead).await;
    for holder in &repaired.replicas {
        let copy = std::fs::read(blob_path(&mut c, holder, &repaired)).unwrap();
        assert_eq!(copy, std::fs::read(&src).unwrap(), "{holder}");
    }
}

#[tokio::test]
async fn a_corrupt_replica_is_read_around_and_repaired() {
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_of(dir.path(), 500_000);
    fs.put(&src, "c/file", None).await.unwrap();
    let v = fs.locate("c/file", None).await.unwrap();
    let bad = v.replicas[0].clone();
    let path = blob_path(&mut c, &bad, &v);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = dir.path().join("out");
    fs.get("c/file", None, &out, None).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    wait_all_hold(&c, &fs, "c/file", &std::fs::read(&src).unwrap()).await;
}

#[tokio::test]
async fn a_replica_that_lost_its_blob_is_read_around_and_repaired() {
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_of(dir.path(), 200_000);
    fs.put(&src, "lost/file", None).await.unwrap();
    let v = fs.locate("lost/file", None).await.unwrap();
    let unlucky = v.replicas[0].clone();
    std::fs::remove_file(blob_path(&mut c, &unlucky, &v)).unwrap();
    let out = dir.path().join("out");
    fs.get("lost/file", None, &out, None).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    wait_all_hold(&c, &fs, "lost/file", &std::fs::read(&src).unwrap()).await;
}

#[tokio::test]
async fn a_restarted_node_drops_deleted_files_and_keeps_wanted_ones_without_copying() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_of(dir.path(), 300_000);
    fs.put(&src, "keep", None).await.unwrap();
    fs.put(&src, "gone", None).await.unwrap();
    let keep = fs.locate("keep", None).await.unwrap();
    let gone = fs.locate("gone", None).await.unwrap();
    assert_eq!(keep.replicas.len(), 4);
    let keep_path = blob_path(&mut c, "n2", &keep);
    let gone_path = blob_path(&mut c, "n2", &gone);
    let inode = std::fs::metadata(&keep_path).unwrap().ino();

    c.node("n2").kill9();
    c.wait_seen(&["n1", "n3", "n4"], "n2", MemberState::Failed, None, LIMIT)
        .await;
    wait_replicas(&fs, "keep", 3, &["n2"]).await;
    fs.delete("gone").await.unwrap();
    assert!(
        gone_path.exists(),
        "n2 is down and cannot have deleted its copy yet"
    );

    let restarted = c.spawn_node("n2");
    *c.node("n2") = restarted;
    wait_until("n2 removed its copy of the deleted file", LIMIT, || async {
        (!gone_path.exists()).then_some(())
    })
    .await;
    let back = wait_replicas(&fs, "keep", 4, &[]).await;
    assert!(back.replicas.contains(&"n2".to_string()));
    assert_eq!(
        std::fs::metadata(&keep_path).unwrap().ino(),
        inode,
        "n2 re-announced its copy, not a new one"
    );
}
