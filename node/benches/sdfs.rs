//! SDFS benchmark (`make bench`): put/get of 25 MB and 500 MB, re-replication after a
//! `kill -9`, get-versions vs n, peak node RSS over a 1 GiB put and get, and 256 MB against
//! async-nats's JetStream object store on the same server.
//!
//! Knobs (environment): `BENCH_SDFS_LARGE_MB` (default 500), `BENCH_SDFS_RSS_MB` (default
//! 1024), `BENCH_SDFS_OBJ_MB` (default 256).

use bus_client::sdfs::SdfsClient;
use bus_schemas::membership::{MemberEvent, MemberEventKind};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{env_or, wait_until, Cluster};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");
const MB: u64 = 1_000_000;

/// A file `name` of `mb` MB of pseudo-random bytes in `dir`.
fn make_file(dir: &Path, name: &str, mb: u64) -> PathBuf {
    let path = dir.join(name);
    testkit::random_file(&path, mb);
    path
}

fn rate(mb: u64, d: Duration) -> String {
    format!(
        "{:.2} s ({:.0} MB/s)",
        d.as_secs_f64(),
        mb as f64 / d.as_secs_f64()
    )
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    (v, t.elapsed())
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!("## SDFS benchmark (5 nodes, RF 4, W 3, one nats-server, release build)\n");
    let mut c = Cluster::start(Path::new(NODE), 5).await;
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(10));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok()
    })
    .await;

    println!("| operation | time |\n|---|---|");
    for mb in [25, env_or("BENCH_SDFS_LARGE_MB", 500)] {
        let src = make_file(dir.path(), &format!("f{mb}"), mb);
        let (r, put) = timed(fs.put(&src, &format!("bench/f{mb}"), None)).await;
        r.unwrap();
        let out = dir.path().join("out");
        let (r, get) = timed(fs.get(&format!("bench/f{mb}"), None, &out, None)).await;
        r.unwrap();
        println!("| put {mb} MB (4 replicas) | {} |", rate(mb, put));
        println!("| get {mb} MB | {} |", rate(mb, get));
        std::fs::remove_file(&src).unwrap();
        let _ = std::fs::remove_file(&out);
        fs.delete(&format!("bench/f{mb}")).await.unwrap();
    }

    let v10 = make_file(dir.path(), "v10", 10);
    for _ in 0..5 {
        fs.put(&v10, "bench/versions", None).await.unwrap();
    }
    for n in 1..=5u64 {
        let t = Instant::now();
        for version in (6 - n..=5).rev() {
            fs.get("bench/versions", Some(version), &dir.path().join("v"), None)
                .await
                .unwrap();
        }
        println!(
            "| get-versions n={n} (10 MB each) | {:.2} s |",
            t.elapsed().as_secs_f64()
        );
    }

    let rss_mb = env_or("BENCH_SDFS_RSS_MB", 1024);
    let big = make_file(dir.path(), "big", rss_mb);
    let (r, put) = timed(fs.put(&big, "bench/big", None)).await;
    r.unwrap();
    let (r, get) = timed(fs.get("bench/big", None, &dir.path().join("big.out"), None)).await;
    r.unwrap();
    let peaks: Vec<f64> = c.nodes.iter().map(|n| peak_rss_mb(n.pid())).collect();
    let peak = peaks.iter().copied().fold(0.0, f64::max);
    println!(
        "| put {rss_mb} MB / get {rss_mb} MB | {} / {} |",
        rate(rss_mb, put),
        rate(rss_mb, get)
    );
    println!(
        "| peak RSS of the busiest node over that put and get | {peak:.0} MB (all: {peaks:.0?}) |"
    );
    std::fs::remove_file(&big).unwrap();
    let _ = std::fs::remove_file(dir.path().join("big.out"));
    fs.delete("bench/big").await.unwrap();

    let f40 = make_file(dir.path(), "f40", 40);
    fs.put(&f40, "bench/f40", None).await.unwrap();
    let v = fs.locate("bench/f40", None).await.unwrap();
    let victim = v.replicas[1].clone();
    let mut events = c.client.subscribe(subjects::member_events()).await.unwrap();
    c.client.flush().await.unwrap();
    let killed = Instant::now();
    c.node(&victim).kill9();
    loop {
        let msg = events.next().await.unwrap();
        if let Ok(ev) = decode::<MemberEvent>(&msg.payload) {
            if ev.node == victim && ev.kind == MemberEventKind::Fail {
                break;
            }
        }
    }
    let detected = killed.elapsed();
    wait_until(
        "40 MB file back to 4 live replicas",
        Duration::from_secs(60),
        || async {
            let v = fs.locate("bench/f40", None).await.ok()?;
            (v.replicas.len() == 4 && !v.replicas.contains(&victim)).then_some(())
        },
    )
    .await;
    let repaired = killed.elapsed();
    println!(
        "| re-replication of 40 MB after kill -9 of a holder | {:.2} s after detection (detection {:.2} s) |",
        (repaired - detected).as_secs_f64(),
        detected.as_secs_f64()
    );
    drop(c);

    object_store_comparison(dir.path(), env_or("BENCH_SDFS_OBJ_MB", 256)).await;
}

async fn object_store_comparison(dir: &Path, mb: u64) {
    println!(
        "\n### {mb} MB against async-nats's JetStream object store (same nats-server, same run)\n"
    );
    let c = Cluster::start(Path::new(NODE), 4).await;
    let fs = SdfsClient::new(c.client.clone(), Duration::from_secs(10));
    wait_until("SDFS answers", Duration::from_secs(15), || async {
        fs.ls("").await.ok()
    })
    .await;
    let src = make_file(dir, "obj", mb);
    let out = dir.join("obj.out");

    let mut js = async_nats::jetstream::new(c.client.clone());
    // The server fsyncs every write (`sync_interval: always`): a chunk's ack can take longer
    // than the context's default 5 s while the disk is busy.
    js.set_timeout(Duration::from_secs(60));
    let store = js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: "bench".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (r, obj_put) = timed(async {
        let mut file = tokio::fs::File::open(&src).await.unwrap();
        store.put("obj", &mut file).await
    })
    .await;
    r.unwrap();
    let (r, obj_get) = timed(async {
        let mut object = store.get("obj").await.unwrap();
        let mut file = tokio::fs::File::create(&out).await.unwrap();
        tokio::io::copy(&mut object, &mut file).await
    })
    .await;
    r.unwrap();
    let (r, rf1_put) = timed(fs.put_with(&src, "bench/obj1", rf(1), None)).await;
    r.unwrap();
    let (r, sdfs_get) = timed(fs.get("bench/obj1", None, &out, None)).await;
    r.unwrap();
    let (r, rf4_put) = timed(fs.put_with(&src, "bench/obj4", rf(4), None)).await;
    r.unwrap();
    let send4 = send_copies(&c.client, mb, 4).await;
    println!("| operation | time | ratio |\n|---|---|---|");
    println!("| object store put | {} | |", rate(mb, obj_put));
    println!(
        "| SDFS put, RF 1 | {} | {:.2}x the object store |",
        rate(mb, rf1_put),
        rf1_put.as_secs_f64() / obj_put.as_secs_f64()
    );
    println!("| object store get | {} | |", rate(mb, obj_get));
    println!(
        "| SDFS get | {} | {:.2}x the object store's time |",
        rate(mb, sdfs_get),
        sdfs_get.as_secs_f64() / obj_get.as_secs_f64()
    );
    println!("| SDFS put, RF 4 | {} | |", rate(mb, rf4_put));
    println!("| just sending 4 copies through the server (1 MiB messages) | {} | RF 4 put takes {:.2}x |", rate(mb * 4, send4), rf4_put.as_secs_f64() / send4.as_secs_f64());
}

/// Time to push `copies` × `mb` MB through the server to one subscriber.
async fn send_copies(client: &async_nats::Client, mb: u64, copies: u64) -> Duration {
    let subject = "bench.copies".to_string();
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let total = mb * MB * copies;
    let chunk = vec![7u8; 1 << 20];
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut got = 0u64;
        while got < total {
            got += sub.next().await.unwrap().payload.len() as u64;
        }
    });
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        client
            .publish(subject.clone(), chunk[..n].to_vec().into())
            .await
            .unwrap();
        sent += n as u64;
    }
    receiver.await.unwrap();
    started.elapsed()
}

fn rf(replication: u32) -> bus_client::sdfs::PutOptions {
    bus_client::sdfs::PutOptions {
        replication: Some(replication),
        ..Default::default()
    }
}
