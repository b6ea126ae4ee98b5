//! Model routes: which version of a model a request gets. A model may have aliases (names
//! such as `production` for one of its versions) and one canary rollout at a time, which sends
//! a share of the requests for an alias to a new version. The routes of every model are kept
//! in the KV bucket [`crate::subjects::MODELS_BUCKET`] (key: the model's name), changed only by
//! compare-and-swap, and watched by every node.
//!
//! A request names a model as `name` (the alias [`DEFAULT_ALIAS`] when the model has it, else
//! the newest version), `name:version` or `name@alias` ([`ModelRef`]).

use crate::codec::Message;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The alias a bare model name follows when the model has it.
pub const DEFAULT_ALIAS: &str = "production";
/// Most aliases one model may have.
pub const MAX_ALIASES: usize = 16;
/// Buckets of [`ArmFigures::latency`]: upper bounds in milliseconds (the last is +∞).
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    1.0,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    5000.0,
    f64::INFINITY,
];

/// Which version of a model a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The alias [`DEFAULT_ALIAS`] if the model has it, else the newest version.
    Default,
    /// This version.
    Version(u64),
    /// The version this alias names (with its canary, if one runs).
    Alias(String),
}

/// A model as a request names it: `name`, `name:version` or `name@alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The model's name.
    pub name: String,
    /// Which version.
    pub pick: Pick,
}

impl ModelRef {
    /// Reads `name`, `name:version` or `name@alias` (each name a token: letters, digits,
    /// `-`, `_`).
    pub fn parse(text: &str) -> Result<ModelRef, String> {
        let (name, pick) = if let Some((name, alias)) = text.split_once('@') {
            crate::validate_token(alias).map_err(|e| format!("bad alias in {text:?}: {e}"))?;
            (name, Pick::Alias(alias.to_string()))
        } else if let Some((name, v)) = text.split_once(':') {
            let v: u64 = v
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("bad version in {text:?}: a number from 1"))?;
            (name, Pick::Version(v))
        } else {
            (text, Pick::Default)
        };
        crate::validate_token(name).map_err(|e| format!("bad model name {text:?}: {e}"))?;
        Ok(ModelRef {
            name: name.to_string(),
            pick,
        })
    }

    /// Combines a reference with a version given apart (`--model-version`, a request's
    /// `version`): both may not disagree.
    pub fn with_version(mut self, version: Option<u64>) -> Result<ModelRef, String> {
        match (&self.pick, version) {
            (_, None) => {}
            (Pick::Default, Some(v)) => self.pick = Pick::Version(v),
            (Pick::Version(a), Some(b)) if *a == b => {}
            (_, Some(v)) => return Err(format!("{self} and version {v} disagree: give one")),
        }
        Ok(self)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pick {
            Pick::Default => write!(f, "{}", self.name),
            Pick::Version(v) => write!(f, "{}:{v}", self.name),
            Pick::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

/// The routes of one model (the value of its key in the models bucket).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRoutes {
    /// The model's name.
    pub model: String,
    /// Each alias and the version it names.
    #[serde(default)]
    pub aliases: BTreeMap<String, u64>,
    /// Each alias and the version it named before its last change: what `rollback` returns
    /// to.
    #[serde(default)]
    pub previous: BTreeMap<String, u64>,
    /// The canary rollout running, if any.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// The last rollout that ended (promoted or rolled back), kept to read its figures.
    #[serde(default)]
    pub last_rollout: Option<Rollout>,
    /// When the routes last changed (ms since the epoch).
    #[serde(default)]
    pub changed_ms: u64,
}

impl Message for ModelRoutes {
    const NAME: &'static str = "model routes";
}

impl ModelRoutes {
    /// Every version an alias, a previous alias or the running rollout names: SDFS never
    /// prunes them.
    pub fn named_versions(&self) -> BTreeSet<u64> {
        let mut v: BTreeSet<u64> = self.aliases.values().copied().collect();
        v.extend(self.previous.values().copied());
        if let Some(r) = &self.rollout {
            v.extend([r.baseline, r.canary]);
        }
        v
    }

    /// The rollout running on `alias`, if any.
    pub fn rollout_on(&self, alias: &str) -> Option<&Rollout> {
        self.rollout.as_ref().filter(|r| r.alias == alias)
    }
}

/// A canary rollout: requests for `alias` go to `canary` at `percent`, else to `baseline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Its id (its start in ms since the epoch; unique per model).
    pub id: u64,
    /// The alias whose requests are split.
    pub alias: String,
    /// The version the alias named when the rollout started.
    pub baseline: u64,
    /// The new version.
    pub canary: u64,
    /// The share of the alias's requests the canary gets, in percent (0 to 100).
    pub percent: f64,
    /// How it ended, once it did.
    #[serde(default)]
    pub ended: Option<RolloutEnd>,
}

impl Rollout {
    /// Which arm request number `n` (counted from 0, per node and rollout) goes to: the
    /// canary's turns are spread evenly, so any run of requests holds `percent` of canary
    /// requests to within one.
    pub fn arm(&self, n: u64) -> Arm {
        let p = self.percent.clamp(0.0, 100.0) / 100.0;
        let turns = |k: u64| (k as f64 * p).floor() as u64;
        if turns(n + 1) > turns(n) {
            Arm::Canary
        } else {
            Arm::Baseline
        }
    }

    /// The version of `arm`.
    pub fn version(&self, arm: Arm) -> u64 {
        match arm {
            Arm::Baseline => self.baseline,
            Arm::Canary => self.canary,
        }
    }
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutEnd {
    /// Promoted (the alias names the canary now) or not (rolled back).
    pub promoted: bool,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// One side of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The version the alias named.
    Baseline,
    /// The new version.
    Canary,
}

impl Arm {
    /// `baseline` or `canary`.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Canary => "canary",
        }
    }
}

/// What one arm of a rollout answered, on one node or summed over the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    /// The rollout's id.
    pub rollout: u64,
    /// The arm.
    pub arm: Option<Arm>,
    /// Its version.
    pub version: u64,
    /// Requests answered with predictions.
    pub ok: u64,
    /// Requests answered with an error (of any kind).
    pub errors: u64,
    /// Queries whose label the request gave.
    pub labelled: u64,
    /// Of those, predicted right.
    pub correct: u64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS_MS`]), from arrival to answer.
    pub latency: Vec<u64>,
}

impl ArmFigures {
    /// Adds `other`'s counts (the same arm on another node).
    pub fn add(&mut self, other: &ArmFigures) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.labelled += other.labelled;
        self.correct += other.correct;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// The latency bucket bound below which fraction `q` of the requests fell (ms), if any
    /// request was counted.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= want {
                return LATENCY_BOUNDS_MS.get(i).copied();
            }
        }
        None
    }

    /// Accuracy over the labelled queries, if any.
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }
}

/// The routes of a model with the figures of its running (or last) rollout, summed over the
/// nodes that answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutesStatus {
    /// The routes.
    pub routes: ModelRoutes,
    /// The versions SDFS keeps of the model, oldest first.
    pub versions: Vec<u64>,
    /// One per arm of the rollout shown (the running one, else the last).
    pub figures: Vec<ArmFigures>,
    /// Nodes whose figures are in the sums.
    pub nodes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_and_print_back() {
        for text in ["cnn", "cnn:3", "cnn@production"] {
            assert_eq!(ModelRef::parse(text).unwrap().to_string(), text);
        }
        let r = ModelRef::parse("cnn@canary-2").unwrap();
        assert_eq!(r.pick, Pick::Alias("canary-2".into()));
        for bad in [
            "", "cnn:", "cnn:0", "cnn:x", "cnn@", "c n", "@prod", "cnn@a.b",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad:?}");
        }
        let r = ModelRef::parse("cnn")
            .unwrap()
            .with_version(Some(2))
            .unwrap();
        assert_eq!(r.pick, Pick::Version(2));
        assert!(ModelRef::parse("cnn:2")
            .unwrap()
            .with_version(Some(2))
            .is_ok());
        assert!(ModelRef::parse("cnn:2")
            .unwrap()
            .with_version(Some(3))
            .is_err());
        assert!(ModelRef::parse("cnn@p")
            .unwrap()
            .with_version(Some(3))
            .is_err());
    }

    fn rollout(percent: f64) -> Rollout {
        Rollout {
            id: 1,
            alias: DEFAULT_ALIAS.into(),
            baseline: 1,
            canary: 2,
            percent,
            ended: None,
        }
    }

    #[test]
    fn the_canary_gets_its_share_of_any_run_of_requests() {
        for percent in [0.0, 1.0, 10.0, 33.3, 50.0, 99.0, 100.0] {
            let r = rollout(percent);
            for start in [0u64, 7, 1000] {
                for len in [10u64, 100, 1000] {
                    let canary = (start..start + len)
                        .filter(|n| r.arm(*n) == Arm::Canary)
                        .count() as f64;
                    let want = len as f64 * percent / 100.0;
                    assert!(
                        (canary - want).abs() <= 1.0,
                        "{percent}% of {len}: {canary}"
                    );
                }
            }
        }
    }

    #[test]
    fn figures_add_and_give_quantiles() {
        let mut a = ArmFigures {
            ok: 3,
            labelled: 4,
            correct: 3,
            latency: vec![0, 2, 1],
            ..Default::default()
        };
        a.add(&ArmFigures {
            ok: 1,
            errors: 1,
            latency: vec![0, 0, 0, 2],
            ..Default::default()
        });
        assert_eq!(
            (a.ok, a.errors, a.latency.clone()),
            (4, 1, vec![0, 2, 1, 2])
        );
        assert_eq!(a.latency_ms(0.5), Some(3.0));
        assert_eq!(a.latency_ms(0.99), Some(5.0));
        assert_eq!(a.accuracy(), Some(0.75));
        assert_eq!(ArmFigures::default().latency_ms(0.5), None);
    }

    #[test]
    fn named_versions_are_kept() {
        let mut r = ModelRoutes::default();
        r.aliases.insert("production".into(), 3);
        r.previous.insert("production".into(), 1);
        r.rollout = Some(rollout(10.0));
        assert_eq!(r.named_versions(), [1, 2, 3].into());
        crate::codec::round_trip(r);
    }
}
