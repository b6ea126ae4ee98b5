//! The node's membership flags and the failure-detector config built from them.

use super::detector::DetectorConfig;
use bus_schemas::membership::plausible::{DEFAULT_MAX_CLOCK_SKEW_MS, DEFAULT_MAX_MEMBERS};
use std::time::Duration;

/// The highest `--max-members`: a view of that many members with the longest hosts and
/// addresses still fits in an 8 MB NATS payload (`members` replies carry the whole view).
pub const MAX_MEMBERS_LIMIT: usize = 10_000;

/// `idunno-node` membership flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MembershipArgs {
    /// Failure-detector protocol period in milliseconds.
    #[arg(long, env = "IDUNNO_PROBE_PERIOD_MS", default_value_t = 200)]
    pub probe_period_ms: u64,
    /// Forget a failed or left member this many milliseconds after it failed or left (a
    /// tombstone keeps that generation from coming back).
    #[arg(long, env = "IDUNNO_FORGET_AFTER_MS", default_value_t = 600_000)]
    pub forget_after_ms: u64,
    /// Refuse member generations more than this many milliseconds ahead of this node's clock
    /// (keep the nodes' clocks closer than this).
    #[arg(long, env = "IDUNNO_MAX_CLOCK_SKEW_MS", default_value_t = DEFAULT_MAX_CLOCK_SKEW_MS)]
    pub max_clock_skew_ms: u64,
    /// The most members a view holds; new ids beyond it are refused.
    #[arg(long, env = "IDUNNO_MAX_MEMBERS", default_value_t = DEFAULT_MAX_MEMBERS)]
    pub max_members: usize,
}

/// A membership setting out of its range; the message names the flag and the range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutOfRange(pub String);

/// Fails with `message` unless `ok`.
fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), OutOfRange> {
    if ok {
        Ok(())
    } else {
        Err(OutOfRange(message()))
    }
}

impl MembershipArgs {
    /// The detector config; the error names the flag that is out of range.
    pub fn detector(&self) -> Result<DetectorConfig, OutOfRange> {
        // Checked before it scales the other timings (a huge period would overflow them).
        ensure((20..=60_000).contains(&self.probe_period_ms), || {
            "--probe-period-ms must be between 20 and 60000".into()
        })?;
        let cfg = DetectorConfig {
            forget_after: Duration::from_millis(self.forget_after_ms),
            max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
            max_members: self.max_members,
            ..DetectorConfig::with_period(Duration::from_millis(self.probe_period_ms))
        };
        validate(&cfg)?;
        Ok(cfg)
    }
}

/// Checks the membership settings of a config.
pub fn validate(d: &DetectorConfig) -> Result<(), OutOfRange> {
    ensure(d.period >= Duration::from_millis(20), || {
        "--probe-period-ms must be at least 20".into()
    })?;
    let days = Duration::from_secs(86_400);
    ensure(
        (Duration::from_secs(1)..=7 * days).contains(&d.forget_after),
        || "--forget-after-ms must be between 1000 and 604800000 (7 days)".into(),
    )?;
    ensure(
        (Duration::from_secs(1)..=days).contains(&d.max_clock_skew),
        || "--max-clock-skew-ms must be between 1000 and 86400000 (1 day)".into(),
    )?;
    ensure((2..=MAX_MEMBERS_LIMIT).contains(&d.max_members), || {
        format!("--max-members must be between 2 and {MAX_MEMBERS_LIMIT}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        m: MembershipArgs,
    }

    fn detector(args: &[&str]) -> Result<DetectorConfig, OutOfRange> {
        let cli = Cli::try_parse_from(std::iter::once("node").chain(args.iter().copied()))
            .expect("the flags parse");
        cli.m.detector()
    }

    #[test]
    fn defaults_are_the_documented_limits() {
        let d = detector(&[]).unwrap();
        assert_eq!(d.forget_after, Duration::from_secs(600));
        assert_eq!(d.max_clock_skew, Duration::from_secs(300));
        assert_eq!(d.max_members, 1024);
        assert_eq!(d.period, Duration::from_millis(200));
    }

    #[test]
    fn out_of_range_flags_are_refused_by_name() {
        for (args, flag) in [
            (
                &["--probe-period-ms", "18446744073709551615"][..],
                "--probe-period-ms",
            ),
            (&["--forget-after-ms", "10"][..], "--forget-after-ms"),
            (&["--max-clock-skew-ms", "0"][..], "--max-clock-skew-ms"),
            (&["--max-members", "1000000"][..], "--max-members"),
        ] {
            let err = detector(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let d = detector(&["--forget-after-ms", "2000", "--max-members", "16"]).unwrap();
        assert_eq!(
            (d.forget_after, d.max_members),
            (Duration::from_secs(2), 16)
        );
    }
}
