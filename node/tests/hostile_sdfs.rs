//! Hostile SDFS requests that decode perfectly: each gets a typed refusal naming its limit,
//! slow stores cannot take every slot, and afterwards every node runs and no byte is lost.

use bus_client::sdfs::SdfsClient;
use bus_schemas::fsck::BlobLabel;
use bus_schemas::sdfs::{SdfsErrorKind, SdfsReply, SdfsRequest, StoreReply, StoreRequest};
use bus_schemas::subjects;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use testkit::{wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const LIMIT: Duration = Duration::from_secs(30);
const SHA: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
const BLOB: &str = "0123456789abcdef0123456789abcdef";

fn store(blob: &str, size: u64, source: &str, chunk: u64) -> StoreRequest {
    StoreRequest {
        blob: blob.into(),
        size,
        sha256: SHA.into(),
        source: source.into(),
        chunk_size: chunk,
        label: None,
    }
}

async fn ask_store(c: &Cluster, node: &str, req: &StoreRequest) -> StoreReply {
    let subject = subjects::sdfs_store(node);
    bus_client::request(&c.client, subject, req, Duration::from_secs(10))
        .await
        .expect("a store reply")
}

#[tokio::test]
async fn hostile_stores_are_refused_by_limit_and_slow_ones_cannot_take_every_slot() {
    let mut c =
        Cluster::start_with(Path::new(NODE), 3, &["--sdfs-max-file-bytes", "100000000"]).await;
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    let original: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &original).unwrap();
    wait_until("a first put", LIMIT, || async {
        fs.put(&src, "safe/file", None).await.ok()
    })
    .await;

    let upload = subjects::sdfs_upload(BLOB);
    let big_label = BlobLabel {
        name: "x".repeat(64 << 10),
        version: None,
        size: 11,
        sha256: SHA.into(),
        created_ms: 0,
        replication: None,
        attrs: BTreeMap::new(),
    };
    let mut labelled = store(BLOB, 11, &upload, 4096);
    labelled.label = Some(big_label);
    let cases: Vec<(&str, StoreRequest, &str)> = vec![
        (
            "size u64::MAX",
            store(BLOB, u64::MAX, &upload, 65536),
            "--sdfs-max-file-bytes",
        ),
        ("chunk size 0", store(BLOB, 11, &upload, 0), "chunk size"),
        (
            "chunk size u64::MAX",
            store(BLOB, 11, &upload, u64::MAX),
            "chunk size",
        ),
        (
            "a path as blob id",
            store("../../../etc/passwd", 11, &upload, 4096),
            "blob id",
        ),
        (
            "another subject as source",
            store(BLOB, 11, "idunno.v1.members.events", 4096),
            "source",
        ),
        (
            "a wildcard source",
            store(BLOB, 11, "idunno.v1.>", 4096),
            "source",
        ),
        ("a 64 KiB label name", labelled, "label"),
    ];
    for (what, req, limit) in &cases {
        let reply = ask_store(&c, "n1", req).await;
        let error = reply.error.clone().unwrap_or_default();
        println!("{what}: {:?} {error}", reply.kind);
        assert_eq!(reply.kind, Some(SdfsErrorKind::Limit), "{what}: {reply:?}");
        assert!(error.contains(limit), "{what}: {error}");
    }

    // Stores whose source never answers hold their slot until their chunk timeout; the node
    // refuses the rest at once as overloaded while reads and metadata requests still work.
    // (Subscribed, so chunk requests wait for their timeout instead of failing at once.)
    let mut sink = c.client.subscribe("idunno.v1.sdfs.upload.>").await.unwrap();
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let client = c.client.clone();
            let blob = format!("{i:032x}");
            let req = store(&blob, 11, &subjects::sdfs_upload(&blob), 4096);
            tokio::spawn(async move {
                let subject = subjects::sdfs_store("n2");
                let wait = Duration::from_secs(90);
                bus_client::request::<_, StoreReply>(&client, subject, &req, wait).await
            })
        })
        .collect();
    // Every slow store is pulling (its chunk requests reach the silent source).
    let mut pulling = std::collections::BTreeSet::new();
    while pulling.len() < 4 {
        let msg = tokio::time::timeout(LIMIT, futures::StreamExt::next(&mut sink))
            .await
            .expect("the slow stores pull")
            .expect("the sink is open");
        pulling.insert(msg.subject.to_string());
    }
    let extra_blob = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let extra = store(extra_blob, 11, &subjects::sdfs_upload(extra_blob), 4096);
    let refused = ask_store(&c, "n2", &extra).await;
    assert_eq!(refused.kind, Some(SdfsErrorKind::Overloaded), "{refused:?}");
    println!("fifth store: {:?}", refused.error);
    let out = dir.path().join("out");
    fs.get("safe/file", None, &out, None).await.unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        original,
        "reads go on meanwhile"
    );
    for s in slow {
        let reply = s
            .await
            .unwrap()
            .expect("the slow stores end with an answer");
        assert!(reply.error.is_some(), "{reply:?}");
    }

    // Metadata requests with values beyond the limits.
    let attrs: BTreeMap<String, String> =
        (0..1000).map(|i| (format!("k{i}"), "v".into())).collect();
    let requests = vec![
        SdfsRequest::Prepare {
            name: "x".into(),
            size: u64::MAX,
            sha256: SHA.into(),
            replication: None,
        },
        SdfsRequest::Prepare {
            name: "x".into(),
            size: 1,
            sha256: SHA.into(),
            replication: Some(u32::MAX),
        },
        SdfsRequest::Commit {
            name: "x".into(),
            blob: BLOB.into(),
            size: 1,
            sha256: SHA.into(),
            replicas: vec!["n1".into(), "n2".into(), "n3".into()],
            replication: None,
            attrs,
        },
        SdfsRequest::Commit {
            name: "x".into(),
            blob: BLOB.into(),
            size: 1,
            sha256: "zz".into(),
            replicas: vec!["n1".into()],
            replication: None,
            attrs: BTreeMap::new(),
        },
        SdfsRequest::ReportCorrupt {
            name: "safe/file".into(),
            blob: "../x".into(),
            node: "n1".into(),
        },
    ];
    for req in &requests {
        let reply = fs.request(req).await;
        let shown: String = format!("{req:?}").chars().take(70).collect();
        println!("{shown}… -> {reply:?}");
        assert_eq!(
            reply.as_ref().err().and_then(|e| e.kind()),
            Some(SdfsErrorKind::Limit),
            "{reply:?}"
        );
    }
    let ls = fs
        .request(&SdfsRequest::Ls {
            name: "x".into(),
            limit: None,
            after: None,
        })
        .await;
    assert!(matches!(ls, Ok(SdfsReply::Listing { .. })), "{ls:?}");

    for n in c.nodes.iter_mut() {
        assert!(n.is_running(), "{} still runs", n.id);
    }
    fs.get("safe/file", None, &out, None).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), original, "no byte lost");
}
