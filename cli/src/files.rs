//! SDFS commands: put, get, putdir, deldir, delete, ls, get-versions.

use crate::args::Command;
use crate::output::Output;
use bus_client::sdfs::{Progress, PutOptions, SdfsClient, SdfsError};
use bus_client::BusOptions;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Runs one SDFS command.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    let client = bus.connect_once("idunno-cli").await?;
    let sdfs = SdfsClient::new(client.clone(), Duration::from_secs(5));
    match cmd {
        Command::Put {
            local,
            sdfs: name,
            replicas,
        } => put(&sdfs, &local, &name, replicas, out).await,
        Command::Get {
            sdfs: name,
            local,
            version,
            force,
        } => get(&sdfs, &name, version, &local, force, out).await,
        Command::Putdir {
            local_dir,
            sdfs_dir,
        } => putdir(&sdfs, &local_dir, &sdfs_dir, out).await,
        Command::Deldir { sdfs_dir } => {
            let count = sdfs.deldir(&sdfs_dir).await?;
            out.print(&serde_json::json!({"deleted": count}), || {
                vec![vec![format!("deleted {count} file(s) under {sdfs_dir}")]]
            });
            Ok(())
        }
        Command::Delete { sdfs: name } => {
            sdfs.delete(&name).await?;
            out.print(&serde_json::json!({"deleted": name}), || {
                vec![vec![format!("deleted {name}")]]
            });
            Ok(())
        }
        Command::Ls { sdfs: name, page } => ls(&client, &sdfs, &name, page, out).await,
        Command::GetVersions {
            sdfs: name,
            n,
            local,
            split,
            force,
        } => {
            let to = VersionsTo {
                local: &local,
                split,
                force,
            };
            get_versions(&sdfs, &name, n, to, out).await
        }
        Command::Store { node } => store(&sdfs, node, out).await,
        other => anyhow::bail!("{other:?} is not an SDFS command"),
    }
}

/// A byte progress bar on a terminal (hidden otherwise), fed by transfer callbacks.
pub fn bar(message: String) -> (ProgressBar, Progress) {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(crate::output::clean(&message).into_owned());
    let feed = bar.clone();
    let progress: Progress = Arc::new(move |done, total| {
        feed.set_length(total);
        feed.set_position(done);
    });
    (bar, progress)
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

async fn put(
    sdfs: &SdfsClient,
    local: &Path,
    name: &str,
    replicas: Option<u32>,
    out: &Output,
) -> anyhow::Result<()> {
    bus_schemas::validate_file_name(name)?;
    let (bar, progress) = bar(format!("put {name}"));
    let result = sdfs
        .put_with(
            local,
            name,
            PutOptions {
                replication: replicas,
                ..Default::default()
            },
            Some(progress),
        )
        .await;
    bar.finish_and_clear();
    let version = result?;
    let v = sdfs.locate(name, Some(version)).await?;
    out.print(&v, || {
        vec![vec![format!(
            "stored {} as {name} version {version} ({}, sha256 {}…) on {}",
            local.display(),
            human(v.size),
            crate::output::short_hash(&v.sha256),
            v.replicas.join(", ")
        )]]
    });
    Ok(())
}

async fn get(
    sdfs: &SdfsClient,
    name: &str,
    version: Option<u64>,
    local: &Path,
    force: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let (bar, progress) = bar(format!("get {name}"));
    let result = sdfs
        .get_to(name, version, local, force, Some(progress))
        .await;
    bar.finish_and_clear();
    let v = match result {
        Err(e @ SdfsError::Exists { .. }) => anyhow::bail!("{e}: pass --force to replace it"),
        other => other?,
    };
    out.print(&v, || {
        vec![vec![format!(
            "wrote {name} version {} ({}) to {}",
            v.version,
            human(v.size),
            local.display()
        )]]
    });
    Ok(())
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

async fn putdir(sdfs: &SdfsClient, local: &Path, dir: &str, out: &Output) -> anyhow::Result<()> {
    bus_schemas::validate_dir_name(dir)?;
    let mut files = Vec::new();
    walk(local, &mut files).map_err(|e| anyhow::anyhow!("{}: {e}", local.display()))?;
    files.sort();
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("putdir {pos}/{len} files [{bar:30}] {msg}")?
            .progress_chars("=> "),
    );
    let mut stored = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(local)?
            .to_string_lossy()
            .replace('\\', "/");
        let name = format!("{dir}/{rel}");
        bar.set_message(crate::output::clean(&rel).into_owned());
        let version = sdfs
            .put(file, &name, None)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        stored.push(serde_json::json!({"name": name, "version": version}));
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.print(&stored, || {
        vec![vec![format!(
            "stored {} file(s) under {dir}/",
            stored.len()
        )]]
    });
    Ok(())
}

async fn ls(
    client: &async_nats::Client,
    sdfs: &SdfsClient,
    name: &str,
    page: crate::args::PageArgs,
    out: &Output,
) -> anyhow::Result<()> {
    let (files, next) = if page.all {
        (sdfs.ls(name).await?, None)
    } else {
        sdfs.ls_page(name, Some(page.limit), page.after.clone())
            .await?
    };
    anyhow::ensure!(
        !files.is_empty() || name.is_empty() || page.after.is_some(),
        "no file or directory {name:?}"
    );
    if let Some(next) = &next {
        eprintln!("more: --after {next}");
    }
    // Each replica's host, from the membership view (without it, the node ids alone).
    let (mut hosts, mut zones) = (HashMap::new(), HashMap::new());
    if !out.json {
        if let Ok(view) = crate::cluster::any_view(client).await {
            for m in view.members {
                zones.extend(m.zone.map(|z| (m.id.clone(), z)));
                hosts.insert(m.id, m.host);
            }
        }
    }
    out.print(&files, || {
        let mut rows = vec![["name", "version", "size", "sha256", "hosts", "replicas"]
            .map(String::from)
            .to_vec()];
        for f in &files {
            if let Some(v) = f.latest() {
                let at = |n: &String| hosts.get(n).map_or(n.clone(), |h| format!("{n}@{h}"));
                let distinct = |of: &HashMap<String, String>| {
                    let on: std::collections::BTreeSet<&String> =
                        v.replicas.iter().filter_map(|n| of.get(n)).collect();
                    on.len()
                };
                let spread = match distinct(&zones) {
                    0 => distinct(&hosts).to_string(),
                    z => format!("{} in {z} zone(s)", distinct(&hosts)),
                };
                rows.push(vec![
                    f.name.clone(),
                    format!("{} (of {})", v.version, f.versions.len()),
                    human(v.size),
                    v.sha256.chars().take(16).collect(),
                    spread,
                    v.replicas.iter().map(at).collect::<Vec<_>>().join(","),
                ]);
            }
        }
        rows
    });
    Ok(())
}

/// Where `get-versions` writes.
struct VersionsTo<'a> {
    local: &'a Path,
    split: bool,
    force: bool,
}

/// `get-versions`: the newest `n` versions of `name`, into one file or (`split`) one file
/// each; an existing target is refused, before any transfer, unless `force`.
async fn get_versions(
    sdfs: &SdfsClient,
    name: &str,
    n: usize,
    to: VersionsTo<'_>,
    out: &Output,
) -> anyhow::Result<()> {
    anyhow::ensure!(n >= 1, "n must be at least 1");
    let files = sdfs.ls(name).await?;
    let Some(file) = files.into_iter().find(|f| f.name == name) else {
        anyhow::bail!("no file {name:?}");
    };
    let newest: Vec<u64> = file
        .versions
        .iter()
        .rev()
        .take(n)
        .map(|v| v.version)
        .collect();
    let local = to.local;
    let targets: Vec<PathBuf> = if to.split {
        let path = |v: &u64| PathBuf::from(format!("{}.v{v}", local.display()));
        newest.iter().map(path).collect()
    } else {
        vec![local.to_path_buf()]
    };
    // Refuse before any transfer; each file is checked again, atomically, as it is written.
    if !to.force {
        if let Some(there) = targets.iter().find(|t| t.symlink_metadata().is_ok()) {
            anyhow::bail!("{} exists: pass --force to replace it", there.display());
        }
    }
    let written = if to.split {
        get_split(sdfs, name, newest, targets, to.force).await?
    } else {
        get_joined(sdfs, name, newest, local, to.force).await?
    };
    out.print(&written, || {
        vec![vec![format!(
            "wrote {} version(s) of {name}",
            written.len()
        )]]
    });
    Ok(())
}

/// Writes each of `versions` of `name` to its own file of `targets` (in the same order);
/// returns what was written, one JSON object per version.
async fn get_split(
    sdfs: &SdfsClient,
    name: &str,
    versions: Vec<u64>,
    targets: Vec<PathBuf>,
    force: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut written = Vec::new();
    for (version, target) in versions.into_iter().zip(targets) {
        let v = sdfs
            .get_to(name, Some(version), &target, force, None)
            .await?;
        written.push(serde_json::json!({"version": version, "size": v.size, "path": target}));
    }
    Ok(written)
}

/// Writes `versions` of `name` into the one file `local`, each after a header line; returns
/// what was written, one JSON object per version.
async fn get_joined(
    sdfs: &SdfsClient,
    name: &str,
    versions: Vec<u64>,
    local: &Path,
    force: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // Each version goes to a scratch directory next to the file, then into a part file
    // that takes the file's name only when every version is in: a failure leaves the
    // local file as it was.
    let dir = local.parent().filter(|d| !d.as_os_str().is_empty());
    let scratch = tempfile::tempdir_in(dir.unwrap_or(Path::new(".")))?;
    let (part, mut all) = bus_client::part::PartFile::create(local).await?;
    let mut written = Vec::new();
    for version in versions {
        let piece = scratch.path().join(format!("v{version}"));
        let v = sdfs.get(name, Some(version), &piece, None).await?;
        let header = format!("=== {name} version {version} ({} bytes) ===\n", v.size);
        all.write_all(header.as_bytes()).await?;
        let mut from = tokio::fs::File::open(&piece).await?;
        tokio::io::copy(&mut from, &mut all).await?;
        tokio::fs::remove_file(&piece).await?;
        written.push(serde_json::json!({"version": version, "size": v.size, "path": local}));
    }
    all.sync_all().await?;
    drop(all);
    part.commit(local, force)
        .await
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", local.display()))?;
    Ok(written)
}

async fn store(sdfs: &SdfsClient, node: Option<String>, out: &Output) -> anyhow::Result<()> {
    let files = sdfs.ls("").await?;
    let mut held: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        std::collections::BTreeMap::new();
    for f in &files {
        for v in &f.versions {
            for n in &v.replicas {
                let entry =
                    serde_json::json!({"name": f.name, "version": v.version, "size": v.size});
                held.entry(n.clone()).or_default().push(entry);
            }
        }
    }
    if let Some(node) = &node {
        held.retain(|n, _| n == node);
        held.entry(node.clone()).or_default();
    }
    out.print(&held, || {
        let mut rows = vec![["node", "name", "version", "size"]
            .map(String::from)
            .to_vec()];
        for (n, entries) in &held {
            if entries.is_empty() {
                rows.push(vec![
                    n.clone(),
                    "(nothing)".into(),
                    String::new(),
                    String::new(),
                ]);
            }
            for e in entries {
                rows.push(vec![
                    n.clone(),
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["version"].to_string(),
                    human(e["size"].as_u64().unwrap_or(0)),
                ]);
            }
        }
        rows
    });
    Ok(())
}
