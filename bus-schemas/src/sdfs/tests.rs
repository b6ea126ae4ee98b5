use super::*;
use crate::codec::{encode, round_trip};

fn version() -> VersionInfo {
    VersionInfo {
        version: 3,
        blob: "b1".into(),
        size: 10,
        sha256: "ab".into(),
        replicas: vec!["n1".into()],
        created_ms: 5,
        replication: None,
        attrs: BTreeMap::from([("arch".into(), "cnn".into())]),
    }
}

#[test]
fn requests_round_trip() {
    round_trip(SdfsRequest::Prepare {
        name: "a".into(),
        size: 1,
        sha256: "x".into(),
        replication: Some(2),
    });
    round_trip(SdfsRequest::Commit {
        name: "a".into(),
        blob: "b".into(),
        size: 1,
        sha256: "x".into(),
        replicas: vec!["n1".into()],
        replication: None,
        attrs: BTreeMap::new(),
    });
    round_trip(SdfsRequest::Locate {
        name: "a".into(),
        version: Some(2),
    });
    round_trip(SdfsRequest::Ls {
        name: "d/".into(),
        limit: Some(10),
        after: Some("d/a".into()),
    });
    round_trip(SdfsRequest::Delete { name: "a".into() });
    round_trip(SdfsRequest::DelDir { dir: "d".into() });
    round_trip(SdfsRequest::Restore {
        name: "a".into(),
        versions: vec![version()],
    });
    round_trip(SdfsRequest::ReportCorrupt {
        name: "a".into(),
        blob: "b".into(),
        node: "n".into(),
    });
}

#[test]
fn replies_round_trip() {
    round_trip(SdfsReply::Prepared {
        blob: "b".into(),
        replicas: vec![],
        write_quorum: 3,
        chunk_size: 1,
    });
    round_trip(SdfsReply::Committed {
        name: "a".into(),
        version: 1,
    });
    round_trip(SdfsReply::Located {
        name: "a".into(),
        version: version(),
    });
    round_trip(SdfsReply::Listing {
        files: vec![FileInfo {
            name: "a".into(),
            versions: vec![version()],
            pinned: vec![],
        }],
        next: None,
    });
    round_trip(SdfsReply::Deleted { count: 2 });
    round_trip(SdfsReply::Restored {
        name: "a".into(),
        added: 1,
    });
    round_trip(SdfsReply::Error {
        kind: SdfsErrorKind::QuorumNotMet,
        message: "m".into(),
    });
    round_trip(FileInfo {
        name: "a".into(),
        versions: vec![version()],
        pinned: vec![1],
    });
    round_trip(SdfsRequest::Pin {
        name: "a".into(),
        pin: vec![2],
        unpin: vec![1],
    });
    round_trip(SdfsReply::Pinned {
        name: "a".into(),
        versions: vec![1],
    });
}

#[test]
fn transfers_round_trip_and_chunks_are_binary() {
    round_trip(StoreRequest {
        blob: "b".into(),
        size: 1,
        sha256: "x".into(),
        source: "s".into(),
        chunk_size: 4,
        label: None,
    });
    round_trip(StoreReply {
        node: "n".into(),
        blob: "b".into(),
        error: None,
        kind: None,
    });
    round_trip(ChunkRequest {
        blob: "b".into(),
        offset: 0,
        len: 4,
    });
    let data: Vec<u8> = (0..=255).collect();
    let chunk = Chunk {
        blob: "b".into(),
        offset: 0,
        data: data.clone(),
        error: None,
    };
    let bytes = encode(&chunk).unwrap();
    assert!(
        bytes.len() < data.len() + 64,
        "bytes travel as bin: {}",
        bytes.len()
    );
    round_trip(chunk);
}
