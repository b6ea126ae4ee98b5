//! The layer's bookkeeping: inode numbers for backing paths, open handles, and the cache of
//! each file with writes not yet fsynced. Every method is one FUSE operation's work, done on
//! the backing directory.

use super::cache::Cached;
use fuser::{Errno, FileAttr, FileType, INodeNo};
use nix::fcntl::OFlag;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod names;

/// The result of one operation: the errno is what the caller's system call returns.
pub(super) type Op<T> = Result<T, Errno>;

/// A file or directory the kernel knows by number.
struct Inode {
    /// Where it is in the backing directory; `None` once unlinked.
    path: Option<PathBuf>,
    /// Lookups the kernel has not forgotten.
    lookups: u64,
    /// Open handles.
    opens: u32,
    /// Its bytes, while it is open or has writes not yet durable.
    data: Option<Cached>,
}

/// An open file or directory.
enum Handle {
    /// A file; `sync` if opened with `O_SYNC`/`O_DSYNC` (every write is durable at once).
    File { sync: bool },
    /// A directory, with the entries it had when opened.
    Dir(Vec<(u64, FileType, OsString)>),
}

/// Everything the layer knows.
pub(super) struct State {
    inodes: HashMap<u64, Inode>,
    by_path: HashMap<PathBuf, u64>,
    handles: HashMap<u64, Handle>,
    next: u64,
}

/// Files that lost writes in a power cut, and how much (in whole 4 KiB pages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Files with writes not yet durable.
    pub files: usize,
    /// Their unsynced bytes, counted in whole pages.
    pub bytes: u64,
    /// Their paths under the mount (`None`: unlinked while open).
    pub paths: Vec<Option<PathBuf>>,
}

impl State {
    /// The root inode (FUSE's number 1) over `root`.
    pub(super) fn new(root: &Path) -> Self {
        let root_node = Inode {
            path: Some(root.to_path_buf()),
            lookups: 1,
            opens: 0,
            data: None,
        };
        Self {
            inodes: HashMap::from([(INodeNo::ROOT.0, root_node)]),
            by_path: HashMap::from([(root.to_path_buf(), INodeNo::ROOT.0)]),
            handles: HashMap::new(),
            next: INodeNo::ROOT.0 + 1,
        }
    }

    fn node(&mut self, ino: u64) -> Op<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn path(&self, ino: u64) -> Op<PathBuf> {
        let node = self.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        node.path.clone().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Op<PathBuf> {
        Ok(self.path(parent)?.join(name))
    }

    fn data(&mut self, ino: u64) -> Op<&mut Cached> {
        self.node(ino)?.data.as_mut().ok_or(Errno::EBADF)
    }

    /// The inode of `path`, one more lookup of it counted.
    fn remember(&mut self, path: PathBuf) -> u64 {
        let ino = match self.by_path.get(&path) {
            Some(&ino) => ino,
            None => {
                let ino = self.fresh();
                let node = Inode {
                    path: Some(path.clone()),
                    lookups: 0,
                    opens: 0,
                    data: None,
                };
                self.inodes.insert(ino, node);
                self.by_path.insert(path, ino);
                ino
            }
        };
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    /// The attributes the kernel sees: the backing file's, with the cached size and mtime.
    pub(super) fn attr(&self, ino: u64) -> Op<FileAttr> {
        let node = self.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        let meta = match (&node.data, &node.path) {
            (Some(data), _) => data.file().metadata()?,
            (None, Some(path)) => fs::symlink_metadata(path)?,
            (None, None) => return Err(Errno::ENOENT),
        };
        Ok(attr(ino, &meta, node.data.as_ref()))
    }

    /// Looks `name` up in `parent`.
    pub(super) fn lookup(&mut self, parent: u64, name: &OsStr) -> Op<FileAttr> {
        let path = self.child(parent, name)?;
        fs::symlink_metadata(&path)?;
        let ino = self.remember(path);
        self.attr(ino)
    }

    /// The kernel dropped `n` lookups of `ino`.
    pub(super) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.idle(ino);
    }

    /// Lets go of what `ino` no longer needs: the backing file once it is closed and clean
    /// (or closed and unlinked), the inode once the kernel also forgot it.
    fn idle(&mut self, ino: u64) {
        let Some(node) = self.inodes.get_mut(&ino) else {
            return;
        };
        if node.opens > 0 {
            return;
        }
        if node.path.is_none() || node.data.as_ref().is_some_and(|d| !d.is_dirty()) {
            node.data = None;
        }
        if ino == INodeNo::ROOT.0 || node.lookups > 0 || node.data.is_some() {
            return;
        }
        if let Some(path) = self.inodes.remove(&ino).and_then(|n| n.path) {
            if self.by_path.get(&path) == Some(&ino) {
                self.by_path.remove(&path);
            }
        }
    }

    /// Applies a size (a truncate: durable at once), mode, owner and times.
    pub(super) fn setattr(&mut self, ino: u64, set: SetAttr) -> Op<FileAttr> {
        let path = self.inodes.get(&ino).and_then(|n| n.path.clone());
        if let Some(size) = set.size {
            match (self.node(ino)?.data.as_mut(), &path) {
                (Some(data), _) => data.truncate(size)?,
                (None, Some(path)) => File::options().write(true).open(path)?.set_len(size)?,
                (None, None) => return Err(Errno::ENOENT),
            }
        }
        if let Some(path) = &path {
            set.apply(path)?;
        }
        self.attr(ino)
    }

    /// Opens file `ino`; returns the handle.
    pub(super) fn open(&mut self, ino: u64, flags: i32) -> Op<u64> {
        let path = self.path(ino);
        let node = self.node(ino)?;
        if node.data.is_none() {
            let file = File::options().read(true).write(true).open(path?)?;
            node.data = Some(Cached::new(file)?);
        }
        node.opens += 1;
        let sync = flags & OFlag::O_DSYNC.bits() != 0;
        let fh = self.fresh();
        self.handles.insert(fh, Handle::File { sync });
        Ok(fh)
    }

    /// Creates (or, without `O_EXCL`, opens) file `name` in `parent` and opens it.
    pub(super) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Op<(FileAttr, u64)> {
        let path = self.child(parent, name)?;
        let mut options = File::options();
        options.read(true).write(true).mode(mode & 0o7777);
        if flags & OFlag::O_EXCL.bits() != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = options.open(&path)?;
        let ino = self.remember(path);
        let node = self.node(ino)?;
        if node.data.is_none() {
            node.data = Some(Cached::new(file)?);
        }
        if flags & OFlag::O_TRUNC.bits() != 0 {
            self.data(ino)?.truncate(0)?;
        }
        let fh = self.open(ino, flags)?;
        Ok((self.attr(ino)?, fh))
    }

    /// Reads from the cache (read-your-writes).
    pub(super) fn read(&mut self, ino: u64, offset: u64, len: u32) -> Op<Vec<u8>> {
        Ok(self.data(ino)?.read(offset, u64::from(len))?)
    }

    /// Writes into the cache; durable at once only through a handle opened `O_SYNC`.
    pub(super) fn write(&mut self, ino: u64, fh: u64, offset: u64, bytes: &[u8]) -> Op<u32> {
        let sync = matches!(self.handles.get(&fh), Some(Handle::File { sync: true }));
        let data = self.data(ino)?;
        data.write(offset, bytes)?;
        if sync {
            data.sync()?;
        }
        u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)
    }

    /// Makes every write to `ino` so far durable.
    pub(super) fn fsync(&mut self, ino: u64) -> Op<()> {
        if let Some(data) = self.node(ino)?.data.as_mut() {
            data.sync()?;
        }
        Ok(())
    }

    /// Closes handle `fh` of `ino`; unsynced writes stay cached (a close is no fsync).
    pub(super) fn release(&mut self, ino: u64, fh: u64) {
        self.handles.remove(&fh);
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.opens = node.opens.saturating_sub(1);
        }
        self.idle(ino);
    }

    /// Forgets every write not yet durable; returns what was lost.
    pub(super) fn power_cut(&mut self) -> std::io::Result<Forgotten> {
        let mut lost = Forgotten::default();
        let root = self.path(INodeNo::ROOT.0).unwrap_or_default();
        for node in self.inodes.values_mut() {
            if let Some(data) = node.data.as_mut() {
                if data.is_dirty() {
                    lost.files += 1;
                    lost.bytes += data.dirty_bytes();
                    let path = node
                        .path
                        .as_deref()
                        .and_then(|p| p.strip_prefix(&root).ok());
                    lost.paths.push(path.map(Path::to_path_buf));
                }
                data.forget()?;
            }
        }
        lost.paths.sort();
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            self.idle(ino);
        }
        Ok(lost)
    }
}

/// The parts of a `setattr` besides the size.
#[derive(Default)]
pub(super) struct SetAttr {
    /// A new size.
    pub(super) size: Option<u64>,
    /// New permission bits.
    pub(super) mode: Option<u32>,
    /// A new owner.
    pub(super) uid: Option<u32>,
    /// A new group.
    pub(super) gid: Option<u32>,
    /// A new access time.
    pub(super) atime: Option<SystemTime>,
    /// A new modification time.
    pub(super) mtime: Option<SystemTime>,
}

impl SetAttr {
    fn apply(&self, path: &Path) -> Op<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(mode) = self.mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::lchown(path, self.uid, self.gid)?;
        }
        if self.atime.is_some() || self.mtime.is_some() {
            let mut times = fs::FileTimes::new();
            if let Some(t) = self.atime {
                times = times.set_accessed(t);
            }
            if let Some(t) = self.mtime {
                times = times.set_modified(t);
            }
            File::open(path)?.set_times(times)?;
        }
        Ok(())
    }
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    let since = Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32);
    UNIX_EPOCH + since
}

fn attr(ino: u64, meta: &Metadata, data: Option<&Cached>) -> FileAttr {
    let mtime = time(meta.mtime(), meta.mtime_nsec());
    FileAttr {
        ino: INodeNo(ino),
        size: data.map_or(meta.size(), Cached::size),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: data.and_then(Cached::mtime).unwrap_or(mtime),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}
