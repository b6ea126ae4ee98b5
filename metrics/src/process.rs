//! This process's resources as Prometheus's `process_*` series report them, read from
//! `/proc/self` (Linux; elsewhere nothing is read and the series are left out).

/// The process's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The limit of open file descriptors.
    pub max_fds: u64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`: 100 on every Linux the project
/// runs on).
const TICKS: f64 = 100.0;
/// Bytes per page of `/proc/self/stat`'s RSS (4 KiB on x86-64 and most arm64).
const PAGE: u64 = 4096;

/// Reads `/proc/self`; `None` where it cannot be read.
pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut p = parse_stat(&stat, boot_time()?)?;
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    p.max_fds = parse_max_fds(&limits).unwrap_or(0);
    Some(p)
}

/// The machine's boot time, seconds since the epoch (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses `/proc/self/stat` (the fields after the command, which may hold spaces).
fn parse_stat(stat: &str, boot: f64) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields counted from `state` (field 3 of the whole line) as 0.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime) = (num(11)?, num(12)?);
    Some(Process {
        cpu_seconds: (utime + stime) as f64 / TICKS,
        threads: num(17)?,
        start_time_seconds: boot + num(19)? as f64 / TICKS,
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * PAGE,
        ..Process::default()
    })
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command() {
        let stat = "1234 (idunno node) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 12 0 5000 104857600 2560 rest";
        let p = parse_stat(stat, 1_000_000.0).unwrap();
        assert_eq!(p.cpu_seconds, 4.0);
        assert_eq!(p.threads, 12);
        assert_eq!(p.start_time_seconds, 1_000_050.0);
        assert_eq!(p.virtual_bytes, 104_857_600);
        assert_eq!(p.resident_bytes, 2560 * 4096);
        let limits = "Limit Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
    }

    #[test]
    fn this_process_can_be_read() {
        let p = read().expect("/proc/self on Linux");
        assert!(p.resident_bytes > 0 && p.threads >= 1 && p.open_fds > 0);
    }
}
