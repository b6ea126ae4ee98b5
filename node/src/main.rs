//! `idunno-node`: parses flags, sets up logging and libtorch, runs the node until SIGTERM or
//! SIGINT.

use clap::Parser;
use idunno_node::config::{Device, NodeArgs};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than glibc's malloc: with a long history in memory (20,000 files, 10,000
/// jobs) glibc spent ~40% of a page request's time in `unlink_chunk`, `malloc_consolidate` and
/// `_int_malloc`, and a page of 100 files took 1.4× as long as on an empty cluster; with
/// jemalloc, 1.13× (`make bench-scale`). libtorch's own allocations are not affected.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args = NodeArgs::parse();
    if args.version {
        println!(
            "idunno-node {} (libtorch {}, {} tch thread(s), CUDA {})",
            env!("CARGO_PKG_VERSION"),
            idunno_node::LIBTORCH_VERSION,
            tch::get_num_threads(),
            if tch::Cuda::is_available() {
                "available"
            } else {
                "not available"
            },
        );
        return Ok(());
    }
    let cfg = args.into_config()?;
    if cfg.device == Device::Cuda && !tch::Cuda::is_available() {
        anyhow::bail!("--device cuda: no CUDA device is available to libtorch");
    }
    tch::set_num_threads(cfg.threads as i32);
    let (logs, _guard) = idunno_node::logging::init(&cfg.data_dir, cfg.log_format)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received: leaving the cluster");
            trigger.cancel();
        });
        Ok(idunno_node::run(cfg, logs, shutdown).await?)
    })
}
