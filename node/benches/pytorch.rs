//! IDunno against PyTorch itself (`make bench`; the full torch of `infra/pytorch.sh`, installed
//! once by this bench when missing), on the same machine, same threads, same data, in
//! interleaved rounds whose medians are compared (README, "Measured figures"):
//! (a) `serve <model> 64` on one node against PyTorch running the same model over the same
//!     10,000 Fashion-MNIST test images held in memory (batch 64, softmax + argmax): a ResNet-20
//!     scripted and saved by PyTorch and imported, and the built-in `resnet` and `cnn` against
//!     their eager twins in PyTorch with the same weights; PyTorch both as users run it (eager,
//!     or the TorchScript file as loaded) and prepared (`torch.jit.freeze` +
//!     `optimize_for_inference`);
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

use bus_client::jobs::JobsClient;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState, Progress, TrainSpec};
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::procstat;
use testkit::pytorch::PyTorch;
use testkit::{
    collect_results, env_or, import_fashion, median, serve_spec, train_quick, wait_until, Cluster,
    Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

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
        let one = Node::start(1, threads, dir.path(), &py).await;
        if parts.contains('a') {
            serve_one_node(&one, &py, threads).await;
        }
        if parts.contains('c') {
            infer_latency(&one, &py, threads).await;
        }
        if parts.contains('d') {
            training(&one, &py, threads).await;
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

/// A cluster with Fashion-MNIST, `cnn` and `resnet` trained briefly, and `resnet-ts`: a
/// ResNet-20 scripted and saved by PyTorch, imported.
struct Node {
    c: Cluster,
    jobs: JobsClient,
    seen: Seen,
    /// Model files fetched back: `cnn`, `resnet` (IDunno files), `resnet-ts.pt` (TorchScript).
    files: PathBuf,
}

impl Node {
    async fn start(n: usize, threads: u32, dir: &Path, py: &PyTorch) -> Node {
        let t = threads.to_string();
        let flags = ["--threads", &t, "--replication", "1", "--write-quorum", "1"];
        let c = Cluster::start_with(Path::new(NODE), n, &flags).await;
        let (fs, jobs) = import_fashion(&c.client, "fm").await;
        let files = dir.join(format!("models-{n}"));
        std::fs::create_dir_all(&files).unwrap();
        for arch in ["cnn", "resnet"] {
            train_quick(&jobs, arch, 1000).await;
            fs.get(&format!("models/{arch}"), None, &files.join(arch), None)
                .await
                .unwrap();
        }
        let ts = files.join("resnet-ts.pt");
        py.run(&["script", "resnet", ts.to_str().unwrap()]);
        testkit::import_torchscript(&fs, &jobs, &ts, "resnet-ts").await;
        let seen = collect_results(&c.client).await;
        Node {
            c,
            jobs,
            seen,
            files,
        }
    }

    fn file(&self, name: &str) -> String {
        self.files.join(name).display().to_string()
    }

    /// Each node's `idunno_serve_stage_seconds_total` by stage, and its served batches.
    async fn stages(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for n in &self.c.nodes {
            let Some(addr) = self.c.seen(&n.id, &n.id).await.and_then(|r| r.http) else {
                continue;
            };
            let text = testkit::http::get(&addr, "/metrics", &[]).body;
            for line in text.lines() {
                let Some((key, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let Ok(v) = value.parse::<f64>() else {
                    continue;
                };
                let stage = key
                    .strip_prefix("idunno_serve_stage_seconds_total{stage=\"")
                    .and_then(|k| k.strip_suffix("\"}"));
                if let Some(stage) = stage {
                    *out.entry(stage.to_string()).or_insert(0.0) += v;
                } else if key == "idunno_serve_batches_total" {
                    *out.entry("batches".to_string()).or_insert(0.0) += v;
                }
            }
        }
        out
    }

    /// CPU seconds used so far: each node's threads by name, and nats-server.
    fn cpu(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for n in &self.c.nodes {
            for (name, secs) in procstat::cpu_by_thread(n.pid()) {
                *out.entry(format!("node {name}")).or_insert(0.0) += secs;
            }
        }
        out.insert(
            "nats-server".into(),
            procstat::cpu_seconds(self.c.nats.pid()),
        );
        out
    }

    /// `serve <model> 64` over `queries` test images: queries/s from first to last result,
    /// accuracy, and where the time went.
    async fn serve(&self, model: &str, queries: u64) -> Served {
        let passes = (queries / 10_000) as u32;
        let (before, stages_before) = (self.cpu(), self.stages().await);
        let id = self
            .jobs
            .submit(serve_spec(model, Some(passes)))
            .await
            .unwrap();
        let done = wait_final(&self.jobs, &id).await;
        let (after, stages_after) = (self.cpu(), self.stages().await);
        let served = stages_after.get("batches").unwrap_or(&0.0)
            - stages_before.get("batches").unwrap_or(&0.0);
        let stage_ms = stages_after
            .iter()
            .filter(|(k, _)| *k != "batches")
            .map(|(k, v)| {
                let ms = (v - stages_before.get(k).unwrap_or(&0.0)) * 1000.0 / served.max(1.0);
                (k.clone(), ms)
            })
            .collect();
        assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        let times: Vec<Instant> = {
            let seen = self.seen.lock().unwrap();
            seen.iter().filter(|s| s.1 == id).map(|s| s.0).collect()
        };
        let (first, last) = (times[0], *times.last().unwrap());
        let s = done.serve.unwrap();
        let batches = queries.div_ceil(64) as f64;
        let cpu_ms = after
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - before.get(k).unwrap_or(&0.0)) * 1000.0 / batches,
                )
            })
            .filter(|(_, ms)| *ms >= 0.05)
            .collect();
        Served {
            rate: (queries - 64) as f64 / (last - first).as_secs_f64(),
            accuracy: s.correct.unwrap_or(0) as f64 / s.done.max(1) as f64,
            worker_ms: s.proc_ms.get(2).copied().unwrap_or(0.0),
            stage_ms,
            cpu_ms,
        }
    }
}

/// One `serve` run.
struct Served {
    rate: f64,
    accuracy: f64,
    /// The job's median time per batch on its worker, from taking it to its results stored.
    worker_ms: f64,
    /// Milliseconds per batch in each stage (`idunno_serve_stage_seconds_total`), summed over
    /// lanes and tasks.
    stage_ms: BTreeMap<String, f64>,
    /// CPU milliseconds per batch of 64, by thread group (node threads by name, nats-server),
    /// over the whole job (start and end included).
    cpu_ms: BTreeMap<String, f64>,
}

impl Served {
    /// Milliseconds per batch: wall time, stages, CPU by thread group.
    fn breakdown(&self) -> String {
        let order = [
            "queued",
            "input",
            "forward",
            "classify",
            "results",
            "encode",
            "publish",
            "reply",
            "coordinate",
        ];
        let stages = order
            .iter()
            .map(|k| format!("{k} {:.2}", self.stage_ms.get(*k).unwrap_or(&0.0)))
            .collect::<Vec<_>>()
            .join(", ");
        let cpu = self
            .cpu_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{:.2} ms of wall time per batch of 64 (first to last result, lanes side by side); on its worker {:.2} ms from taking it to its results stored (median); ms per batch in each stage: {stages}; CPU ms per batch: {cpu}",
            64_000.0 / self.rate,
            self.worker_ms
        )
    }
}

async fn wait_final(jobs: &JobsClient, id: &str) -> JobRecord {
    wait_until(
        &format!("job {id} ends"),
        Duration::from_secs(1800),
        || async { jobs.get(id).await.ok().filter(|j| j.state.is_final()) },
    )
    .await
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
                    model: model.into(),
                    version: None,
                    images: images[..size].to_vec(),
                    timeout_ms: 10_000,
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
