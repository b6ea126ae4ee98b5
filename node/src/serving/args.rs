//! The node's online-inference flags and the inference config built from them.

use super::executor::Lanes;
use crate::flags::{ensure, ConfigError};

/// Default of `--serving-cache-bytes`: models and splits kept in memory, 2 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 2 << 30;
use std::time::Duration;

/// `idunno-node` online-inference flags.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    /// Online inference: most images in one batch.
    #[arg(long, env = "IDUNNO_INFER_MAX_BATCH", default_value_t = 32)]
    pub infer_max_batch: usize,
    /// Online inference: longest a request waits for others to batch with, in milliseconds
    /// (default 0: a request runs at once when a lane is free, and requests that arrive while
    /// one runs are batched together, as Triton's dynamic batcher does by default).
    #[arg(long, env = "IDUNNO_INFER_MAX_DELAY_MS", default_value_t = 0)]
    pub infer_max_delay_ms: u64,
    /// Online inference: most requests this node handles at once; one beyond is answered at
    /// once with `overloaded`.
    #[arg(long, env = "IDUNNO_INFER_MAX_INFLIGHT", default_value_t = 64)]
    pub infer_max_inflight: usize,
    /// Online inference: the most of the inference thread's time online requests take while
    /// jobs are being served, in percent (1 to 100); past it, new requests are answered
    /// `overloaded` at once. Raise it to favour online latency over batch jobs.
    #[arg(long, env = "IDUNNO_INFER_ONLINE_SHARE", default_value_t = super::share::DEFAULT_ONLINE_SHARE_PERCENT)]
    pub infer_online_share: u32,
    /// Inference: bytes of models and dataset splits kept in memory (least recently used
    /// evicted first; one in use by a job stays alive until the job lets go).
    #[arg(long, env = "IDUNNO_SERVING_CACHE_BYTES", default_value_t = DEFAULT_CACHE_BYTES)]
    pub serving_cache_bytes: u64,
    /// Inference: prepare each model once when it is loaded, as PyTorch's
    /// `torch.jit.freeze` + `optimize_for_inference` do (batch norm folded, convolution and
    /// ReLU fused, weights prepacked); `false` runs models as stored.
    #[arg(long, env = "IDUNNO_PREPARE_MODELS", default_value_t = true, action = clap::ArgAction::Set)]
    pub prepare_models: bool,
    /// Inference: lanes (threads that each run one batch at a time) dividing `--threads`
    /// between them (default: one per thread, each batch on one libtorch thread; fewer lanes
    /// give each batch more threads, for the latency of single requests).
    #[arg(long, env = "IDUNNO_INFERENCE_LANES")]
    pub inference_lanes: Option<usize>,
}

impl InferArgs {
    /// The inference config for a node of `threads` libtorch threads; the error names the
    /// flag that is out of range.
    pub fn config(&self, threads: usize) -> Result<InferConfig, ConfigError> {
        if let Some(lanes) = self.inference_lanes {
            ensure((1..=threads.max(1)).contains(&lanes), || {
                format!("--inference-lanes must be between 1 and --threads ({threads})")
            })?;
        }
        let cfg = InferConfig {
            max_batch: self.infer_max_batch,
            max_delay: Duration::from_millis(self.infer_max_delay_ms),
            max_inflight: self.infer_max_inflight,
            online_share: self.infer_online_share,
            cache_bytes: self.serving_cache_bytes,
            prepare_models: self.prepare_models,
            lanes: Lanes::for_threads(threads, self.inference_lanes),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// How a node batches online inference requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferConfig {
    /// Most images in one batch.
    pub max_batch: usize,
    /// Longest a request waits for others to batch with.
    pub max_delay: Duration,
    /// Most requests handled at once (`--infer-max-inflight`).
    pub max_inflight: usize,
    /// Percent of the inference thread's time online requests take while jobs run
    /// (`--infer-online-share`).
    pub online_share: u32,
    /// Bytes of models and splits the inference engine keeps (`--serving-cache-bytes`).
    pub cache_bytes: u64,
    /// Whether models are prepared for inference when loaded (`--prepare-models`).
    pub prepare_models: bool,
    /// The inference lanes and their libtorch threads (`--inference-lanes`, `--threads`).
    pub lanes: Lanes,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_delay: Duration::ZERO,
            max_inflight: 64,
            online_share: super::share::DEFAULT_ONLINE_SHARE_PERCENT,
            cache_bytes: DEFAULT_CACHE_BYTES,
            prepare_models: true,
            lanes: Lanes::ONE,
        }
    }
}

impl InferConfig {
    /// Checks the config; the error names the flag that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ensure((1..=4096).contains(&self.max_batch), || {
            "--infer-max-batch must be between 1 and 4096".to_string()
        })?;
        ensure(self.max_delay <= Duration::from_secs(10), || {
            "--infer-max-delay-ms must be at most 10000".to_string()
        })?;
        ensure((1..=100_000).contains(&self.max_inflight), || {
            "--infer-max-inflight must be between 1 and 100000".to_string()
        })?;
        ensure((1..=100).contains(&self.online_share), || {
            "--infer-online-share must be a percentage between 1 and 100".to_string()
        })?;
        ensure(self.cache_bytes >= 1 << 20, || {
            "--serving-cache-bytes must be at least 1048576 (1 MiB)".to_string()
        })?;
        Ok(())
    }
}
