//! The node's configuration: command-line flags and the typed config built from them.

use crate::membership::detector::DetectorConfig;
use crate::sdfs::SdfsConfig;
use bus_client::BusOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where tch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU.
    Cuda,
}

impl Device {
    /// The tch device, or why it cannot be used on this machine.
    pub fn tch(self) -> anyhow::Result<tch::Device> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            Device::Cuda => anyhow::bail!(
                "--device cuda: no CUDA device is usable (this build links libtorch's CPU library; see the README on CUDA builds)"
            ),
        }
    }
}

/// `idunno-node` flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "idunno-node",
    about = "An IDunno cluster node",
    disable_version_flag = true
)]
pub struct NodeArgs {
    /// This node's id: letters, digits, '-' and '_', unique in the cluster.
    #[arg(long, required_unless_present = "version")]
    pub id: Option<String>,
    /// Directory for this node's files and log.
    #[arg(long, required_unless_present = "version")]
    pub data_dir: Option<PathBuf>,
    /// The bus.
    #[command(flatten)]
    pub bus: BusOptions,
    /// Address of the dashboard and JSON API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Token the JSON API, event stream and metrics require (bearer header or the page's
    /// login cookie); without it they are open, so keep `--http` on loopback then.
    #[arg(long, env = "IDUNNO_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Threads for tch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where models run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Directory of the built dashboard (frontend/dist).
    #[arg(long)]
    pub frontend_dir: Option<PathBuf>,
    /// Failure-detector protocol period in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub probe_period_ms: u64,
    /// SDFS: replicas per file version (effective: at most the live nodes).
    #[arg(long, default_value_t = 4)]
    pub replication: usize,
    /// SDFS: replicas that must store a version before a put succeeds.
    #[arg(long, default_value_t = 3)]
    pub write_quorum: usize,
    /// SDFS: versions kept per file.
    #[arg(long, default_value_t = 5)]
    pub keep_versions: usize,
    /// Copies JetStream keeps of the metadata bucket (3 in a 3-server NATS cluster).
    #[arg(long, default_value_t = 1)]
    pub kv_replicas: usize,
    /// Online inference: most images in one batch.
    #[arg(long, default_value_t = 32)]
    pub infer_max_batch: usize,
    /// Online inference: longest a request waits for others to batch with, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub infer_max_delay_ms: u64,
    /// Jobs: a job fails once this many of its workers died running it (a training or import
    /// job's attempts, or the workers holding one batch of an inference job), rather than
    /// walking the cluster. Applied by the coordinator: give every node the same value.
    #[arg(long, env = "IDUNNO_MAX_WORKER_DEATHS", default_value_t = crate::jobs::DEFAULT_MAX_WORKER_DEATHS)]
    pub max_worker_deaths: u32,
    /// Print the version and the libtorch it runs on, then exit.
    #[arg(long, short = 'V')]
    pub version: bool,
}

/// The node's validated configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id.
    pub id: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The bus.
    pub bus: BusOptions,
    /// Dashboard address.
    pub http: SocketAddr,
    /// The API token, if the API needs one.
    pub http_token: Option<HttpToken>,
    /// tch threads.
    pub threads: usize,
    /// tch device.
    pub device: Device,
    /// Built dashboard directory.
    pub frontend_dir: PathBuf,
    /// Failure detector timing.
    pub detector: DetectorConfig,
    /// Bound on every request to a peer.
    pub request_timeout: Duration,
    /// SDFS settings.
    pub sdfs: SdfsConfig,
    /// Online inference batching.
    pub infer: InferConfig,
    /// Worker deaths after which a job fails.
    pub max_worker_deaths: u32,
}

/// The dashboard API's token; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken(pub String);

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(<redacted>)")
    }
}

/// How a node batches online inference requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferConfig {
    /// Most images in one batch.
    pub max_batch: usize,
    /// Longest a request waits for others to batch with.
    pub max_delay: Duration,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_delay: Duration::from_millis(5),
        }
    }
}

/// The dashboard built in this checkout, used when `--frontend-dir` is not given.
pub const DEFAULT_FRONTEND_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/dist");

impl NodeArgs {
    /// Builds and validates the config.
    pub fn into_config(self) -> anyhow::Result<NodeConfig> {
        let id = self.id.ok_or_else(|| anyhow::anyhow!("--id is required"))?;
        let data_dir = self
            .data_dir
            .ok_or_else(|| anyhow::anyhow!("--data-dir is required"))?;
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let period = Duration::from_millis(self.probe_period_ms);
        let cfg = NodeConfig {
            id,
            data_dir,
            bus: self.bus,
            http: self.http,
            http_token: self.http_token.map(HttpToken),
            threads,
            device: self.device,
            frontend_dir: self
                .frontend_dir
                .unwrap_or_else(|| DEFAULT_FRONTEND_DIR.into()),
            detector: DetectorConfig::with_period(period),
            request_timeout: Duration::from_secs(2),
            sdfs: SdfsConfig {
                replication: self.replication,
                write_quorum: self.write_quorum,
                keep_versions: self.keep_versions,
                meta_replicas: self.kv_replicas,
                ..SdfsConfig::default()
            },
            infer: InferConfig {
                max_batch: self.infer_max_batch,
                max_delay: Duration::from_millis(self.infer_max_delay_ms),
            },
            max_worker_deaths: self.max_worker_deaths,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl NodeConfig {
    /// Checks the config; the error says which setting is wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        bus_schemas::validate_token(&self.id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
        self.bus.validate()?;
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        if let Some(HttpToken(t)) = &self.http_token {
            anyhow::ensure!(
                t.len() >= 8 && t.bytes().all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)),
                "--http-token must be at least 8 printable characters, without spaces, ';', ',', '\"' or '\\'"
            );
        }
        self.device.tch()?;
        let s = &self.sdfs;
        anyhow::ensure!(s.replication >= 1, "--replication must be at least 1");
        anyhow::ensure!(
            (1..=s.replication).contains(&s.write_quorum),
            "--write-quorum must be between 1 and --replication"
        );
        anyhow::ensure!(s.keep_versions >= 1, "--keep-versions must be at least 1");
        anyhow::ensure!(
            (1..=5).contains(&s.meta_replicas),
            "--kv-replicas must be between 1 and 5"
        );
        anyhow::ensure!(
            self.detector.period >= Duration::from_millis(20),
            "--probe-period-ms must be at least 20"
        );
        anyhow::ensure!(
            (1..=4096).contains(&self.infer.max_batch),
            "--infer-max-batch must be between 1 and 4096"
        );
        anyhow::ensure!(
            self.infer.max_delay <= Duration::from_secs(10),
            "--infer-max-delay-ms must be at most 10000"
        );
        let deaths = crate::jobs::MAX_WORKER_DEATHS_LIMIT;
        anyhow::ensure!(
            (1..=deaths).contains(&self.max_worker_deaths),
            "--max-worker-deaths must be between 1 and {deaths}, not {}",
            self.max_worker_deaths
        );
        Ok(())
    }

    /// A config for tests: the given bus URL, a free dashboard port, one thread.
    pub fn for_test(id: &str, data_dir: PathBuf, nats_url: &str) -> Self {
        Self {
            id: id.into(),
            data_dir,
            bus: BusOptions::for_url(nats_url),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_token: None,
            threads: 1,
            device: Device::Cpu,
            frontend_dir: DEFAULT_FRONTEND_DIR.into(),
            detector: DetectorConfig::default(),
            request_timeout: Duration::from_secs(2),
            sdfs: SdfsConfig::default(),
            infer: InferConfig::default(),
            max_worker_deaths: crate::jobs::DEFAULT_MAX_WORKER_DEATHS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ids_are_refused() {
        let mut cfg = NodeConfig::for_test("ok", "/tmp/x".into(), "nats://127.0.0.1:1");
        assert!(cfg.validate().is_ok());
        cfg.id = "a.b".into();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn tokens_are_checked_and_never_printed() {
        let mut cfg = NodeConfig::for_test("ok", "/tmp/x".into(), "nats://127.0.0.1:1");
        cfg.http_token = Some(HttpToken("short".into()));
        assert!(cfg.validate().is_err());
        cfg.http_token = Some(HttpToken("a-long-secret".into()));
        assert!(cfg.validate().is_ok());
        assert!(!format!("{cfg:?}").contains("a-long-secret"));
    }
}
