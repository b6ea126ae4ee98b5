//! A put while one of its target nodes dies: it succeeds or fails clearly, never half-written.

use bus_client::sdfs::{Progress, SdfsClient};
use bus_schemas::membership::Placed;
use idunno_node::sdfs::placement;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

#[tokio::test]
async fn a_target_dying_mid_put_never_leaves_a_half_written_version() {
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(5));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let ids = c.ids();
    // Every node of this cluster runs on this one machine: one host.
    let live: Vec<Placed> = (ids.iter())
        .map(|n| Placed {
            id: n.clone(),
            host: "here".into(),
            zone: String::new(),
        })
        .collect();
    let victim = placement::replicas("mid/put", &live, 4)[0].clone();

    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let progress: Progress = Arc::new(move |done, _| {
        if done > 0 {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let put = {
        let fs = fs.clone();
        let src = src.clone();
        tokio::spawn(async move { fs.put(&src, "mid/put", Some(progress)).await })
    };
    wait_until("the put moves bytes", Duration::from_secs(15), || async {
        started.load(Ordering::Relaxed).then_some(())
    })
    .await;
    c.node(&victim).kill9();
    let result = put.await.unwrap();

    let listed = fs.ls("mid/put").await.unwrap();
    match result {
        Ok(version) => {
            let out = dir.path().join("out");
            let v = fs.get("mid/put", Some(version), &out, None).await.unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), data);
            assert!(v.replicas.len() >= 3, "{v:?}");
        }
        Err(e) => {
            assert!(e.kind().is_some(), "a clear refusal, not {e}");
            assert!(listed.is_empty(), "a failed put left {listed:?}");
        }
    }
}
