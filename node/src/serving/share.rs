//! How the inference thread divides its time when online requests and job batches both wait:
//! online work goes first while it has taken less than [`URGENT_SHARE`] of the thread's recent
//! busy time, so a light online load is answered at once, and a flood of it cannot take more
//! than that share from the jobs being served (the rest of the flood waits, then is shed).
//! The thread stays work-conserving otherwise: online work runs whenever no job has run
//! within [`HOLD`].

use std::time::{Duration, Instant};

/// Most of the inference thread's busy time online requests take while job batches wait.
pub const URGENT_SHARE: f64 = 0.2;
/// Past its share, how long online work waits for a job's next piece after the last one ended
/// (a job submits its pieces one after another, so its queue is briefly empty between them).
pub const HOLD: Duration = Duration::from_millis(20);
/// The span over which the thread's busy time is weighed (older time counts exponentially less).
const WINDOW: Duration = Duration::from_secs(2);

/// Recent busy time of the thread, online and in all, decaying over [`WINDOW`].
#[derive(Debug, Clone, Copy)]
pub struct Share {
    urgent: f64,
    total: f64,
    at: Instant,
}

impl Share {
    /// No time spent yet, as of `now`.
    pub fn new(now: Instant) -> Share {
        Share {
            urgent: 0.0,
            total: 0.0,
            at: now,
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
        self.total <= 0.0 || self.urgent / self.total < URGENT_SHARE
    }
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
        let urgent = simulate(1000, Share::new(t0), t0);
        assert!((190..=210).contains(&urgent), "{urgent} of 1000");
    }

    #[test]
    fn urgent_work_goes_first_when_the_thread_was_idle_or_did_batches() {
        let t0 = Instant::now();
        let mut s = Share::new(t0);
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
