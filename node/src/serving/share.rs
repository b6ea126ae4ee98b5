//! How the inference thread divides its time between online requests and job batches.
//!
//! While a job is being served (one of its pieces ran within [`HOLD`]), online work takes at
//! most its share (`--infer-online-share`, [`DEFAULT_ONLINE_SHARE_PERCENT`] by default) of
//! the thread's recent busy time, counting the time spent decoding its images on other
//! threads, and a small burst beyond it: below that it goes first, so a light online load is
//! answered at once; past it, it waits for the job (even when the job's queue is briefly empty between pieces), and
//! the [`Gate`] tells the node to shed new requests at once rather than take them in; while a
//! job runs the node also keeps only its share of `--infer-max-inflight` requests in progress
//! ([`busy_while_job`]), so none waits behind the job until its deadline. So a flood cannot
//! take more than that share from the jobs being served. Without a job, online work has the
//! whole thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The share of the inference thread's time online requests take while jobs run, in percent,
/// unless `--infer-online-share` says otherwise.
pub const DEFAULT_ONLINE_SHARE_PERCENT: u32 = 5;
/// Past its share, how long online work waits for a job's next piece after the last one ended
/// (a job submits its pieces one after another, so its queue is briefly empty between them).
pub const HOLD: Duration = Duration::from_millis(500);
/// Time online work may take beyond its share (over the same decaying window), so that a light
/// load, a request now and then, is never refused, even just after a job starts.
const BURST: Duration = Duration::from_millis(20);
/// The span over which the thread's busy time is weighed (older time counts exponentially less).
const WINDOW: Duration = Duration::from_secs(2);

/// Recent busy time of the thread, online and in all, decaying over [`WINDOW`].
#[derive(Debug, Clone, Copy)]
pub struct Share {
    urgent: f64,
    total: f64,
    at: Instant,
    /// The most of the time urgent work takes while other work waits (0 to 1).
    fraction: f64,
}

impl Share {
    /// No time spent yet, as of `now`; urgent work may take `percent` of the time.
    pub fn new(now: Instant, percent: u32) -> Share {
        Share {
            urgent: 0.0,
            total: 0.0,
            at: now,
            fraction: f64::from(percent.min(100)) / 100.0,
        }
    }

    fn decay(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let f = (-elapsed / WINDOW.as_secs_f64()).exp();
        self.urgent *= f;
        self.total *= f;
        self.at = now.max(self.at);
    }

    /// Records a task that ran for `took`, ending at `now`.
    pub fn add(&mut self, urgent: bool, took: Duration, now: Instant) {
        self.decay(now);
        let secs = took.as_secs_f64();
        self.total += secs;
        if urgent {
            self.urgent += secs;
        }
    }

    /// Whether an urgent task should run before a waiting normal one, as of `now`.
    pub fn urgent_first(&mut self, now: Instant) -> bool {
        self.decay(now);
        self.urgent < self.fraction * self.total + BURST.as_secs_f64()
    }
}

/// What the inference thread tells the node taking online requests: whether a new one would
/// only wait (online work is past its share while a job runs), so it is shed at once.
#[derive(Debug)]
pub struct Gate {
    base: Instant,
    over_share: AtomicBool,
    /// When a job's piece last ended, in nanoseconds after `base` (0: never).
    job_ran: AtomicU64,
}

impl Gate {
    /// A gate that lets online work in, as of `now`.
    pub fn new(now: Instant) -> Gate {
        Gate {
            base: now,
            over_share: AtomicBool::new(false),
            job_ran: AtomicU64::new(0),
        }
    }

    /// Records whether online work is past its share now.
    pub fn set_over_share(&self, over: bool) {
        self.over_share.store(over, Ordering::Relaxed);
    }

    /// Records that a piece of job work ended at `now`.
    pub fn job_ran(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.base).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX).max(1);
        self.job_ran.store(ns, Ordering::Relaxed);
    }

    /// Whether a job's piece ended within [`HOLD`] before `now`.
    pub fn job_running(&self, now: Instant) -> bool {
        let ran = self.job_ran.load(Ordering::Relaxed);
        let ended = self.base + Duration::from_nanos(ran);
        ran != 0 && now.saturating_duration_since(ended) < HOLD
    }

    /// Whether a new online request may be taken in at `now`, with `busy` others in progress:
    /// always without a job; while one runs, only within the online share and below
    /// `busy_while_job` (online work waiting behind a job past its share would time out).
    pub fn admits(&self, now: Instant, busy: usize, busy_while_job: usize) -> bool {
        !self.job_running(now)
            || (!self.over_share.load(Ordering::Relaxed) && busy < busy_while_job)
    }
}

/// How many online requests a node keeps in progress while a job runs: its share of
/// `max_inflight` (at least one).
pub fn busy_while_job(max_inflight: usize, percent: u32) -> usize {
    let share = max_inflight.saturating_mul(percent.min(100) as usize);
    share.div_ceil(100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kinds always waiting, every task 10 ms: online work gets about its share.
    fn simulate(steps: u32, start: Share, t0: Instant) -> u32 {
        let (mut share, mut now, mut urgent) = (start, t0, 0);
        for _ in 0..steps {
            let u = share.urgent_first(now);
            now += Duration::from_millis(10);
            share.add(u, Duration::from_millis(10), now);
            urgent += u32::from(u);
        }
        urgent
    }

    #[test]
    fn a_flood_of_urgent_work_gets_its_share_and_no_more() {
        let t0 = Instant::now();
        let urgent = simulate(1000, Share::new(t0, 20), t0);
        // 20% of the 2 s window, plus the 20 ms burst.
        assert!((195..=225).contains(&urgent), "{urgent} of 1000");
    }

    #[test]
    fn the_share_is_the_one_asked_for() {
        let t0 = Instant::now();
        let urgent = simulate(1000, Share::new(t0, 5), t0);
        assert!((45..=75).contains(&urgent), "{urgent} of 1000");
    }

    #[test]
    fn the_gate_closes_past_the_share_or_the_busy_cap_only_while_a_job_runs() {
        let t0 = Instant::now();
        let gate = Gate::new(t0);
        gate.set_over_share(true);
        assert!(gate.admits(t0, 63, 4), "no job has run");
        let t1 = t0 + Duration::from_secs(1);
        gate.job_ran(t1);
        assert!(!gate.admits(t1, 0, 4), "past the share");
        assert!(!gate.admits(t1 + HOLD / 2, 0, 4));
        assert!(gate.admits(t1 + HOLD, 63, 4), "the job ended");
        gate.set_over_share(false);
        let t2 = t0 + Duration::from_secs(2);
        gate.job_ran(t2);
        assert!(gate.admits(t2, 3, 4), "within the share and the cap");
        assert!(!gate.admits(t2, 4, 4), "at the cap");
    }

    #[test]
    fn a_light_load_is_never_refused_even_as_a_job_starts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Share::new(t0, 5);
        s.add(false, ms(1), t0 + ms(1));
        s.add(true, ms(5), t0 + ms(6));
        assert!(s.urgent_first(t0 + ms(6)), "within the burst");
        s.add(true, ms(30), t0 + ms(36));
        assert!(!s.urgent_first(t0 + ms(36)), "beyond share and burst");
    }

    #[test]
    fn the_busy_cap_while_a_job_runs_is_the_share_of_the_slots() {
        assert_eq!(busy_while_job(64, 5), 4);
        assert_eq!(busy_while_job(64, 100), 64);
        assert_eq!(busy_while_job(1, 1), 1);
        assert_eq!(busy_while_job(usize::MAX, 100), usize::MAX / 100 + 1);
    }

    #[test]
    fn urgent_work_goes_first_when_the_thread_was_idle_or_did_batches() {
        let t0 = Instant::now();
        let mut s = Share::new(t0, 20);
        assert!(s.urgent_first(t0));
        s.add(false, Duration::from_secs(1), t0 + Duration::from_secs(1));
        assert!(s.urgent_first(t0 + Duration::from_secs(1)));
        s.add(true, Duration::from_secs(1), t0 + Duration::from_secs(2));
        assert!(!s.urgent_first(t0 + Duration::from_secs(2)));
        // Batches run for a while: the old urgent time fades, and urgent work goes first again.
        s.add(false, Duration::from_secs(3), t0 + Duration::from_secs(5));
        assert!(s.urgent_first(t0 + Duration::from_secs(5)));
    }
}
