//! A FUSE layer that forgets writes not yet fsynced, as Jepsen's LazyFS does: put a server's
//! store and the nodes' data directories under [`LazyFs::path`], kill -9 every process using
//! it, call [`LazyFs::power_cut`], and start them again on the same directories.
//!
//! It mirrors a backing directory, served by a thread of the test process. What each FUSE
//! operation does:
//! - `write` goes to an in-memory page cache of the file (4 KiB pages over the backing file);
//!   `read` and `getattr` see the cache (read-your-writes, with the cached size).
//! - `fsync`/`fdatasync` write the file's cached pages through to the backing file and set its
//!   length; a write through a handle opened `O_SYNC`/`O_DSYNC` is written through at once. A
//!   `close` is no fsync.
//! - Metadata is passed through to the backing directory at once and so is durable at once:
//!   `create`, `mknod`, `mkdir`, `symlink`, `unlink`, `rmdir`, `rename`, `chmod`/`chown`/times,
//!   and `truncate` (the size is set on the backing file; cached pages past it are dropped).
//!   A file created and never fsynced thus comes back empty, and a file renamed before its
//!   writes were fsynced comes back under its new name with its old durable bytes (the classic
//!   zero-length file after rename): write, fsync, rename (as nats-server's filestore and
//!   `object_store` with fsync do) keeps the new bytes.
//! - `fsyncdir` does nothing (entries are already durable); hard links are refused (EPERM),
//!   extended attributes, locks and fallocate are left unimplemented (ENOSYS).
//! - [`LazyFs::power_cut`] drops every cached page: each file is back to its durable bytes.
//!
//! The kernel is told to cache no attributes or entries, and files are opened without
//! `keep_cache`, so a process started after a power cut reads what is durable. What the
//! backing directory holds is on the real disk: a crash of the machine itself is not simulated.

mod cache;
mod ops;
mod state;

pub use state::Forgotten;

use fuser::{BackgroundSession, Config, MountOption};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A mounted layer over a fresh backing directory; unmounted (lazily if still in use), its
/// thread joined and both directories removed on drop.
pub struct LazyFs {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<state::State>>,
    mountpoint: tempfile::TempDir,
    backing: tempfile::TempDir,
}

/// Why this box cannot mount the layer (not root, no `/dev/fuse`), or None.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"));
    if uid.and_then(|u| u.split_whitespace().nth(1)) != Some("0") {
        return Some("the power-cut layer (FUSE) needs root to mount(2) it".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("the power-cut layer (FUSE) needs /dev/fuse (modprobe fuse)".into());
    }
    None
}

impl LazyFs {
    /// Mounts a layer over a new, empty backing directory. Panics with what is missing where
    /// FUSE cannot be mounted (see [`unavailable`]).
    pub fn mount() -> Self {
        if let Some(why) = unavailable() {
            panic!("{why}");
        }
        let backing = tempfile::tempdir().expect("temp dir");
        let mountpoint = tempfile::tempdir().expect("temp dir");
        let root = backing.path().canonicalize().expect("backing dir");
        let state = Arc::new(Mutex::new(state::State::new(&root)));
        let layer = ops::Layer {
            state: state.clone(),
            root,
        };
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("lazyfs".into()), MountOption::RW];
        let session = fuser::spawn_mount(layer, mountpoint.path(), &config).unwrap_or_else(|e| {
            panic!(
                "mounting the power-cut layer (FUSE) at {} failed: {e} \
                 (it needs root and /dev/fuse, or fusermount3 from Debian's fuse3)",
                mountpoint.path().display()
            )
        });
        Self {
            session: Some(session),
            state,
            mountpoint,
            backing,
        }
    }

    /// Where the layer is mounted: put every directory that should lose power here.
    pub fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    /// The backing directory: what is durable.
    pub fn backing(&self) -> &Path {
        self.backing.path()
    }

    /// Forgets every write not yet fsynced, as a power failure would; returns what was lost.
    /// Kill every process using the mount first: a process that still has a file open may
    /// keep seeing what the kernel cached for it.
    pub fn power_cut(&self) -> Forgotten {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.power_cut().expect("the backing files answer")
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Lazy: gone from the namespace at once, the connection ends with its last user.
        let detach = nix::mount::MntFlags::MNT_DETACH;
        let _ = nix::mount::umount2(self.mountpoint.path(), detach);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !session.guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if session.guard.is_finished() {
            let _ = session.join();
        } else {
            // A process still using it, or a copy of the mount in a mount namespace made while
            // it was mounted (`ip netns exec` makes one): the thread ends when they do.
            eprintln!(
                "lazyfs: {} is still referenced 5 s after its lazy unmount (a process, or a mount \
                 namespace made meanwhile); its thread ends when the last reference goes",
                self.mountpoint.path().display()
            );
        }
    }
}
