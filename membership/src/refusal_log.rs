//! Warnings about refused membership messages, at most one line per interval in a flood.

use super::detector::Refused;
use std::time::{Duration, Instant};

/// Aggregates refusals: the first one after a quiet interval is logged at once, the rest of
/// the interval is counted and summed up in the next line.
#[derive(Debug)]
pub struct RefusalLog {
    every: Duration,
    last_line: Option<Instant>,
    held: u64,
}

impl RefusalLog {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last_line: None,
            held: 0,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every)
    }

    /// Notes a refusal at `now`; returns the line to log, if one is due.
    pub fn note(&mut self, refused: &Refused, now: Instant) -> Option<String> {
        if !self.due(now) {
            self.held = self.held.saturating_add(1);
            return None;
        }
        let line = match self.take_held() {
            0 => refused.to_string(),
            n => format!("{refused} (and {n} more refused before it, not logged one by one)"),
        };
        self.last_line = Some(now);
        Some(line)
    }

    /// The summary of refusals not logged yet, once the interval has passed.
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        if self.held == 0 || !self.due(now) {
            return None;
        }
        self.last_line = Some(now);
        let n = self.take_held();
        Some(format!(
            "refused {n} more membership messages (see membership_refused)"
        ))
    }

    fn take_held(&mut self) -> u64 {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Refused {
        Refused::ViewFull {
            id: "x".into(),
            max: 4,
        }
    }

    #[test]
    fn a_flood_gives_one_line_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(log.note(&full(), t0).is_some());
        let lines = (1..10_000u64)
            .filter_map(|i| log.note(&full(), t0 + Duration::from_micros(i)))
            .count();
        assert_eq!(lines, 0);
        assert_eq!(log.flush(t0 + Duration::from_secs(1)), None);
        let summary = log.flush(t0 + Duration::from_secs(10)).unwrap();
        assert!(summary.contains("9999 more"), "{summary}");
        assert_eq!(log.flush(t0 + Duration::from_secs(30)), None);
        let next = log.note(&full(), t0 + Duration::from_secs(30)).unwrap();
        assert!(next.contains("at most 4 members"), "{next}");
    }

    #[test]
    fn held_refusals_are_counted_in_the_next_line() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        log.note(&full(), t0);
        log.note(&full(), t0 + Duration::from_secs(1));
        let line = log.note(&full(), t0 + Duration::from_secs(11)).unwrap();
        assert!(line.contains("and 1 more"), "{line}");
    }
}
