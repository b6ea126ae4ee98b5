//! `infer <model> <images…>`: online inference through `idunno.v1.infer`.

use crate::args::Command;
use crate::output::Output;
use bus_client::BusOptions;
use bus_schemas::infer::{ByteBuf, InferReply, InferRequest};
use std::path::PathBuf;
use std::time::Duration;

/// Images sent in one request.
const PER_REQUEST: usize = 256;

/// One image's line.
#[derive(serde::Serialize)]
struct Line {
    file: PathBuf,
    class: i64,
    class_name: String,
    score: f32,
    scores: Vec<f32>,
    node: String,
    version: u64,
}

/// Runs `infer`.
pub async fn run(cmd: Command, bus: &BusOptions, out: &Output) -> anyhow::Result<()> {
    let Command::Infer {
        model,
        images,
        model_version,
        timeout_ms,
        labels,
    } = cmd
    else {
        anyhow::bail!("not an infer command");
    };
    anyhow::ensure!(timeout_ms >= 1, "--timeout-ms must be at least 1");
    anyhow::ensure!(
        labels.is_empty() || labels.len() == images.len(),
        "--labels gives one label per image: {} labels for {} images",
        labels.len(),
        images.len()
    );
    bus_schemas::models::ModelRef::parse(&model).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Read every file first: a missing one is refused without touching the cluster.
    let files = read_images(&images)?;
    let client = bus.connect_once("idunno-cli").await?;
    let mut lines = Vec::with_capacity(images.len());
    let mut notes = Vec::new();
    for (i, (paths, chunk)) in images
        .chunks(PER_REQUEST)
        .zip(files.chunks(PER_REQUEST))
        .enumerate()
    {
        let at = i * PER_REQUEST;
        let req = InferRequest {
            model: model.clone(),
            version: model_version,
            images: chunk.to_vec(),
            timeout_ms,
            tensor: None,
            labels: labels
                .get(at..at + chunk.len())
                .unwrap_or_default()
                .to_vec(),
        };
        let wait = Duration::from_millis(timeout_ms.saturating_add(2000));
        let reply: InferReply = bus_client::infer(&client, &req, wait)
            .await
            .map_err(|e| anyhow::anyhow!("no answer to the inference request: {e}"))?;
        take_reply(reply, paths, &mut lines, &mut notes)?;
    }
    print_lines(&lines, notes, out);
    Ok(())
}

/// The bytes of every image file, in order; the first that cannot be read is the error.
fn read_images(images: &[PathBuf]) -> anyhow::Result<Vec<ByteBuf>> {
    let mut files = Vec::with_capacity(images.len());
    for path in images {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        files.push(ByteBuf::from(bytes));
    }
    Ok(files)
}

/// Adds the predictions of one reply (for the images `paths`) to `lines` and a note of
/// where and how fast it ran to `notes`; an error reply is the command's error.
fn take_reply(
    reply: InferReply,
    paths: &[PathBuf],
    lines: &mut Vec<Line>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    match reply {
        InferReply::Done {
            version,
            predictions,
            node,
            queue_ms,
            run_ms,
            batch,
            ..
        } => {
            notes.push(format!(
                "{node}: version {version}, batch of {batch}, waited {queue_ms:.1} ms, ran {run_ms:.1} ms"
            ));
            for (path, p) in paths.iter().zip(predictions) {
                lines.push(Line {
                    file: path.clone(),
                    class: p.class,
                    class_name: p.class_name,
                    score: p.score,
                    scores: p.scores,
                    node: node.clone(),
                    version,
                });
            }
            Ok(())
        }
        InferReply::Error { message, .. } => anyhow::bail!("{message}"),
    }
}

/// Prints one line per image, then (not with `--json`) the notes as warnings.
fn print_lines(lines: &[Line], notes: Vec<String>, out: &Output) {
    out.print(&lines, || {
        let mut rows = vec![["file", "class", "score"].map(String::from).to_vec()];
        for l in lines {
            rows.push(vec![
                l.file.display().to_string(),
                format!("{} ({})", l.class_name, l.class),
                format!("{:.3}", l.score),
            ]);
        }
        rows
    });
    if !out.json {
        for note in notes {
            crate::output::warn(&note.to_string());
        }
    }
}
