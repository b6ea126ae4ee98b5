//! `idunno secure init|add|rotate|list`: the credentials of a secure cluster
//! ([`bus_client::secure`]): a CA, TLS certificates, one NKEY identity per node and role,
//! nats-server configs and the dashboard token.

use crate::output::Output;
use bus_client::secure::{Secure, Spec};
use bus_schemas::roles::{self, Role};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// `idunno secure …`
#[derive(Debug, Subcommand)]
pub enum SecureCommand {
    /// Generate a secure cluster's CA, certificates, identities (one per node, an operator
    /// and a viewer), nats-server configs (one server, and each server of a cluster) and
    /// dashboard token into DIR. Secrets are files of mode 0600.
    Init {
        /// The directory (made, mode 0700; it must not hold a secure cluster yet).
        dir: PathBuf,
        /// The node ids, comma-separated, or a count N for n1..nN.
        #[arg(long, default_value = "5")]
        nodes: String,
        /// Host names and addresses the single server and the dashboards answer to,
        /// comma-separated (their certificates name them).
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
        /// The single server's client address.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// The single server's JetStream store (default DIR/nats/store).
        #[arg(long)]
        store_dir: Option<String>,
        /// A server of a NATS cluster, as NAME=HOST (give each, e.g. three): a certificate for
        /// HOST each, and DIR/nats/machine.conf, every machine's config (TLS routes).
        #[arg(long = "server", value_parser = parse_server)]
        servers: Vec<(String, String)>,
    },
    /// Add an identity: a node (NAME is its id) or another operator or viewer, then reload
    /// the servers (`nats-server --signal reload`); or, with `--role server --host HOST`, a
    /// server of the cluster (a certificate for it).
    Add {
        /// The directory `secure init` wrote.
        dir: PathBuf,
        /// node, operator, viewer or server.
        #[arg(long)]
        role: String,
        /// The node id, the identity's name, or the server's name.
        name: String,
        /// The host name or address a server is reached at (with `--role server`).
        #[arg(long)]
        host: Option<String>,
    },
    /// Copy what one machine needs into OUT (mode 0700): the CA certificate (not its key),
    /// the machine config and users.conf, its server's certificate, its nodes' identities and
    /// the dashboard token and certificate, in DIR's layout. Export again after add/rotate.
    Export {
        /// The directory `secure init` wrote.
        dir: PathBuf,
        /// Where to copy (made if missing).
        out: PathBuf,
        /// The machine's server, as named by `--server NAME=HOST` or `add --role server`.
        #[arg(long)]
        server: Option<String>,
        /// A node id on the machine (repeat for each).
        #[arg(long = "node")]
        nodes: Vec<String>,
        /// Another identity to include, e.g. operator for an administration host.
        #[arg(long = "identity")]
        identities: Vec<String>,
    },
    /// Give an identity a new NKEY and client certificate; the old ones stop working when the
    /// servers reload.
    Rotate {
        /// The directory `secure init` wrote.
        dir: PathBuf,
        /// The identity (node-<id>, operator, viewer, …).
        name: String,
    },
    /// List the identities: name, role, inbox prefix, public NKEY.
    List {
        /// The directory `secure init` wrote.
        dir: PathBuf,
    },
}

fn parse_server(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, host)) if !name.is_empty() && !host.is_empty() => {
            bus_schemas::validate_token(name).map_err(|e| format!("server name {name:?}: {e}"))?;
            Ok((name.into(), host.into()))
        }
        _ => Err(format!("{s:?}: give NAME=HOST")),
    }
}

/// The node ids of `--nodes`: a count N (n1..nN) or a comma-separated list.
pub fn node_ids(nodes: &str) -> anyhow::Result<Vec<String>> {
    if let Ok(n) = nodes.trim().parse::<usize>() {
        anyhow::ensure!((1..=1000).contains(&n), "--nodes: 1 to 1000, not {n}");
        return Ok((1..=n).map(|i| format!("n{i}")).collect());
    }
    let ids: Vec<String> = nodes.split(',').map(|s| s.trim().to_string()).collect();
    for id in &ids {
        bus_schemas::validate_token(id).map_err(|e| anyhow::anyhow!("--nodes: {id:?}: {e}"))?;
    }
    Ok(ids)
}

/// Runs one `secure` command.
pub fn run(cmd: SecureCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        SecureCommand::Init {
            dir,
            nodes,
            hosts,
            listen,
            store_dir,
            servers,
        } => {
            let mut spec = Spec::local(&dir, &node_ids(&nodes)?);
            spec.hosts = hosts;
            spec.listen = listen;
            spec.servers = servers;
            if let Some(store) = store_dir {
                spec.store_dir = store;
            }
            let secure = Secure::init(&dir, &spec)?;
            print_init(&secure, out);
            Ok(())
        }
        SecureCommand::Add {
            dir,
            role,
            name,
            host,
        } => add(&dir, &role, &name, host),
        SecureCommand::Rotate { dir, name } => {
            let mut secure = Secure::open(&dir)?;
            let path = secure.rotate(&name)?;
            reload_hint(
                &secure,
                &format!("new NKEY and certificate for {name}"),
                &path,
            );
            Ok(())
        }
        SecureCommand::Export {
            dir,
            out,
            server,
            nodes,
            identities,
        } => export(&dir, &out, server, &nodes, identities),
        SecureCommand::List { dir } => list(&dir, out),
    }
}

/// `secure add`: a server of the cluster (`--role server`, with `--host`), or a node,
/// operator or viewer identity, then the hint to reload the servers.
fn add(dir: &Path, role: &str, name: &str, host: Option<String>) -> anyhow::Result<()> {
    if role == "server" {
        let host = host.ok_or_else(|| anyhow::anyhow!("--role server needs --host HOST"))?;
        return add_server(dir, name, &host);
    }
    anyhow::ensure!(host.is_none(), "--host is for --role server");
    let role = Role::parse(role)
        .filter(|r| *r != Role::Admin)
        .ok_or_else(|| anyhow::anyhow!("--role: node, operator, viewer or server, not {role:?}"))?;
    let mut secure = Secure::open(dir)?;
    let (identity, node) = match role {
        Role::Node => (roles::node_identity(name), Some(name)),
        _ => (name.to_string(), None),
    };
    let path = secure.add(role, &identity, node)?;
    reload_hint(
        &secure,
        &format!("added {identity} ({})", role.name()),
        &path,
    );
    Ok(())
}

/// `secure export`: copies what one machine needs (its server's and nodes' files and the
/// other `identities`) into `to`, and says what it copied.
fn export(
    dir: &Path,
    to: &Path,
    server: Option<String>,
    nodes: &[String],
    identities: Vec<String>,
) -> anyhow::Result<()> {
    let secure = Secure::open(dir)?;
    let mut names: Vec<String> = nodes.iter().map(|id| roles::node_identity(id)).collect();
    names.extend(identities);
    secure.export(to, server.as_deref(), &names)?;
    crate::output::note(&format!(
        "exported to {}: {}{}",
        to.display(),
        server.map_or(String::new(), |s| format!("server {s}, ")),
        match names.is_empty() {
            true => "no identity".to_string(),
            false => names.join(", "),
        }
    ));
    Ok(())
}

/// `secure list`: each identity's name, role, inbox prefix and public NKEY.
fn list(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let secure = Secure::open(dir)?;
    let ids = &secure.manifest.identities;
    out.print(ids, || {
        let mut rows = vec![["identity", "role", "inbox", "nkey"]
            .map(String::from)
            .to_vec()];
        rows.extend(ids.iter().map(|i| {
            vec![
                i.name.clone(),
                i.role.clone(),
                i.inbox_prefix.clone(),
                i.public_key.clone(),
            ]
        }));
        rows
    });
    Ok(())
}

fn add_server(dir: &Path, name: &str, host: &str) -> anyhow::Result<()> {
    let mut secure = Secure::open(dir)?;
    let tls = secure.add_cluster_server(name, host)?;
    crate::output::note(&format!(
        "added server {name} ({host}): its certificate in {}",
        tls.display()
    ));
    crate::output::note(&format!(
        "give it {} beside users.conf (`idunno secure export --server {name}`)",
        secure.machine_conf().display()
    ));
    Ok(())
}

fn reload_hint(secure: &Secure, what: &str, path: &Path) {
    crate::output::note(&format!("{what}: {}", path.display()));
    crate::output::note(&format!(
        "{} was rewritten; apply it with `nats-server --signal reload` on every server",
        secure.dir.join("nats/users.conf").display()
    ));
}

/// Prints what `secure init` made and how to use it (the manifest with `--json`).
fn print_init(secure: &Secure, out: &Output) {
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&secure.manifest).unwrap_or_default()
        );
        return;
    }
    let d = &secure.dir;
    crate::output::note(&format!(
        "secure cluster {:?} in {}",
        secure.manifest.name,
        d.display()
    ));
    crate::output::note(&format!(
        "  CA:           {} (its key ca-key.pem: keep it offline)",
        d.join("ca.pem").display()
    ));
    crate::output::note(&format!(
        "  one server:   nats-server -c {}",
        secure.single_conf().display()
    ));
    if !secure.manifest.servers.is_empty() {
        print_cluster(secure);
    }
    crate::output::note(&format!(
        "  identities:   {}",
        d.join("identities").display()
    ));
    for i in &secure.manifest.identities {
        crate::output::note(&format!("    {:<14} {}", i.name, i.role));
    }
    crate::output::note(&format!(
        "  dashboard:    token {}, certificate {}",
        d.join("dashboard.token").display(),
        d.join("https").display()
    ));
    crate::output::note(&format!(
        "a node:  IDUNNO_NATS_IDENTITY={} idunno-node --id <id> …",
        d.join("identities/node-<id>").display()
    ));
    crate::output::note(&format!(
        "the CLI: export IDUNNO_NATS_IDENTITY={}",
        d.join("identities/operator").display()
    ));
}

/// The part of [`print_init`] about a NATS cluster of several servers: the machine config,
/// each server's certificate and how to export each machine's files.
fn print_cluster(secure: &Secure) {
    crate::output::note(&format!(
        "  cluster:      {} on every machine, with {} in its environment",
        secure.machine_conf().display(),
        bus_client::secure::natsconf::MACHINE_VARIABLES
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (name, host) in &secure.manifest.servers {
        crate::output::note(&format!(
            "    {name:<14} {host}: certificate {}",
            secure.server_tls_dir(name).display()
        ));
    }
    crate::output::note(&format!(
        "  each machine's files: idunno secure export {} <out> --server <name> --node <id>",
        secure.dir.display()
    ));
}
