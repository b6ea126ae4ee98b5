//! The groups of subcommands: `idunno local …`, `cluster …`, `dataset …`, `model …`.

use clap::Subcommand;
use std::path::PathBuf;

/// `idunno local …`
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a nats-server (unless one answers at --nats) and N nodes in the background.
    Up {
        /// How many nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Directory for logs, data and the record of what was started.
        #[arg(long, default_value = ".idunno")]
        dir: PathBuf,
        /// Dashboard port of the first node; node i gets this + i - 1.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        /// Open mode, for quick experiments: no TLS and no credentials, so anyone who reaches
        /// the NATS port can do anything. By default the cluster is secure (`idunno secure
        /// init` in DIR/secure: TLS, one identity per node and role, an HTTPS dashboard).
        #[arg(long)]
        insecure: bool,
    },
    /// Show what `local up` started and whether it still runs.
    Status {
        /// The directory given to `local up`.
        #[arg(long, default_value = ".idunno")]
        dir: PathBuf,
    },
    /// Start a node of the local cluster again (after it was killed or stopped).
    Restart {
        /// The node id (n1, n2, …).
        node: String,
        /// The directory given to `local up`.
        #[arg(long, default_value = ".idunno")]
        dir: PathBuf,
    },
    /// Stop exactly what `local up` started.
    Down {
        /// The directory given to `local up`.
        #[arg(long, default_value = ".idunno")]
        dir: PathBuf,
    },
}

/// `idunno cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The NATS cluster's servers, and how many copies of each of IDunno's buckets and streams
    /// it keeps, on which servers, and whether each is current. Exits 1 if one lacks copies.
    Status,
    /// Sets the copies JetStream keeps of IDunno's buckets and streams (1 to 5), for the whole
    /// cluster; `auto` (the default) is min(3, the NATS cluster's servers).
    Replicas {
        /// A number of copies, or `auto`.
        replicas: String,
    },
    /// Before a NATS server is removed for good (its machine drained): takes it out of every
    /// bucket and stream, so that JetStream keeps their copies on the other servers.
    RemoveServer {
        /// The server's name (`server_name` in its config).
        server: String,
    },
}

/// `idunno dataset …`
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Import `fashion-mnist` (from the Debian package's files), or a local directory: an
    /// MNIST-IDX directory, an image folder (train|test/<class>/*.png|jpg) or a folder of
    /// unlabelled images.
    Import {
        /// The dataset's name in the cluster.
        name: String,
        /// The local directory (optional for fashion-mnist).
        dir: Option<PathBuf>,
    },
}

/// `idunno model …`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Register a TorchScript model exported from PyTorch. It receives float32 N×C×H×W pixels
    /// scaled to [0, 1], then (x - mean) / std, and must return N×classes logits.
    Import {
        /// The model's name (models/<name>).
        name: String,
        /// The TorchScript file (torch.jit.trace or torch.jit.script, then .save()).
        file: PathBuf,
        /// The dataset whose inputs it takes; it is evaluated on its test split.
        #[arg(long)]
        dataset: String,
        /// Per-channel mean to subtract (one value, or one per channel).
        #[arg(long, value_delimiter = ',')]
        mean: Vec<f32>,
        /// Per-channel std to divide by (one value, or one per channel).
        #[arg(long, value_delimiter = ',')]
        std: Vec<f32>,
        /// Print the job id and return at once.
        #[arg(long)]
        detach: bool,
    },
    /// Point an alias (`production`, `staging`, …) at a version, or remove it with --remove.
    /// `name@alias` then names that version wherever a model is named (`infer`, `serve`); a
    /// bare name follows `production` when the model has it.
    Alias {
        /// The model.
        name: String,
        /// The alias.
        alias: String,
        /// The version it names.
        #[arg(required_unless_present = "remove")]
        version: Option<u64>,
        /// Remove the alias instead.
        #[arg(long, conflicts_with = "version")]
        remove: bool,
    },
    /// Start a canary rollout: a share of the online requests for an alias go to a new version.
    Rollout {
        /// The model.
        name: String,
        /// The new version.
        version: u64,
        /// The new version's share of the alias's requests (`10%`, `10` or `0.5%`).
        #[arg(long, default_value = "10%")]
        canary: String,
        /// The alias whose requests are split.
        #[arg(long, default_value = bus_schemas::models::DEFAULT_ALIAS)]
        alias: String,
    },
    /// End the rollout: the alias names the new version from now on.
    Promote {
        /// The model.
        name: String,
        /// The alias.
        #[arg(long, default_value = bus_schemas::models::DEFAULT_ALIAS)]
        alias: String,
    },
    /// End the rollout without the new version; with none running, point the alias back at
    /// the version it named before.
    Rollback {
        /// The model.
        name: String,
        /// The alias.
        #[arg(long, default_value = bus_schemas::models::DEFAULT_ALIAS)]
        alias: String,
    },
    /// A model's aliases, versions and rollout, with each version's requests, errors,
    /// latency and accuracy (where requests gave labels) side by side.
    Status {
        /// The model.
        name: String,
    },
}
