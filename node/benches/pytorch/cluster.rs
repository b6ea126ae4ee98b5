//! The IDunno side of the `pytorch` bench: a cluster with the models, one `serve` run at a
//! time, and where its time went (stage metrics from `/metrics`, CPU from `/proc`).

use bus_client::jobs::JobsClient;
use bus_schemas::jobs::{JobRecord, JobState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::procstat;
use testkit::pytorch::PyTorch;
use testkit::{
    collect_results, import_fashion, serve_spec, train_quick, wait_until, Cluster, Seen,
};

const NODE: &str = env!("CARGO_BIN_EXE_idunno-node");

/// A cluster with Fashion-MNIST, `cnn` and `resnet` trained briefly, and `resnet-ts`: a
/// ResNet-20 scripted and saved by PyTorch, imported.
pub struct Node {
    pub c: Cluster,
    pub jobs: JobsClient,
    seen: Seen,
    /// Model files fetched back: `cnn`, `resnet` (IDunno files), `resnet-ts.pt` (TorchScript).
    files: PathBuf,
}

impl Node {
    pub async fn start(n: usize, threads: u32, dir: &Path, py: &PyTorch) -> Node {
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

    /// Starts every node again with `extra` flags added (e.g. `--prepare-models false`), and
    /// waits until they are back and answer jobs requests.
    pub async fn restart_with(&mut self, extra: &[&str]) {
        self.c.add_flags(extra);
        for i in 0..self.c.nodes.len() {
            let id = self.c.nodes[i].id.clone();
            self.c.nodes[i].kill9();
            self.c.nodes[i] = self.c.spawn_node(&id);
        }
        self.c.wait_all_alive(Duration::from_secs(60)).await;
        wait_until("jobs are answered", Duration::from_secs(60), || async {
            self.jobs.list().await.ok().map(|_| ())
        })
        .await;
    }

    pub fn file(&self, name: &str) -> String {
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
    pub async fn serve(&self, model: &str, queries: u64) -> Served {
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
            worker_ms: s.proc_ms.map_or(0.0, |p| p.median),
            stage_ms,
            cpu_ms,
        }
    }
}

/// One `serve` run.
pub struct Served {
    pub rate: f64,
    pub accuracy: f64,
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
    pub fn breakdown(&self) -> String {
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
