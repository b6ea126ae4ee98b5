//! Logging to `<data-dir>/node.log` (rotated by size) and to standard error, as text or as
//! JSON lines (`--log-format`); colour only when standard error is a terminal and `NO_COLOR`
//! is not set, never in the file.

use rolling_file::{BasicRollingFileAppender, RollingConditionBasic};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

/// Size at which `node.log` rotates.
const MAX_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// Rotated files kept beside `node.log`.
const KEPT_LOGS: usize = 4;

/// The node's log files, for `clear-log`.
#[derive(Debug, Clone)]
pub struct LogFiles {
    dir: PathBuf,
}

impl LogFiles {
    /// The current log file.
    pub fn current(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Empties `node.log` and removes the rotated files; returns how many files were cleared.
    pub fn clear(&self) -> std::io::Result<usize> {
        let mut cleared = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name == "node.log" {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(0)?;
                cleared += 1;
            } else if name.starts_with("node.log.") {
                std::fs::remove_file(&path)?;
                cleared += 1;
            }
        }
        Ok(cleared)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`, spans).
    Json,
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// The two outputs' layers: standard error and the log file's `writer`.
fn layers(format: LogFormat, writer: NonBlocking) -> Vec<Boxed> {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    match format {
        LogFormat::Text => vec![
            fmt::layer()
                .with_ansi(colour)
                .with_writer(std::io::stderr)
                .boxed(),
            fmt::layer().with_ansi(false).with_writer(writer).boxed(),
        ],
        LogFormat::Json => vec![
            fmt::layer().json().with_writer(std::io::stderr).boxed(),
            fmt::layer().json().with_writer(writer).boxed(),
        ],
    }
}

/// Installs the global subscriber (filter from `RUST_LOG`, default `info`). Keep the guard
/// alive for the life of the process: dropping it flushes the file.
pub fn init(
    data_dir: &Path,
    format: LogFormat,
) -> Result<(LogFiles, WorkerGuard), crate::error::NodeError> {
    let failed = |e: &dyn std::fmt::Display| {
        crate::error::NodeError::Logging(format!("{}: {e}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| failed(&e))?;
    let files = LogFiles {
        dir: data_dir.to_path_buf(),
    };
    let condition = RollingConditionBasic::new().max_size(MAX_LOG_BYTES);
    let appender = BasicRollingFileAppender::new(files.current(), condition, KEPT_LOGS)
        .map_err(|e| failed(&e))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(layers(format, writer).with_filter(filter))
        .try_init()
        .map_err(|e| failed(&e))?;
    Ok((files, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_empties_the_log_and_removes_rotated_files() {
        let dir = std::env::temp_dir().join(format!("idunno-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("node.log"), "x").unwrap();
        std::fs::write(dir.join("node.log.1"), "y").unwrap();
        std::fs::write(dir.join("other"), "z").unwrap();
        let files = LogFiles { dir: dir.clone() };
        assert_eq!(files.clear().unwrap(), 2);
        assert_eq!(std::fs::read(dir.join("node.log")).unwrap().len(), 0);
        assert!(!dir.join("node.log.1").exists());
        assert!(dir.join("other").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
