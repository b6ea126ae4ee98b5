//! The node's configuration: command-line flags and the typed config built from them.

use crate::cache::FetchLimits;
use crate::dashboard::{HttpLimits, ServerLimits};
use crate::flags::ensure;
pub use crate::flags::ConfigError;
use crate::membership::args::MembershipArgs;
use crate::membership::detector::DetectorConfig;
use crate::sdfs::SdfsConfig;
use crate::serving::args::InferArgs;
pub use crate::serving::args::InferConfig;
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
    /// `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    /// The tch device, or why it cannot be used on this machine.
    pub fn tch(self) -> Result<tch::Device, ConfigError> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            Device::Cuda => Err(ConfigError("--device cuda: no CUDA device is usable (this build links libtorch's CPU library; see the README on CUDA builds)".to_string())),
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
    #[arg(long, env = "IDUNNO_ID", required_unless_present = "version")]
    pub id: Option<String>,
    /// Directory for this node's files and log.
    #[arg(long, env = "IDUNNO_DATA_DIR", required_unless_present = "version")]
    pub data_dir: Option<PathBuf>,
    /// The machine this node runs on, as peers see it (SDFS puts a file's replicas on distinct
    /// hosts first): default the machine's hostname. Nodes on one machine must give the same.
    #[arg(long, env = "IDUNNO_HOST")]
    pub host: Option<String>,
    /// The zone this machine is in (a rack, a room, a data centre), if you have several: SDFS
    /// spreads a file's replicas over zones as well as hosts. Same characters as `--host`.
    #[arg(long, env = "IDUNNO_ZONE")]
    pub zone: Option<String>,
    /// The bus.
    #[command(flatten)]
    pub bus: BusOptions,
    /// Address of the dashboard and JSON API (port 0 picks a free port).
    #[arg(long, env = "IDUNNO_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Token the JSON API, event stream and metrics require (bearer header or the page's
    /// login cookie); without it they are open, so keep `--http` on loopback then.
    #[arg(long, env = "IDUNNO_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// A file holding the token (as `idunno secure init` writes it), instead of --http-token:
    /// the token stays out of the process list.
    #[arg(long, env = "IDUNNO_HTTP_TOKEN_FILE", conflicts_with = "http_token")]
    pub http_token_file: Option<PathBuf>,
    /// Serve the dashboard over HTTPS with this certificate (PEM, with --http-tls-key).
    #[arg(long, env = "IDUNNO_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --http-tls-cert.
    #[arg(long, env = "IDUNNO_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
    /// Host names the dashboard answers to besides its address (and localhost on loopback),
    /// comma-separated, e.g. the name a proxy or DNS gives it; `*` for any.
    #[arg(long, env = "IDUNNO_HTTP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub http_allowed_hosts: Vec<String>,
    /// Largest `POST /api/infer` body, in bytes.
    #[arg(long, env = "IDUNNO_HTTP_MAX_INFER_BODY", default_value_t = crate::dashboard::DEFAULT_MAX_INFER_BODY)]
    pub http_max_infer_body: usize,
    /// Largest model or dataset uploaded through the dashboard, in bytes.
    #[arg(long, env = "IDUNNO_HTTP_MAX_UPLOAD_BODY", default_value_t = crate::dashboard::DEFAULT_MAX_UPLOAD_BODY)]
    pub http_max_upload_body: u64,
    /// Dashboard event streams open at once.
    #[arg(long, env = "IDUNNO_HTTP_MAX_STREAMS", default_value_t = crate::dashboard::DEFAULT_MAX_STREAMS)]
    pub http_max_streams: usize,
    /// Dashboard connections open at once.
    #[arg(long, env = "IDUNNO_HTTP_MAX_CONNECTIONS", default_value_t = crate::dashboard::DEFAULT_MAX_CONNECTIONS)]
    pub http_max_connections: usize,
    /// Longest a dashboard client may take to send a request's headers (or stay idle between
    /// requests), in milliseconds.
    #[arg(long, env = "IDUNNO_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Threads for tch (default: all cores).
    #[arg(long, env = "IDUNNO_THREADS")]
    pub threads: Option<usize>,
    /// Where models run.
    #[arg(long, env = "IDUNNO_DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Directory of the built dashboard (frontend/dist).
    #[arg(long, env = "IDUNNO_FRONTEND_DIR")]
    pub frontend_dir: Option<PathBuf>,
    /// Membership: failure-detector timing and limits.
    #[command(flatten)]
    pub membership: MembershipArgs,
    /// SDFS: replicas per file version (effective: at most the live nodes).
    #[arg(long, env = "IDUNNO_REPLICATION", default_value_t = 4)]
    pub replication: usize,
    /// SDFS: replicas that must store a version before a put succeeds.
    #[arg(long, env = "IDUNNO_WRITE_QUORUM", default_value_t = 3)]
    pub write_quorum: usize,
    /// SDFS: versions kept per file.
    #[arg(long, env = "IDUNNO_KEEP_VERSIONS", default_value_t = 5)]
    pub keep_versions: usize,
    /// SDFS: the largest file version this node stores, in bytes (larger puts are refused).
    #[arg(long, env = "IDUNNO_SDFS_MAX_FILE_BYTES", default_value_t = crate::sdfs::DEFAULT_MAX_FILE_BYTES)]
    pub sdfs_max_file_bytes: u64,
    /// SDFS: replica stores this node runs at once; more are refused as `overloaded`.
    #[arg(long, env = "IDUNNO_SDFS_STORE_SLOTS", default_value_t = 4)]
    pub sdfs_store_slots: usize,
    /// Online inference: batching, limits and the inference cache.
    #[command(flatten)]
    pub infer: InferArgs,
    /// Largest dataset file a worker fetches and loads, in bytes: stored size and decompressed
    /// data (N·C·H·W) alike.
    #[arg(long, env = "IDUNNO_MAX_DATASET_FILE_BYTES", default_value_t = idunno_datasets::limits::DEFAULT_MAX_FILE_BYTES)]
    pub max_dataset_file_bytes: u64,
    /// Largest model, checkpoint or TorchScript upload a worker reads into memory, in bytes.
    #[arg(long, env = "IDUNNO_MAX_MODEL_FILE_BYTES", default_value_t = crate::cache::DEFAULT_MAX_MODEL_FILE_BYTES)]
    pub max_model_file_bytes: u64,
    /// Jobs: a job fails once this many of its workers died running it (a training or import
    /// job's attempts, or the workers holding one batch of an inference job), rather than
    /// walking the cluster. Applied by the coordinator: give every node the same value.
    #[arg(long, env = "IDUNNO_MAX_WORKER_DEATHS", default_value_t = crate::jobs::DEFAULT_MAX_WORKER_DEATHS)]
    pub max_worker_deaths: u32,
    /// Jobs: the ended jobs the cluster keeps (their records and results); the oldest beyond
    /// these are removed by the coordinator. Give every node the same value.
    #[arg(long, env = "IDUNNO_KEEP_JOBS", default_value_t = crate::jobs::DEFAULT_KEEP_JOBS)]
    pub keep_jobs: usize,
    /// Log lines as text (colour only on a terminal, never with `NO_COLOR`) or as JSON
    /// objects, one per line, on standard error and in `<data-dir>/node.log`.
    #[arg(long, env = "IDUNNO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::logging::LogFormat,
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
    /// How log lines are written.
    pub log_format: crate::logging::LogFormat,
    /// The machine this node runs on.
    pub host: String,
    /// The zone of that machine, if it names one.
    pub zone: Option<String>,
    /// The bus.
    pub bus: BusOptions,
    /// Dashboard address.
    pub http: SocketAddr,
    /// The API token, if the API needs one.
    pub http_token: Option<HttpToken>,
    /// The dashboard's HTTPS certificate and key, if it serves HTTPS.
    pub http_tls: Option<(PathBuf, PathBuf)>,
    /// Dashboard request limits and served host names.
    pub http_limits: HttpLimits,
    /// Dashboard connection limits.
    pub http_server: ServerLimits,
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
    /// Size limits of the dataset and model files workers fetch.
    pub files: FetchLimits,
    /// Worker deaths after which a job fails.
    pub max_worker_deaths: u32,
    /// Ended jobs kept.
    pub keep_jobs: usize,
}

/// The dashboard API's token; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken(pub String);

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(<redacted>)")
    }
}

/// The dashboard built in this checkout, used when `--frontend-dir` is not given and the
/// binary is not in a bundle.
pub const DEFAULT_FRONTEND_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/dist");

/// Where a bundle (`make dist`) keeps the dashboard, relative to the binary's directory.
pub const BUNDLED_FRONTEND_DIR: &str = "../share/idunno/dashboard";

/// The dashboard to serve without `--frontend-dir`: the bundle's, found relative to the binary
/// (`<bundle>/bin/idunno-node` → `<bundle>/share/idunno/dashboard`), else this checkout's.
pub fn default_frontend_dir() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let bundled = exe
        .as_deref()
        .and_then(|e| e.parent())
        .map(|d| d.join(BUNDLED_FRONTEND_DIR));
    match bundled {
        Some(dir) if dir.join("index.html").is_file() => dir,
        _ => DEFAULT_FRONTEND_DIR.into(),
    }
}

impl NodeArgs {
    /// Builds and validates the config.
    pub fn into_config(self) -> Result<NodeConfig, ConfigError> {
        let id = self
            .id
            .ok_or_else(|| ConfigError("--id is required".to_string()))?;
        let data_dir = self
            .data_dir
            .ok_or_else(|| ConfigError("--data-dir is required".to_string()))?;
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let detector = self.membership.detector()?;
        let http_token = http_token(self.http_token, self.http_token_file.as_deref())?;
        let cfg = NodeConfig {
            id,
            data_dir,
            log_format: self.log_format,
            host: self.host.unwrap_or_else(crate::hostname),
            zone: self.zone,
            bus: self.bus,
            http: self.http,
            http_token: http_token.map(HttpToken),
            http_tls: self.http_tls_cert.zip(self.http_tls_key),
            http_limits: HttpLimits {
                max_infer_body: self.http_max_infer_body,
                max_upload_body: self.http_max_upload_body,
                max_streams: self.http_max_streams,
                allowed_hosts: self.http_allowed_hosts,
            },
            http_server: ServerLimits {
                max_connections: self.http_max_connections,
                header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            },
            threads,
            device: self.device,
            frontend_dir: self.frontend_dir.unwrap_or_else(default_frontend_dir),
            detector,
            request_timeout: Duration::from_secs(2),
            sdfs: SdfsConfig {
                replication: self.replication,
                write_quorum: self.write_quorum,
                keep_versions: self.keep_versions,
                max_file_bytes: self.sdfs_max_file_bytes,
                store_slots: self.sdfs_store_slots,
                ..SdfsConfig::default()
            },
            infer: self.infer.config(threads)?,
            files: FetchLimits {
                datasets: idunno_datasets::Limits {
                    max_file_bytes: self.max_dataset_file_bytes,
                },
                max_model_bytes: self.max_model_file_bytes,
            },
            max_worker_deaths: self.max_worker_deaths,
            keep_jobs: self.keep_jobs,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl NodeConfig {
    /// Checks the config; the error says which setting is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        bus_schemas::validate_token(&self.id).map_err(|e| ConfigError(format!("--id: {e}")))?;
        validate_host("--host", &self.host)?;
        if let Some(zone) = &self.zone {
            validate_host("--zone", zone)?;
        }
        self.bus.validate()?;
        ensure(self.threads >= 1, || {
            "--threads must be at least 1".to_string()
        })?;
        if let Some(HttpToken(t)) = &self.http_token {
            ensure(
                t.len() >= 8
                    && t.bytes()
                        .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)),
                || {
                    "--http-token must be at least 8 printable characters, without spaces, ';', ',', '\"' or '\\'".to_string()
                },
            )?;
        }
        self.validate_http()?;
        self.device.tch()?;
        let s = &self.sdfs;
        ensure(s.replication >= 1, || {
            "--replication must be at least 1".to_string()
        })?;
        ensure((1..=s.replication).contains(&s.write_quorum), || {
            "--write-quorum must be between 1 and --replication".to_string()
        })?;
        ensure(s.keep_versions >= 1, || {
            "--keep-versions must be at least 1".to_string()
        })?;
        ensure(s.max_file_bytes >= 1, || {
            "--sdfs-max-file-bytes must be at least 1".to_string()
        })?;
        ensure((1..=256).contains(&s.store_slots), || {
            "--sdfs-store-slots must be between 1 and 256".to_string()
        })?;
        crate::membership::args::validate(&self.detector)?;
        self.infer.validate()?;
        ensure(
            self.files.datasets.max_file_bytes >= 1 && self.files.max_model_bytes >= 1,
            || "--max-dataset-file-bytes and --max-model-file-bytes must be at least 1".to_string(),
        )?;
        let deaths = crate::jobs::MAX_WORKER_DEATHS_LIMIT;
        ensure((1..=deaths).contains(&self.max_worker_deaths), || {
            format!(
                "--max-worker-deaths must be between 1 and {deaths}, not {}",
                self.max_worker_deaths
            )
        })?;
        ensure(self.keep_jobs >= 1, || {
            "--keep-jobs must be at least 1 (the newest ended job is always kept)".to_string()
        })?;
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let (l, s) = (&self.http_limits, &self.http_server);
        ensure((1024..=(1 << 30)).contains(&l.max_infer_body), || {
            "--http-max-infer-body must be between 1024 and 1073741824 bytes".to_string()
        })?;
        ensure(l.max_upload_body >= 1024, || {
            "--http-max-upload-body must be at least 1024 bytes".to_string()
        })?;
        ensure((1..=100_000).contains(&l.max_streams), || {
            "--http-max-streams must be between 1 and 100000".to_string()
        })?;
        ensure((1..=1_000_000).contains(&s.max_connections), || {
            "--http-max-connections must be between 1 and 1000000".to_string()
        })?;
        ensure(
            (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&s.header_timeout),
            || "--http-header-timeout-ms must be between 100 and 600000".to_string(),
        )?;
        for h in &l.allowed_hosts {
            let ok = h == "*"
                || (!h.is_empty()
                    && h.len() <= 253
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b)));
            ensure(ok, || {
                format!("--http-allowed-hosts: {h:?} is not a host name (no port, no scheme)")
            })?;
        }
        Ok(())
    }

    /// A config for tests: the given bus URL, a free dashboard port, one thread.
    pub fn for_test(id: &str, data_dir: PathBuf, nats_url: &str) -> Self {
        Self {
            id: id.into(),
            data_dir,
            log_format: crate::logging::LogFormat::Text,
            host: "localhost".into(),
            zone: None,
            bus: BusOptions::for_url(nats_url),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_token: None,
            http_tls: None,
            http_limits: HttpLimits::default(),
            http_server: ServerLimits::default(),
            threads: 1,
            device: Device::Cpu,
            frontend_dir: DEFAULT_FRONTEND_DIR.into(),
            detector: DetectorConfig::default(),
            request_timeout: Duration::from_secs(2),
            sdfs: SdfsConfig::default(),
            infer: InferConfig::default(),
            files: FetchLimits::default(),
            max_worker_deaths: crate::jobs::DEFAULT_MAX_WORKER_DEATHS,
            keep_jobs: crate::jobs::DEFAULT_KEEP_JOBS,
        }
    }
}

/// A host (or zone) name as peers accept it: 1 to [`MAX_HOST_LEN`] bytes of letters, digits,
/// '-', '_' and '.'.
///
/// [`MAX_HOST_LEN`]: bus_schemas::membership::plausible::MAX_HOST_LEN
fn validate_host(flag: &str, host: &str) -> Result<(), ConfigError> {
    let max = bus_schemas::membership::plausible::MAX_HOST_LEN;
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    ensure(
        !host.is_empty() && host.len() <= max && host.bytes().all(ok),
        || format!("{flag} must be 1 to {max} letters, digits, '-', '_' or '.', not {host:?}"),
    )?;
    Ok(())
}

/// The dashboard's token: `--http-token`, or the contents of `--http-token-file`.
fn http_token(
    token: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, ConfigError> {
    match (token, file) {
        (Some(token), _) => Ok(Some(token)),
        (None, Some(path)) => Ok(Some(
            std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("--http-token-file {}: {e}", path.display())))?
                .trim()
                .to_string(),
        )),
        (None, None) => Ok(None),
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
    fn bad_hosts_are_refused() {
        let mut cfg = NodeConfig::for_test("ok", "/tmp/x".into(), "nats://127.0.0.1:1");
        for bad in ["", "a b", "h\u{1b}[2J", &"h".repeat(254)] {
            cfg.host = bad.into();
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
        cfg.host = "rack-1.example.org".into();
        assert!(cfg.validate().is_ok());
        cfg.zone = Some("room 2".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.starts_with("--zone must be"), "{err}");
        cfg.zone = Some("room-2".into());
        assert!(cfg.validate().is_ok());
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
