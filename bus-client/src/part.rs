//! The part file a download is written to before it takes the destination's name: created
//! exclusively (never following a symlink, never shared with another download) next to the
//! destination, renamed over it only when complete, and removed otherwise.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Names tried before giving up (each one is new: process id, counter and clock).
const ATTEMPTS: u32 = 16;

/// A part file being written; removed on drop unless [`PartFile::commit`] renamed it.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    committed: bool,
}

/// A name for a part file of `dest`: hidden, in the same directory (so that the final rename
/// is atomic), unique to this process and attempt.
fn part_name(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let stem = dest
        .file_name()
        .map_or_else(|| "download".into(), |n| n.to_string_lossy());
    let name = format!(".{stem}.{}-{n}-{nanos:x}.idunno-part", std::process::id());
    match dest.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

impl PartFile {
    /// Creates a new part file for `dest` (`O_CREAT | O_EXCL`: an existing file or symlink
    /// at the name is never opened) and returns it with its open handle.
    pub async fn create(dest: &Path) -> io::Result<(Self, tokio::fs::File)> {
        let mut last = io::Error::other("no attempt");
        for _ in 0..ATTEMPTS {
            let path = part_name(dest);
            let opened = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await;
            match opened {
                Ok(file) => {
                    let part = PartFile {
                        path,
                        committed: false,
                    };
                    return Ok((part, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The part file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the part file the name `dest`, atomically. Without `overwrite`, an existing
    /// `dest` (file, directory or symlink) is left alone and the error is `AlreadyExists`.
    pub async fn commit(mut self, dest: &Path, overwrite: bool) -> io::Result<()> {
        if overwrite {
            tokio::fs::rename(&self.path, dest).await?;
        } else {
            // A hard link fails if `dest` exists, atomically; the part name then goes.
            tokio::fs::hard_link(&self.path, dest).await?;
            let _ = tokio::fs::remove_file(&self.path).await;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn part_files_are_exclusive_and_commit_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let (a, _) = PartFile::create(&dest).await.unwrap();
        let (b, _) = PartFile::create(&dest).await.unwrap();
        assert_ne!(a.path(), b.path());
        assert_eq!(a.path().parent(), Some(dir.path()));
        std::fs::write(&dest, b"keep").unwrap();
        let e = a.commit(&dest, false).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"keep");
        b.commit(&dest, true).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no part file is left: {left:?}");
    }
}
