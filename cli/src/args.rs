//! The command line.

use bus_client::BusOptions;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use crate::subcommands::{ClusterCommand, DatasetCommand, LocalCommand, ModelCommand};

/// One-shot commands to an IDunno cluster.
#[derive(Debug, Parser)]
#[command(name = "idunno", version, about)]
pub struct Cli {
    /// The bus.
    #[command(flatten)]
    pub bus: BusOptions,
    /// Print machine-readable JSON (and nothing else on standard output).
    #[arg(long, global = true)]
    pub json: bool,
    /// Connect as connection profile NAME says (`idunno profile`); flags and the environment
    /// still win. Default: the profile `idunno profile select` chose, if any.
    #[arg(long, global = true, env = "IDUNNO_PROFILE")]
    pub profile: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the members: id, host, generation, incarnation, state, last heard.
    #[command(alias = "list_mem")]
    Members {
        /// Show this node's view (default: any node's).
        #[arg(long)]
        node: Option<String>,
    },
    /// Make a node leave the cluster (its process keeps running).
    Leave {
        /// The node.
        node: String,
    },
    /// Make a node that left join again.
    Join {
        /// The node.
        node: String,
    },
    /// Per-node traffic, probes, failures detected, garbage dropped, uptime.
    Stat {
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// Simulate loss of incoming failure-detector messages: low (3%), mid (30%), high (90%),
    /// off, or a fraction.
    Droprate {
        /// low | mid | high | off | <0..1>
        rate: String,
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// The answering node's own entry (id, host, generation, incarnation, state), as the
    /// original project's `list_self` printed it.
    #[command(name = "self", alias = "list_self")]
    SelfEntry {
        /// Ask this node (default: any node).
        #[arg(long)]
        node: Option<String>,
    },
    /// `droprate low`, under the original project's name.
    #[command(name = "low_droprate", hide = true)]
    LowDroprate {
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// `droprate mid`, under the original project's name.
    #[command(name = "mid_droprate", hide = true)]
    MidDroprate {
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// `droprate high`, under the original project's name.
    #[command(name = "high_droprate", hide = true)]
    HighDroprate {
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// Print the bus's public events as JSON lines, as they happen (the readable `nats sub`):
    /// member events, job events, and with --job that job's progress.
    Events {
        /// Only member events, or only job events.
        #[arg(long, value_enum)]
        kind: Option<crate::events::EventKind>,
        /// Only this job's events and progress.
        #[arg(long)]
        job: Option<String>,
        /// Stop after this many events (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print a shell completion script (`idunno completions bash >
    /// /etc/bash_completion.d/idunno`, or `source <(idunno completions bash)`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Connection profiles (like `nats context`): save, list, select.
    #[command(subcommand)]
    Profile(crate::profile::ProfileCommand),
    /// Empty the nodes' log files.
    #[command(name = "clear-log", alias = "clear")]
    ClearLog {
        /// Only this node (default: every member).
        #[arg(long)]
        node: Option<String>,
    },
    /// Store a local file as a new version of an SDFS file.
    Put {
        /// The local file.
        local: PathBuf,
        /// The SDFS name.
        sdfs: String,
        /// Replicas for this file (default: the cluster's replication factor, 4).
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// Fetch an SDFS file (the newest version unless --version). The bytes go to a new
    /// hidden part file next to LOCAL, which takes LOCAL's name only once complete and
    /// verified; an existing LOCAL is not overwritten unless --force.
    Get {
        /// The SDFS name.
        sdfs: String,
        /// The local file to write.
        local: PathBuf,
        /// A particular version.
        #[arg(long)]
        version: Option<u64>,
        /// Replace LOCAL if it exists (atomically, once the download is complete).
        #[arg(long, short)]
        force: bool,
    },
    /// Store every file under a local directory, recursively, under an SDFS directory.
    Putdir {
        /// The local directory.
        local_dir: PathBuf,
        /// The SDFS directory.
        sdfs_dir: String,
    },
    /// Delete every file under an SDFS directory.
    Deldir {
        /// The SDFS directory.
        sdfs_dir: String,
    },
    /// Delete an SDFS file and all its versions.
    Delete {
        /// The SDFS name.
        sdfs: String,
    },
    /// List a file, or the files under a directory (everything without an argument), with
    /// versions, sizes, sha256 and replica nodes, in name order, a page at a time.
    Ls {
        /// A name or directory.
        #[arg(default_value = "")]
        sdfs: String,
        /// Which page.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Check SDFS: blobs the metadata does not name (orphans), under-replicated and unreadable
    /// versions, nodes keeping blobs in quarantine. Exits 1 if anything is wrong.
    Fsck {
        /// Put the orphans' versions back into the metadata from the labels kept beside them
        /// (after the metadata was lost), then check again.
        #[arg(long)]
        rebuild: bool,
        /// The cluster's replication factor, to judge under-replication.
        #[arg(long, default_value_t = 4)]
        replication: usize,
    },
    /// Fetch the last n versions, newest first, into one local file (each preceded by a
    /// header line), or one file per version with --split.
    #[command(name = "get-versions")]
    GetVersions {
        /// The SDFS name.
        sdfs: String,
        /// How many versions.
        n: usize,
        /// The local file (with --split: the prefix of `<local>.v<N>` files).
        local: PathBuf,
        /// One file per version.
        #[arg(long)]
        split: bool,
        /// Replace local files that exist (else they are left alone and the command fails).
        #[arg(long)]
        force: bool,
    },
    /// The files each node holds (from the metadata), or one node's with --node.
    Store {
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Run a cluster on this machine.
    #[command(subcommand)]
    Local(LocalCommand),
    /// A secure cluster's credentials: `secure init <dir>` (CA, TLS certificates, an NKEY
    /// identity per node and role, nats-server configs), `secure add|rotate|list`.
    #[command(subcommand)]
    Secure(crate::secure::SecureCommand),
    /// The NATS cluster: `cluster status` (servers, and the copies of every bucket and
    /// stream), `cluster replicas <n|auto>`.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Datasets: `dataset import`.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// List the datasets: splits, classes, input shape, size.
    Datasets,
    /// Models: `model import`.
    #[command(subcommand)]
    Model(ModelCommand),
    /// List the models: versions, architecture, dataset, parameters, test accuracy.
    Models {
        /// Only this model.
        name: Option<String>,
    },
    /// Classify image files (PNG or JPEG) with a model now: the cluster batches the request
    /// with others and answers before the deadline, or says it timed out.
    Infer {
        /// The model: `name`, `name:version` or `name@alias`.
        model: String,
        /// The image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// The model version (default: as the model's name says).
        #[arg(long)]
        model_version: Option<u64>,
        /// The deadline in milliseconds: at it, an unanswered request is answered with a timeout.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// The true class of each image (`--labels 3,0,7`, one per image): a rollout counts
        /// each version's accuracy.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<i64>,
    },
    /// Train a built-in model (mlp, cnn, resnet) on a dataset; the result becomes a new
    /// version of models/<name>.
    Train {
        /// The architecture: mlp, cnn or resnet.
        model: String,
        /// The dataset.
        dataset: String,
        /// Passes over the training split.
        #[arg(long, default_value_t = 5)]
        epochs: u32,
        /// Samples per step.
        #[arg(long, default_value_t = 128)]
        batch: u32,
        /// Peak learning rate (default: the architecture's).
        #[arg(long)]
        lr: Option<f64>,
        /// Train on at most this many samples.
        #[arg(long)]
        limit: Option<u64>,
        /// Store the model as models/<name> (default: the architecture's name).
        #[arg(long)]
        name: Option<String>,
        /// Seed of the initial weights and the sample order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train on this many workers at once (data-parallel: each takes its shard of every
        /// step's batch, gradients are averaged over the bus); a lost worker's share goes to
        /// the others and free workers join, up to this many.
        #[arg(long, default_value_t = 1)]
        workers: u32,
        /// Print the job id and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// Run a model over a dataset split as an inference job, sharing the workers fairly with
    /// the other inference jobs.
    Serve {
        /// The model (see `idunno models`).
        model: String,
        /// Queries per batch.
        batch_size: u32,
        /// The dataset (default: the one the model was trained or imported on).
        #[arg(long)]
        dataset: Option<String>,
        /// The split.
        #[arg(long, default_value = "test")]
        split: String,
        /// The model version (default: the newest).
        #[arg(long)]
        model_version: Option<u64>,
        /// Passes over the split.
        #[arg(long, default_value_t = 1, conflicts_with = "continuous")]
        passes: u32,
        /// Run until cancelled.
        #[arg(long)]
        continuous: bool,
        /// Fair-time weight: a job of weight 2 gets twice the query rate of one of weight 1.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Print the job id and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// An inference job's statistics: query rate over the last 10 s, queries done, accuracy,
    /// processing time per batch (mean, std, median, p90, p95, p99).
    #[command(name = "job-stats", alias = "ijs")]
    JobStats {
        /// The job id.
        id: String,
    },
    /// Change a running inference job's batch size (applies to batches cut from now on).
    Batch {
        /// The job id.
        job: String,
        /// Queries per batch.
        size: u32,
    },
    /// Which workers run which job now.
    Assignments,
    /// Show or set how workers are shared among inference jobs: `global` (every worker
    /// serves every job; the largest weighted rate difference is kept smallest) or `local`
    /// (each worker serves one job; jobs get workers in proportion to weight x cost per query).
    Qps {
        /// The new policy (without it, the policy in force is shown).
        policy: Option<QpsArg>,
    },
    /// Every member as a worker: state, the job it trains, the inference jobs it serves,
    /// queries it answered.
    #[command(alias = "w")]
    Workers,
    /// The jobs that have ended, newest first, a page at a time.
    #[command(alias = "cj")]
    Completed(#[command(flatten)] PageArgs),
    /// List the jobs: running and queued first, then ended ones, newest first, a page at a
    /// time.
    #[command(alias = "j")]
    Jobs(#[command(flatten)] PageArgs),
    /// One job: state, worker, attempts, progress, result; an inference job's running
    /// accuracy and newest outputs too (the original project's `ij`).
    #[command(alias = "ij")]
    Job {
        /// The job id.
        id: String,
    },
    /// An inference job's outputs (query, sample, class, score, label): an ended job's
    /// whole results file, a running job's newest, and with --follow every batch's as it is
    /// stored until the job ends (JSON lines with --json).
    Results {
        /// The job id.
        job: String,
        /// Keep printing as batches are stored, until the job ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop a job.
    Cancel {
        /// The job id.
        job: String,
    },
    /// Follow a job's progress until it ends.
    Watch {
        /// The job id.
        job: String,
    },
}

impl Command {
    /// The command the original project's names stand for (`low_droprate` is `droprate low`).
    pub fn original(self) -> Command {
        match self {
            Command::LowDroprate { node } => Command::Droprate {
                rate: "low".into(),
                node,
            },
            Command::MidDroprate { node } => Command::Droprate {
                rate: "mid".into(),
                node,
            },
            Command::HighDroprate { node } => Command::Droprate {
                rate: "high".into(),
                node,
            },
            other => other,
        }
    }
}

/// Which page of a list: the first `--limit` entries, or those after a cursor.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after this cursor (printed after a page that has more).
    #[arg(long)]
    pub after: Option<String>,
    /// Every page, one after the other (--limit each).
    #[arg(long, conflicts_with = "after")]
    pub all: bool,
}

/// Parses `low|mid|high|off|<p>` into a fraction.
pub fn parse_drop_rate(s: &str) -> anyhow::Result<f64> {
    let rate = match s {
        "low" => 0.03,
        "mid" => 0.3,
        "high" => 0.9,
        "off" => 0.0,
        other => other.parse::<f64>().map_err(|_| {
            anyhow::anyhow!("drop rate {other:?} is not low, mid, high, off or a number")
        })?,
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(&rate),
        "drop rate {rate} is not between 0 and 1"
    );
    Ok(rate)
}

/// A fair-time policy on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QpsArg {
    /// Every worker serves every job.
    Global,
    /// Each worker serves one job.
    Local,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_rates_parse() {
        assert_eq!(parse_drop_rate("low").unwrap(), 0.03);
        assert_eq!(parse_drop_rate("mid").unwrap(), 0.3);
        assert_eq!(parse_drop_rate("high").unwrap(), 0.9);
        assert_eq!(parse_drop_rate("off").unwrap(), 0.0);
        assert_eq!(parse_drop_rate("0.5").unwrap(), 0.5);
        assert!(parse_drop_rate("2").is_err());
        assert!(parse_drop_rate("lots").is_err());
    }

    #[test]
    fn seed_aliases_parse() {
        let cli = Cli::try_parse_from(["idunno", "list_mem"]).unwrap();
        assert!(matches!(cli.command, Command::Members { node: None }));
        let cli = Cli::try_parse_from(["idunno", "list_self"]).unwrap();
        assert!(matches!(cli.command, Command::SelfEntry { node: None }));
        let cli = Cli::try_parse_from(["idunno", "clear"]).unwrap();
        assert!(matches!(cli.command, Command::ClearLog { node: None }));
        for (name, rate) in [
            ("low_droprate", "low"),
            ("mid_droprate", "mid"),
            ("high_droprate", "high"),
        ] {
            let cli = Cli::try_parse_from(["idunno", name]).unwrap();
            match cli.command.original() {
                Command::Droprate {
                    rate: r,
                    node: None,
                } => assert_eq!(r, rate),
                other => panic!("{name}: {other:?}"),
            }
        }
        let cli = Cli::try_parse_from(["idunno", "ij", "j1"]).unwrap();
        assert!(matches!(cli.command, Command::Job { .. }));
    }

    #[test]
    fn connection_flags_may_follow_the_subcommand() {
        let cli = Cli::try_parse_from(["idunno", "members", "--nats", "nats://x:4222"]).unwrap();
        assert_eq!(cli.bus.url, "nats://x:4222");
    }
}
