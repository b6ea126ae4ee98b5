//! IDunno against PyTorch itself (`make bench`; the full torch of `infra/pytorch.sh`, installed
//! once by this bench when missing), on the same machine, same threads, same data, in
//! interleaved rounds whose medians are compared (README, "Measured figures"):
//! (a) `serve <model> 64` on one node against PyTorch running the same model over the same
//!     10,000 Fashion-MNIST test images held in memory (batch 64, softmax + argmax): a ResNet-20
//!     scripted and saved by PyTorch and imported, and the built-in `resnet` and `cnn` against
//!     their eager twins in PyTorch with the same weights; PyTorch both as users run it (eager,
//!     or the TorchScript file as loaded) and prepared (`torch.jit.freeze` +
//!     `optimize_for_inference`); then the node started again with `--prepare-models false`
//!     (models run as stored) against PyTorch as users run it;
//! (b) two nodes of one thread each serving the TorchScript model against two one-thread
//!     PyTorch processes running at once (sum of their rates);
//! (c) `infer` of one image and of 64 images on one node against one PyTorch call of the same
//!     size (p50, p99);
//! (d) training images/s of `cnn` and `resnet` (batch 128, SGD with Nesterov momentum) against
//!     PyTorch eager with the same layers, optimiser and threads.
//!
//! Knobs (environment): `BENCH_THREADS` (default 2), `BENCH_ROUNDS` (default 3),
//! `BENCH_PASSES` (default 2 passes over the test images per serve run), `BENCH_INFERS`
//! (default 200 calls), `BENCH_TRAIN_IMAGES` (default 12,800 per training run),
//! `BENCH_PARTS` (default `abcd`), `BENCH_MODELS` (part a, default `resnet-ts,resnet,cnn`).

use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use bus_schemas::jobs::{JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::pytorch::PyTorch;
use testkit::{env_or, median};

#[path = "pytorch/cluster.rs"]
mod cluster;

use cluster::Node;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let py = PyTorch::install();
    let parts: String = env_or("BENCH_PARTS", "abcd".to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("## Against PyTorch {}\n", torch_version(&py));
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let threads: u32 = env_or("BENCH_THREADS", 2);
        let mut one = Node::start(1, threads, dir.path(), &py).await;
        if parts.contains('a') {
            serve_one_node(&one, &py, threads).await;
        }
        if parts.contains('c') {
            infer_latency(&one, &py, threads).await;
        }
        if parts.contains('d') {
            training(&one, &py, threads).await;
        }
        if parts.contains('a') {
            one.restart_with(&["--prepare-models", "false"]).await;
            serve_as_stored(&one, &py, threads).await;
        }
        drop(one);
        if parts.contains('b') {
            let two = Node::start(2, 1, dir.path(), &py).await;
            serve_two_nodes(&two, &py).await;
        }
    });
}

fn torch_version(py: &PyTorch) -> String {
    let v = py.run(&["version"]);
    v["torch"].as_str().unwrap_or("?").to_string()
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The PyTorch arguments that run `model` as users run it and as prepared.
fn pytorch_args(node: &Node, model: &str) -> (Vec<String>, Vec<String>) {
    let (what, plain, weights) = match model {
        "resnet-ts" => (node.file("resnet-ts.pt"), "script", None),
        arch => (arch.to_string(), "eager", Some(node.file(arch))),
    };
    let mut base = vec![what];
    if let Some(w) = weights {
        base.extend(["--weights".to_string(), w]);
    }
    let with = |mode: &str| {
        let mut v = base.clone();
        v.extend(["--mode".to_string(), mode.to_string()]);
        v
    };
    (with(plain), with("frozen"))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// (a)
async fn serve_one_node(node: &Node, py: &PyTorch, threads: u32) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let queries = 10_000 * u64::from(env_or("BENCH_PASSES", 2u32));
    let t = threads.to_string();
    let q = queries.to_string();
    println!("### (a) `serve <model> 64` on one node (`--threads {threads}`) against PyTorch, {threads} threads, {queries} queries, median of {rounds} interleaved rounds\n");
    println!("| model | IDunno q/s | PyTorch as run by users q/s | IDunno / it | PyTorch prepared q/s | IDunno / it | accuracy IDunno / PyTorch |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut breakdowns = Vec::new();
    let models: String = env_or("BENCH_MODELS", "resnet-ts,resnet,cnn".to_string());
    for model in models.split(',').filter(|m| !m.is_empty()) {
        let (plain, frozen) = pytorch_args(node, model);
        let (mut ours, mut theirs, mut prepared) = (Vec::new(), Vec::new(), Vec::new());
        let mut their_acc = 0.0;
        let mut runs = Vec::new();
        for _ in 0..rounds {
            let run = node.serve(model, queries).await;
            ours.push(run.rate);
            runs.push(run);
            for (args, out) in [(&plain, &mut theirs), (&frozen, &mut prepared)] {
                let mut v = vec!["serve"];
                v.extend(strs(args));
                v.extend(["--threads", &t, "--batch", "64", "--queries", &q]);
                let r = py.run(&v);
                out.push(r["queries_per_s"].as_f64().unwrap());
                their_acc = r["accuracy"].as_f64().unwrap();
            }
        }
        let (o, p, f) = (median(&ours), median(&theirs), median(&prepared));
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let mid = &runs[runs.len() / 2];
        let acc = mid.accuracy;
        breakdowns.push(format!("- `{model}` (median round): {}", mid.breakdown()));
        println!(
            "| `{model}` | {o:.0} ({}) | {p:.0} ({}) | **{:.3}** | {f:.0} ({}) | **{:.3}** | {:.2}% / {:.2}% |",
            list(&ours),
            list(&theirs),
            o / p,
            list(&prepared),
            o / f,
            acc * 100.0,
            their_acc * 100.0
        );
    }
    println!("\nWhere IDunno's time went:\n\n{}\n", breakdowns.join("\n"));
}

/// (a) with the models run as stored (`--prepare-models false`), against PyTorch as users run
/// them: IDunno's own overhead, like for like.
async fn serve_as_stored(node: &Node, py: &PyTorch, threads: u32) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let queries = 10_000 * u64::from(env_or("BENCH_PASSES", 2u32));
    let (t, q) = (threads.to_string(), queries.to_string());
    println!("The same node started again with `--prepare-models false` (models run as stored), against PyTorch as users run them, median of {rounds} interleaved rounds:\n");
    println!("| model | IDunno as stored q/s | PyTorch as run by users q/s | IDunno / it |");
    println!("| --- | --- | --- | --- |");
    let models: String = env_or("BENCH_MODELS", "resnet-ts,resnet,cnn".to_string());
    for model in models.split(',').filter(|m| !m.is_empty()) {
        let (plain, _) = pytorch_args(node, model);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(node.serve(model, queries).await.rate);
            let mut v = vec!["serve"];
            v.extend(strs(&plain));
            v.extend(["--threads", &t, "--batch", "64", "--queries", &q]);
            theirs.push(py.run(&v)["queries_per_s"].as_f64().unwrap());
        }
        let (o, p) = (median(&ours), median(&theirs));
        println!(
            "| `{model}` | {o:.0} ({}) | {p:.0} ({}) | **{:.3}** |",
            list(&ours),
            list(&theirs),
            o / p
        );
    }
    println!();
}

/// (b)
async fn serve_two_nodes(node: &Node, py: &PyTorch) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let queries = 10_000 * u64::from(env_or("BENCH_PASSES", 2u32));
    let q = queries.to_string();
    println!("### (b) `serve resnet-ts 64` on two nodes of `--threads 1` against two one-thread PyTorch processes at once, median of {rounds} rounds\n");
    let (plain, frozen) = pytorch_args(node, "resnet-ts");
    let (mut ours, mut theirs, mut prepared) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Twice the queries, so that each node serves about as many as one PyTorch process.
        ours.push(node.serve("resnet-ts", 2 * queries).await.rate);
        for (args, out) in [(&plain, &mut theirs), (&frozen, &mut prepared)] {
            let mut v = vec!["serve"];
            v.extend(strs(args));
            v.extend(["--threads", "1", "--batch", "64", "--queries", &q]);
            let both = [py.spawn(&v), py.spawn(&v)];
            let sum: f64 = both
                .into_iter()
                .map(|c| PyTorch::output(c)["queries_per_s"].as_f64().unwrap())
                .sum();
            out.push(sum);
        }
    }
    let (o, p, f) = (median(&ours), median(&theirs), median(&prepared));
    println!("- IDunno {o:.0} q/s ({}) vs two PyTorch processes {p:.0} q/s ({}): **{:.3}**; vs two prepared PyTorch processes {f:.0} q/s ({}): **{:.3}**\n",
        list(&ours), list(&theirs), o / p, list(&prepared), o / f);
}

/// A PNG of test image `i`.
fn png(i: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(idunno_datasets::FASHION_MNIST_DIR);
    let m = idunno_datasets::import_fashion_mnist(src, dir.path(), "fm").unwrap();
    let split = idunno_datasets::load_split(dir.path(), &m, "test").unwrap();
    let at = (i % split.count) * 784;
    let img = image::GrayImage::from_raw(28, 28, split.pixels[at..at + 784].to_vec()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// (c)
async fn infer_latency(node: &Node, py: &PyTorch, threads: u32) {
    let n: usize = env_or("BENCH_INFERS", 200);
    let t = threads.to_string();
    println!("### (c) `infer` on one node against one PyTorch call of as many images ({n} calls one after another, {threads} threads)\n");
    println!("| model | images per call | IDunno p50 / p99 ms | PyTorch as run by users p50 / p99 ms | PyTorch prepared p50 / p99 ms |");
    println!("| --- | --- | --- | --- | --- |");
    let images: Vec<ByteBuf> = (0..64).map(|i| ByteBuf::from(png(i))).collect();
    for model in ["resnet-ts", "cnn"] {
        for size in [1usize, 64] {
            let mut ms = Vec::with_capacity(n);
            for _ in 0..n + 5 {
                let req = InferRequest {
                    labels: Vec::new(),
                    model: model.into(),
                    version: None,
                    images: images[..size].to_vec(),
                    timeout_ms: 10_000,
                    tensor: None,
                };
                let started = Instant::now();
                let reply: InferReply = bus_client::request(
                    &node.c.client,
                    subjects::infer(),
                    &req,
                    Duration::from_secs(15),
                )
                .await
                .unwrap();
                assert!(matches!(reply, InferReply::Done { .. }), "{reply:?}");
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            let mut ms = ms.split_off(5);
            let (p50, p99) = (pct(&mut ms, 0.5), pct(&mut ms, 0.99));
            let (plain, frozen) = pytorch_args(node, model);
            let mut theirs = Vec::new();
            for args in [&plain, &frozen] {
                let mut v = vec!["infer"];
                v.extend(strs(args));
                let (b, c) = (size.to_string(), n.to_string());
                v.extend(["--threads", &t, "--batch", &b, "--count", &c]);
                let r = py.run(&v);
                theirs.push(format!(
                    "{:.1} / {:.1}",
                    r["p50_ms"].as_f64().unwrap(),
                    r["p99_ms"].as_f64().unwrap()
                ));
            }
            println!(
                "| `{model}` | {size} | **{p50:.1}** / {p99:.1} | {} | {} |",
                theirs[0], theirs[1]
            );
        }
    }
    println!();
}

/// Images/s of a training job of `arch` over `images` training images (batch 128): the
/// median of its progress reports' rates after the first quarter of the epoch.
async fn train_rate(node: &Node, arch: &str, images: u64) -> f64 {
    let spec = JobSpec::Train(TrainSpec {
        arch: arch.into(),
        name: format!("{arch}-bench"),
        dataset: "fm".into(),
        epochs: 1,
        batch: 128,
        lr: None,
        limit: Some(images),
        seed: 0,
        workers: 1,
    });
    let id = node.jobs.submit(spec).await.unwrap();
    let mut progress = node
        .c
        .client
        .subscribe(subjects::job_progress(&id))
        .await
        .unwrap();
    let mut last: Option<Progress> = None;
    loop {
        tokio::select! {
            Some(msg) = progress.next() => {
                if let Ok(p) = decode::<Progress>(&msg.payload) {
                    last = Some(p);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let job = node.jobs.get(&id).await.unwrap();
                if job.state.is_final() {
                    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
                    break;
                }
            }
        }
    }
    // The epoch's rate from its start: reported with the last step.
    last.expect("progress reported").images_per_s
}

/// (d)
async fn training(node: &Node, py: &PyTorch, threads: u32) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let images: u64 = env_or("BENCH_TRAIN_IMAGES", 12_800);
    let t = threads.to_string();
    let steps = (images / 128).to_string();
    println!("### (d) training images/s, batch 128, SGD with Nesterov momentum, {threads} threads, {images} images per run, median of {rounds} interleaved rounds\n");
    println!("| model | IDunno job img/s | PyTorch eager img/s | IDunno / PyTorch |");
    println!("| --- | --- | --- | --- |");
    for arch in ["cnn", "resnet"] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(train_rate(node, arch, images).await);
            let v = [
                "train",
                arch,
                "--threads",
                &t,
                "--batch",
                "128",
                "--steps",
                &steps,
            ];
            theirs.push(py.figure(&v, "images_per_s"));
        }
        let (o, p) = (median(&ours), median(&theirs));
        println!(
            "| `{arch}` | {o:.0} ({}) | {p:.0} ({}) | **{:.3}** |",
            list(&ours),
            list(&theirs),
            o / p
        );
    }
    println!();
}
