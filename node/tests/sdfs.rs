//! SDFS with a real nats-server (JetStream) and real node processes.

use bus_client::sdfs::SdfsClient;
use bus_schemas::sdfs::{SdfsErrorKind, SdfsReply, SdfsRequest};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use testkit::{wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

fn random_file(dir: &Path, name: &str, len: usize, seed: u8) -> std::path::PathBuf {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn blobs_on(data_dir: &Path) -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("sdfs/blobs")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect()
}

async fn sdfs(c: &Cluster) -> SdfsClient {
    // SDFS opens its bucket right after the node joins; the first request may race it.
    let client = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        client.ls("").await.ok().map(|_| ())
    })
    .await;
    client
}

#[tokio::test]
async fn put_then_get_survives_three_holders_killed_at_once() {
    let mut c = Cluster::start(Path::new(NODE), 7).await;
    let fs = sdfs(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let src = random_file(dir.path(), "src.bin", 3_000_000, 7);
    let version = fs.put(&src, "data/src.bin", None).await.unwrap();
    assert_eq!(version, 1);
    let v = fs.locate("data/src.bin", None).await.unwrap();
    assert_eq!(v.replicas.len(), 4, "{v:?}");
    for holder in v.replicas.iter().take(3) {
        c.node(holder).kill9();
    }
    let out = dir.path().join("out.bin");
    let got = fs.get("data/src.bin", None, &out, None).await.unwrap();
    assert_eq!(got.sha256, v.sha256);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
}

#[tokio::test]
async fn versions_are_numbered_kept_and_concurrent_puts_both_land() {
    let c = Cluster::start(Path::new(NODE), 4).await;
    let fs = sdfs(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let a = random_file(dir.path(), "a", 10_000, 1);
    let b = random_file(dir.path(), "b", 20_000, 2);
    let (va, vb) = tokio::join!(fs.put(&a, "f", None), fs.put(&b, "f", None));
    let mut both = vec![va.unwrap(), vb.unwrap()];
    both.sort();
    assert_eq!(both, vec![1, 2]);
    // A commit sent again (its answer lost) gets the version its blob already has, even after
    // a later version: no duplicate, no renumbering.
    let first = fs.ls("f").await.unwrap()[0].versions[0].clone();
    let again = SdfsRequest::Commit {
        name: "f".into(),
        blob: first.blob.clone(),
        size: first.size,
        sha256: first.sha256.clone(),
        replicas: first.replicas.clone(),
        replication: first.replication,
        attrs: first.attrs.clone(),
    };
    match fs.request(&again).await.unwrap() {
        SdfsReply::Committed { version, .. } => assert_eq!(version, first.version),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs.ls("f").await.unwrap()[0].versions.len(), 2);
    for _ in 0..5 {
        fs.put(&a, "f", None).await.unwrap();
    }
    let files = fs.ls("f").await.unwrap();
    let versions: Vec<u64> = files[0].versions.iter().map(|v| v.version).collect();
    assert_eq!(
        versions,
        vec![3, 4, 5, 6, 7],
        "the last 5 versions are kept"
    );
    let out = dir.path().join("v2");
    let v2 = fs.get("f", Some(2), &out, None).await;
    assert_eq!(v2.unwrap_err().kind(), Some(SdfsErrorKind::NotFound));
    let kept: BTreeSet<String> = files[0].versions.iter().map(|v| v.blob.clone()).collect();
    wait_until(
        "pruned versions leave every disk",
        Duration::from_secs(15),
        || async {
            c.nodes
                .iter()
                .all(|n| blobs_on(&n.data_dir) == kept)
                .then_some(())
        },
    )
    .await;
    fs.delete("f").await.unwrap();
    wait_until(
        "a deleted file leaves every disk",
        Duration::from_secs(15),
        || async {
            c.nodes
                .iter()
                .all(|n| blobs_on(&n.data_dir).is_empty())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn bad_names_missing_files_and_deletes_are_clear() {
    let c = Cluster::start(Path::new(NODE), 3).await;
    let fs = sdfs(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let a = random_file(dir.path(), "a", 1000, 3);
    for bad in ["/abs", "a//b", "x/../y", "dir/"] {
        let err = fs.put(&a, bad, None).await.unwrap_err();
        assert_eq!(err.kind(), Some(SdfsErrorKind::BadName), "{bad}: {err}");
    }
    assert!(
        fs.ls("").await.unwrap().is_empty(),
        "a refused put writes nothing"
    );
    let missing = fs
        .get("nope", None, &dir.path().join("x"), None)
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), Some(SdfsErrorKind::NotFound));
    fs.put(&a, "d/one", None).await.unwrap();
    fs.put(&a, "d/sub/two", None).await.unwrap();
    fs.put(&a, "dx", None).await.unwrap();
    assert_eq!(fs.ls("d").await.unwrap().len(), 2);
    assert_eq!(fs.deldir("d").await.unwrap(), 2);
    fs.delete("dx").await.unwrap();
    assert_eq!(
        fs.delete("dx").await.unwrap_err().kind(),
        Some(SdfsErrorKind::NotFound)
    );
    assert!(fs.ls("").await.unwrap().is_empty());
}
