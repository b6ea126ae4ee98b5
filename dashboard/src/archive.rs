//! Unpacking a dataset folder sent as a tar archive, refusing what a folder of images cannot
//! hold: links, devices, absolute or `..` paths, the same file twice, too many entries or too
//! deep a tree.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most entries (files and folders) an archive may hold.
pub const MAX_ENTRIES: usize = 250_000;
/// Deepest path in an archive, in folders and file (`pics/train/shirt/1.png` is 4).
pub const MAX_DEPTH: usize = 8;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a tar archive, or cut short.
    #[error("not a readable tar archive: {0}")]
    Unreadable(std::io::Error),
    /// An entry that is not a file or a folder.
    #[error("{path}: only files and folders are read, not a {kind}")]
    NotAFile {
        /// The entry.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// A path that would leave the folder, or is empty or absolute.
    #[error("{0:?}: a path in the archive must stay inside it (no '/' at the start, no '..')")]
    BadPath(String),
    /// A path deeper than [`MAX_DEPTH`].
    #[error("{0:?}: at most {MAX_DEPTH} levels of folders are read")]
    TooDeep(String),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("the archive holds more than {MAX_ENTRIES} files and folders")]
    TooMany,
    /// The same file twice.
    #[error("{0:?} is in the archive twice")]
    Twice(String),
    /// Writing the unpacked files failed.
    #[error("unpacking {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing but folders (or hidden files).
    #[error("the archive holds no files")]
    Empty,
}

/// Unpacks the tar archive `reader` into the empty directory `dest` and returns the folder
/// the data is in: `dest` itself, or its one top-level folder when everything is inside one
/// (a folder picked in a browser arrives as `<folder>/…`). Hidden entries (a component
/// starting with `.`, as `.DS_Store`) are skipped.
pub fn unpack(reader: impl Read, dest: &Path) -> Result<PathBuf, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = 0usize;
    let mut tops = std::collections::BTreeSet::new();
    for entry in archive.entries().map_err(ArchiveError::Unreadable)? {
        let mut entry = entry.map_err(ArchiveError::Unreadable)?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(ArchiveError::TooMany);
        }
        if let Some(rel) = unpack_entry(&mut entry, dest)? {
            if let Some(Component::Normal(top)) = rel.components().next() {
                tops.insert(top.to_os_string());
            }
        }
    }
    if tops.is_empty() {
        return Err(ArchiveError::Empty);
    }
    // Everything under one folder (and that folder is not itself a split): read inside it.
    match tops.iter().next() {
        Some(top) if tops.len() == 1 && dest.join(top).is_dir() => Ok(dest.join(top)),
        _ => Ok(dest.to_path_buf()),
    }
}

/// Writes one entry under `dest`: a folder is made, a file written; answers the file's path
/// in the archive (`None` for a folder or a skipped hidden entry).
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
) -> Result<Option<PathBuf>, ArchiveError> {
    let raw = entry.path().map_err(ArchiveError::Unreadable)?;
    let shown = raw.to_string_lossy().into_owned();
    let rel = relative(&raw).ok_or_else(|| ArchiveError::BadPath(shown.clone()))?;
    let kind = entry.header().entry_type();
    if rel.as_os_str().is_empty() {
        return if kind.is_dir() {
            Ok(None)
        } else {
            Err(ArchiveError::BadPath(shown))
        };
    }
    if rel.components().count() > MAX_DEPTH {
        return Err(ArchiveError::TooDeep(shown));
    }
    let hidden = |c: Component<'_>| c.as_os_str().to_string_lossy().starts_with('.');
    if rel.components().any(hidden) {
        return Ok(None);
    }
    let path = dest.join(&rel);
    let write = |source| ArchiveError::Write {
        path: rel.clone(),
        source,
    };
    if kind.is_dir() {
        std::fs::create_dir_all(&path).map_err(write)?;
        return Ok(None);
    }
    if !(kind.is_file() || kind == tar::EntryType::Continuous) {
        return Err(ArchiveError::NotAFile {
            path: shown,
            kind: kind_name(kind),
        });
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write)?;
    }
    let mut out = match File::create_new(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ArchiveError::Twice(shown))
        }
        Err(e) => return Err(write(e)),
    };
    std::io::copy(entry, &mut out).map_err(write)?;
    Ok(Some(rel))
}

/// `path` with `.` removed, if it has only plain components.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "named pipe",
        _ => "special entry",
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
