//! Operations on directory entries (mkdir, mknod, symlink, unlink, rmdir, rename) and directory
//! listings. They are applied to the backing directory at once, and so are durable at once, as
//! LazyFS passes metadata through: only file data waits for an fsync. A file created and never
//! fsynced therefore comes back after a power cut, empty.

use super::*;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt};

impl State {
    /// One more lookup of `path`, and its attributes.
    fn entry(&mut self, path: PathBuf) -> Op<FileAttr> {
        let ino = self.remember(path);
        self.attr(ino)
    }

    /// Makes directory `name` in `parent`.
    pub(in super::super) fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> Op<FileAttr> {
        let path = self.child(parent, name)?;
        fs::DirBuilder::new().mode(mode & 0o7777).create(&path)?;
        self.entry(path)
    }

    /// Makes regular file `name` in `parent` (other kinds of node are refused: EPERM).
    pub(in super::super) fn mknod(&mut self, parent: u64, name: &OsStr, mode: u32) -> Op<FileAttr> {
        use nix::sys::stat::SFlag;
        if mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Err(Errno::EPERM);
        }
        let path = self.child(parent, name)?;
        let mut options = File::options();
        options.write(true).create_new(true).mode(mode & 0o7777);
        options.open(&path)?;
        self.entry(path)
    }

    /// Makes symbolic link `name` in `parent`, pointing at `target`.
    pub(in super::super) fn symlink(
        &mut self,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> Op<FileAttr> {
        let path = self.child(parent, name)?;
        std::os::unix::fs::symlink(target, &path)?;
        self.entry(path)
    }

    /// Where symbolic link `ino` points.
    pub(in super::super) fn readlink(&self, ino: u64) -> Op<Vec<u8>> {
        use std::os::unix::ffi::OsStringExt;
        Ok(fs::read_link(self.path(ino)?)?.into_os_string().into_vec())
    }

    /// Removes file `name` from `parent`; an open handle keeps its bytes until closed.
    pub(in super::super) fn unlink(&mut self, parent: u64, name: &OsStr) -> Op<()> {
        let path = self.child(parent, name)?;
        fs::remove_file(&path)?;
        self.gone(&path);
        Ok(())
    }

    /// Removes empty directory `name` from `parent`.
    pub(in super::super) fn rmdir(&mut self, parent: u64, name: &OsStr) -> Op<()> {
        let path = self.child(parent, name)?;
        fs::remove_dir(&path)?;
        self.gone(&path);
        Ok(())
    }

    /// Renames `name` in `parent` to `newname` in `newparent`, replacing what was there
    /// (unless `noreplace`). A renamed file keeps its cached writes: renaming a file that was
    /// never fsynced leaves, after a power cut, the new name with the old durable bytes.
    pub(in super::super) fn rename(
        &mut self,
        (parent, name): (u64, &OsStr),
        (newparent, newname): (u64, &OsStr),
        noreplace: bool,
    ) -> Op<()> {
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        if from == to {
            return Ok(());
        }
        if noreplace && fs::symlink_metadata(&to).is_ok() {
            return Err(Errno::EEXIST);
        }
        fs::rename(&from, &to)?;
        self.gone(&to);
        self.moved(&from, &to);
        Ok(())
    }

    /// `path` no longer names anything: its inode (if known) is unlinked.
    fn gone(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(node) = self.inodes.get_mut(&ino) {
                node.path = None;
            }
            self.idle(ino);
        }
    }

    /// Everything at or under `from` is now under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        let under: Vec<(PathBuf, u64)> = (self.by_path.iter())
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in under {
            self.by_path.remove(&old);
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_path_buf(),
            };
            if let Some(node) = self.inodes.get_mut(&ino) {
                node.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }

    /// Opens directory `ino`: its entries as they are now; returns the handle.
    pub(in super::super) fn opendir(&mut self, ino: u64) -> Op<u64> {
        let path = self.path(ino)?;
        let dot = FileType::Directory;
        let mut entries = vec![(ino, dot, ".".into()), (ino, dot, "..".into())];
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let kind = entry.file_type().ok().and_then(FileType::from_std);
            let child = self.by_path.get(&entry.path()).copied();
            entries.push((
                child.unwrap_or(entry.ino()),
                kind.unwrap_or(FileType::RegularFile),
                entry.file_name(),
            ));
        }
        let fh = self.fresh();
        self.handles.insert(fh, Handle::Dir(entries));
        Ok(fh)
    }

    /// The entries of open directory `fh` from position `offset` on.
    pub(in super::super) fn listing(
        &self,
        fh: u64,
        offset: u64,
    ) -> Op<&[(u64, FileType, OsString)]> {
        match self.handles.get(&fh) {
            Some(Handle::Dir(entries)) => Ok(entries.get(offset as usize..).unwrap_or_default()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Closes directory handle `fh`.
    pub(in super::super) fn releasedir(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }
}
