//! What a node runs on: its data directory's file system, libtorch's threads and device, and
//! the CPU its process used lately (as `ray status` shows a node's resources).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the node was started with (set once at start, read by `stat` and `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The node's data directory (SDFS replicas, caches, logs).
    pub data_dir: PathBuf,
    /// Threads libtorch computes with (`--threads`).
    pub tch_threads: u32,
    /// The device models run on (`cpu` or `cuda`).
    pub device: String,
    /// CPUs this process may run on.
    pub cpus: u32,
}

/// A file system's space, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disk {
    /// Free for an unprivileged user (what new replicas can use).
    pub free_bytes: u64,
    /// The file system's size.
    pub total_bytes: u64,
}

/// The space of the file system holding `path`; `None` where it cannot be read.
pub fn disk(path: &Path) -> Option<Disk> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let block = s.fragment_size();
    Some(Disk {
        free_bytes: s.blocks_available().saturating_mul(block),
        total_bytes: s.blocks().saturating_mul(block),
    })
}

/// CPUs this process may run on (its affinity mask, else the machine's).
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// CPU use over the last few samples: feed it the process's CPU seconds now and then.
#[derive(Debug, Default)]
pub struct CpuWindow {
    samples: VecDeque<(Instant, f64)>,
}

impl CpuWindow {
    /// Samples kept: with one a second, the rate covers the last 5 s.
    const WINDOW: usize = 6;

    /// Records the process's CPU seconds at `at`.
    pub fn sample(&mut self, at: Instant, cpu_seconds: f64) {
        self.samples.push_back((at, cpu_seconds));
        if self.samples.len() > Self::WINDOW {
            self.samples.pop_front();
        }
    }

    /// CPU seconds per second over the window (1.0: one core busy); 0 before two samples.
    pub fn cores(&self) -> f64 {
        let (Some((t0, a)), Some((t1, b))) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let dt = t1.saturating_duration_since(*t0).as_secs_f64();
        if dt <= 0.0 {
            return 0.0;
        }
        ((b - a) / dt).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_use_is_the_rate_over_the_window() {
        let mut w = CpuWindow::default();
        let t = Instant::now();
        assert_eq!(w.cores(), 0.0);
        w.sample(t, 10.0);
        assert_eq!(w.cores(), 0.0);
        for i in 1..=10u32 {
            w.sample(
                t + Duration::from_secs(u64::from(i)),
                10.0 + 1.5 * f64::from(i),
            );
        }
        // Only the last 6 samples count: 5 s in which 7.5 CPU seconds were used.
        assert!((w.cores() - 1.5).abs() < 1e-9, "{}", w.cores());
        // A counter that went backwards (cannot happen, but) never gives negative use.
        w.sample(t + Duration::from_secs(11), 0.0);
        assert_eq!(w.cores(), 0.0);
    }

    #[test]
    fn the_disk_of_a_directory_is_read() {
        let d = disk(Path::new(".")).expect("statvfs of the current directory");
        assert!(d.total_bytes > 0 && d.free_bytes <= d.total_bytes, "{d:?}");
        assert!(disk(Path::new("/no/such/dir")).is_none());
        assert!(cpus() >= 1);
    }
}
