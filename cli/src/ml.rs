//! Dataset and model commands: dataset import, datasets, model import, models.

use crate::args::{Command, DatasetCommand, ModelCommand};
use crate::output::Output;
use bus_client::jobs::JobsClient;
use bus_client::sdfs::SdfsClient;
use bus_client::BusOptions;
use bus_schemas::jobs::{ImportSpec, JobSpec};
use bus_schemas::sdfs::FileInfo;
use idunno_datasets::{Manifest, MANIFEST_FILE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs one dataset or model command.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    if let Command::Dataset(DatasetCommand::Import { name, dir }) = cmd {
        // Convert first: a directory in no known format is refused without a cluster.
        return import_dataset(bus, &name, dir, out).await;
    }
    let client = bus.connect_once("idunno-cli").await?;
    let sdfs = SdfsClient::new(client.clone(), Duration::from_secs(5));
    match cmd {
        Command::Datasets => datasets(&sdfs, out).await,
        Command::Model(ModelCommand::Import {
            name,
            file,
            dataset,
            mean,
            std,
            detach,
        }) => {
            bus_schemas::validate_token(&name)
                .map_err(|e| anyhow::anyhow!("bad model name {name:?}: {e}"))?;
            anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
            let upload = format!("uploads/{name}-{:08x}.pt", rand_u32());
            sdfs.put(&file, &upload, None).await?;
            let jobs = JobsClient::new(client.clone(), Duration::from_secs(10));
            let spec = JobSpec::Import(ImportSpec {
                name,
                dataset,
                upload: upload.clone(),
                mean,
                std,
            });
            let id = match jobs.submit(spec).await {
                Ok(id) => id,
                Err(e) => {
                    let _ = sdfs.delete(&upload).await;
                    return Err(e.into());
                }
            };
            crate::jobs::submitted(&client, &jobs, &id, detach, out).await
        }
        Command::Models { name } => models(&sdfs, name, out).await,
        Command::Model(cmd) => {
            let jobs = JobsClient::new(client.clone(), crate::routes::TIMEOUT);
            crate::routes::run(cmd, &jobs, out).await
        }
        other => anyhow::bail!("{other:?} is not a dataset or model command"),
    }
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t ^ std::process::id().rotate_left(16)
}

async fn import_dataset(
    bus: &BusOptions,
    name: &str,
    dir: Option<PathBuf>,
    out: &Output,
) -> anyhow::Result<()> {
    bus_schemas::validate_token(name)
        .map_err(|e| anyhow::anyhow!("bad dataset name {name:?}: {e}"))?;
    anyhow::ensure!(
        dir.is_some() || name == "fashion-mnist",
        "give the directory to import: `idunno dataset import {name} <dir>` (only fashion-mnist needs none)"
    );
    let staging = tempfile::tempdir()?;
    let work = staging.path().to_path_buf();
    let (owned_name, src) = (name.to_string(), dir.clone());
    let manifest = tokio::task::spawn_blocking(move || match src {
        None if owned_name == "fashion-mnist" => idunno_datasets::import_fashion_mnist(
            Path::new(idunno_datasets::FASHION_MNIST_DIR),
            &work,
            &owned_name,
        ),
        Some(src) => idunno_datasets::import_dir(&src, &work, &owned_name),
        None => Err(idunno_datasets::DatasetError::UnknownFormat {
            dir: PathBuf::from("(no directory given)"),
        }),
    })
    .await??;
    let client = bus.connect_once("idunno-cli").await?;
    let sdfs = SdfsClient::new(client, Duration::from_secs(5));
    let mut files: Vec<&str> = manifest.files().iter().map(|f| f.file.as_str()).collect();
    files.push(MANIFEST_FILE);
    for file in files {
        let (bar, progress) = crate::files::bar(format!("put {file}"));
        let put = sdfs
            .put(
                &staging.path().join(file),
                &format!("datasets/{name}/{file}"),
                Some(progress),
            )
            .await;
        bar.finish_and_clear();
        put?;
    }
    out.print(&manifest, || {
        vec![vec![format!("imported {name}: {}", describe(&manifest))]]
    });
    Ok(())
}

fn describe(m: &Manifest) -> String {
    let splits: Vec<String> = m
        .splits
        .iter()
        .map(|(s, i)| format!("{s} {}", i.count))
        .collect();
    let classes = if m.labelled() {
        format!("{} classes", m.classes.len())
    } else {
        "unlabelled".into()
    };
    format!(
        "{}, {classes}, input {}x{}x{}",
        splits.join(" / "),
        m.shape[0],
        m.shape[1],
        m.shape[2]
    )
}

async fn datasets(sdfs: &SdfsClient, out: &Output) -> anyhow::Result<()> {
    let files = sdfs.ls("datasets").await?;
    let mut manifests = Vec::new();
    let tmp = tempfile::tempdir()?;
    for f in files
        .iter()
        .filter(|f| f.name.ends_with(&format!("/{MANIFEST_FILE}")))
    {
        let Some(latest) = f.latest() else { continue };
        let max = idunno_datasets::limits::MAX_MANIFEST_BYTES;
        anyhow::ensure!(
            latest.size <= max,
            "{}: a manifest.json holds at most {max} bytes (MAX_MANIFEST_BYTES), not {}",
            f.name,
            latest.size
        );
        let path = tmp.path().join("m.json");
        sdfs.get(&f.name, Some(latest.version), &path, None).await?;
        let m = Manifest::from_json(&std::fs::read(&path)?, Path::new(&f.name))?;
        let dir = f.name.trim_end_matches(MANIFEST_FILE);
        let size = FileInfo::newest_bytes(&files, dir);
        manifests.push((m, size));
    }
    let json: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(m, size)| serde_json::json!({"manifest": m, "bytes": size}))
        .collect();
    out.print(&json, || {
        let mut rows = vec![["dataset", "source", "splits", "classes", "input", "size"]
            .map(String::from)
            .to_vec()];
        for (m, size) in &manifests {
            let splits: Vec<String> = m
                .splits
                .iter()
                .map(|(s, i)| format!("{s} {}", i.count))
                .collect();
            rows.push(vec![
                m.name.clone(),
                serde_json::to_value(m.source)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                splits.join(", "),
                if m.labelled() {
                    m.classes.len().to_string()
                } else {
                    "-".into()
                },
                format!("{}x{}x{}", m.shape[0], m.shape[1], m.shape[2]),
                format!("{:.1} MB", *size as f64 / 1e6),
            ]);
        }
        rows
    });
    Ok(())
}

async fn models(sdfs: &SdfsClient, name: Option<String>, out: &Output) -> anyhow::Result<()> {
    let files: Vec<FileInfo> = match &name {
        Some(n) => sdfs.ls(&format!("models/{n}")).await?,
        None => sdfs.ls("models").await?,
    };
    out.print(&files, || {
        let mut rows = vec![[
            "model", "version", "arch", "dataset", "input", "params", "epochs", "test acc", "job",
        ]
        .map(String::from)
        .to_vec()];
        for f in &files {
            for v in f.versions.iter().rev() {
                let a = |k: &str| v.attrs.get(k).cloned().unwrap_or_else(|| "-".into());
                let acc = v
                    .attrs
                    .get("test_accuracy")
                    .and_then(|s| s.parse::<f64>().ok())
                    .map_or("-".into(), |x| format!("{:.2}%", x * 100.0));
                rows.push(vec![
                    f.name.trim_start_matches("models/").into(),
                    v.version.to_string(),
                    a("arch"),
                    a("dataset"),
                    a("input"),
                    a("params"),
                    a("epochs"),
                    acc,
                    a("job"),
                ]);
            }
        }
        rows
    });
    Ok(())
}
