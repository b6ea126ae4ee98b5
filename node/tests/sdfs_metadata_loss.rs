//! Metadata loss never destroys bytes: after JetStream's storage is wiped while the cluster is
//! down, no node deletes a blob, `fsck` reports the orphans and the quarantine, and
//! `fsck --rebuild` brings every file and version back byte-identical. A corrupt metadata entry
//! is skipped (its blobs kept) without stopping the keeper.

use bus_client::fsck;
use bus_client::sdfs::{PutOptions, SdfsClient};
use bus_schemas::fsck::BlobLabel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{holds_for, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const LIMIT: Duration = Duration::from_secs(30);

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed ^ (i >> 9) as u8)
        .collect()
}

async fn ready(c: &Cluster) -> SdfsClient {
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers", LIMIT, || async {
        fs.ls("").await.ok().map(|_| ())
    })
    .await;
    fs
}

/// Every blob file on every node: (node, blob) -> bytes on disk.
fn blobs_on_disk(c: &Cluster) -> BTreeMap<(String, String), u64> {
    let mut all = BTreeMap::new();
    for n in &c.nodes {
        let Ok(dir) = std::fs::read_dir(n.data_dir.join("sdfs/blobs")) else {
            continue;
        };
        for e in dir.flatten() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            let name = e.file_name().to_string_lossy().into_owned();
            all.insert((n.id.clone(), name), len);
        }
    }
    all
}

/// Whether every blob on disk has a label naming a committed version.
fn every_label_numbered(c: &Cluster) -> bool {
    blobs_on_disk(c).keys().all(|(node, blob)| {
        let dir = &c.nodes.iter().find(|n| &n.id == node).unwrap().data_dir;
        std::fs::read(dir.join("sdfs/labels").join(blob))
            .ok()
            .and_then(|b| bus_schemas::decode::<BlobLabel>(&b).ok())
            .is_some_and(|l| l.version.is_some())
    })
}

async fn put(fs: &SdfsClient, dir: &Path, name: &str, data: &[u8], attrs: &[(&str, &str)]) {
    let path: PathBuf = dir.join("src");
    std::fs::write(&path, data).unwrap();
    let options = PutOptions {
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PutOptions::default()
    };
    fs.put_with(&path, name, options, None).await.unwrap();
}

#[tokio::test]
async fn wiped_metadata_deletes_no_byte_and_fsck_rebuilds_every_version() {
    let mut c = Cluster::start(Path::new(NODE), 4).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let originals: Vec<(&str, u64, Vec<u8>)> = vec![
        ("a/one.bin", 1, bytes(1, 300_000)),
        ("a/one.bin", 2, bytes(2, 310_000)),
        ("b/two.bin", 1, bytes(3, 3_000_000)),
        ("models/m", 1, bytes(4, 1000)),
    ];
    for (name, _, data) in &originals {
        let attrs: &[(&str, &str)] = if *name == "models/m" {
            &[("arch", "cnn"), ("accuracy", "0.91")]
        } else {
            &[]
        };
        put(&fs, dir.path(), name, data, attrs).await;
    }
    let before_ls = fs.ls("").await.unwrap();
    wait_until("every blob labelled with its version", LIMIT, || async {
        every_label_numbered(&c).then_some(())
    })
    .await;
    let on_disk = blobs_on_disk(&c);
    assert!(on_disk.len() >= 4 * 3, "{on_disk:?}");

    // The whole cluster goes down; JetStream's storage is lost; everything comes back.
    for n in c.nodes.iter_mut() {
        n.kill9();
    }
    c.nats.restart_wiped();
    let ids = c.ids();
    c.nodes = ids.iter().map(|id| c.spawn_node(id)).collect();
    c.wait_all_alive(LIMIT).await;
    let client = c.nats.connect().await;
    let fs = SdfsClient::new(client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers again", LIMIT, || async {
        fs.ls("").await.ok().map(|_| ())
    })
    .await;
    assert!(fs.ls("").await.unwrap().is_empty(), "the metadata is gone");

    // Every node sees blobs the new metadata does not name: quarantine, nothing deleted.
    let report = wait_until("every node reports its quarantine", LIMIT, || async {
        let r = fsck::check(&client, &fs, 4, Duration::from_secs(5))
            .await
            .ok()?;
        let all = r.nodes.len() == 4 && r.nodes.iter().all(|n| !n.trusted && n.quarantined > 0);
        all.then_some(r)
    })
    .await;
    assert!(!report.healthy());
    let blobs: BTreeSet<&String> = on_disk.keys().map(|(_, b)| b).collect();
    assert_eq!(report.orphans.len(), blobs.len(), "{:?}", report.orphans);
    assert!(report.orphans.iter().all(|o| o.label.is_some()));
    holds_for(
        "no node deletes a quarantined blob",
        Duration::from_secs(3),
        || async { blobs_on_disk(&c) == on_disk },
    )
    .await;

    // fsck --rebuild: the metadata comes back from the labels.
    let outcome = fsck::rebuild(&fs, &report).await.unwrap();
    assert_eq!(outcome.versions, originals.len() as u64);
    assert_eq!(outcome.unlabelled, 0);
    let report = wait_until("every node trusts the rebuilt metadata", LIMIT, || async {
        let r = fsck::check(&client, &fs, 4, Duration::from_secs(5))
            .await
            .ok()?;
        r.healthy().then_some(r)
    })
    .await;
    assert_eq!((report.files, report.versions), (3, 4));
    let after_ls = fs.ls("").await.unwrap();
    for (old, new) in before_ls.iter().zip(&after_ls) {
        assert_eq!(old.name, new.name);
        let strip = |f: &bus_schemas::sdfs::FileInfo| -> Vec<_> {
            f.versions
                .iter()
                .map(|v| (v.version, v.blob.clone(), v.sha256.clone(), v.attrs.clone()))
                .collect()
        };
        assert_eq!(strip(old), strip(new), "{}", old.name);
    }
    for (name, version, data) in &originals {
        let out = dir.path().join("out");
        fs.get(name, Some(*version), &out, None).await.unwrap();
        assert_eq!(&std::fs::read(&out).unwrap(), data, "{name} v{version}");
    }
    holds_for(
        "no blob deleted once trusted again",
        Duration::from_secs(2),
        || async { blobs_on_disk(&c) == on_disk },
    )
    .await;
}

#[tokio::test]
async fn a_corrupt_entry_keeps_its_blobs_and_the_keeper_goes_on() {
    let mut c = Cluster::start(Path::new(NODE), 3).await;
    let fs = ready(&c).await;
    let dir = tempfile::tempdir().unwrap();
    put(&fs, dir.path(), "keep/me", &bytes(7, 200_000), &[]).await;
    put(&fs, dir.path(), "drop/me", &bytes(8, 200_000), &[]).await;
    let kept = fs.locate("keep/me", None).await.unwrap();
    let dropped = fs.locate("drop/me", None).await.unwrap();
    // Break the entry of keep/me in the bucket, then restart a holder so that its blobs
    // predate the keeper (unnamed old blobs are what a trusting keeper collects).
    let js = async_nats::jetstream::new(c.client.clone());
    let kv = js.get_key_value("idunno-sdfs").await.unwrap();
    let key = format!("f.{}.{}", b64("keep"), b64("me"));
    kv.put(&key, b"\xc1 not a file entry".to_vec().into())
        .await
        .unwrap();
    let node = kept.replicas[0].clone();
    c.node(&node).kill9();
    let restarted = c.spawn_node(&node);
    *c.node(&node) = restarted;
    c.wait_all_alive(LIMIT).await;
    // The keeper keeps working: a delete seen after the corrupt entry still collects.
    fs.delete("drop/me").await.unwrap();
    let data = c.node(&node).data_dir.join("sdfs/blobs");
    if dropped.replicas.contains(&node) {
        wait_until("the deleted file's blob is collected", LIMIT, || async {
            (!data.join(&dropped.blob).exists()).then_some(())
        })
        .await;
    }
    holds_for(
        "the corrupt entry's blob is kept",
        Duration::from_secs(3),
        || async { data.join(&kept.blob).exists() },
    )
    .await;
    assert!(fs.ls("").await.is_ok(), "the cluster still answers");
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
