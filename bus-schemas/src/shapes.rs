//! Named shapes of an inference job's state whose wire form is positional: a pending batch is
//! `[batch_id, first_query, len]` and the processing-time statistics are `[mean, std, median,
//! p90, p95, p99]` (or `[]`), as every node has written them. Code reads them by name; the
//! wire stays what older nodes read and write (a reader of either version reads the other),
//! and the named map form reads too.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A batch cut and not answered yet: sent again after a coordinator failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PendingBatch {
    /// The batch id.
    pub batch_id: u64,
    /// Its first query.
    pub first_query: u64,
    /// How many queries.
    pub len: u32,
}

impl PendingBatch {
    /// A batch of `len` queries from `first_query`.
    pub fn new(batch_id: u64, first_query: u64, len: u32) -> PendingBatch {
        PendingBatch {
            batch_id,
            first_query,
            len,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PendingForm {
    Positional(u64, u64, u32),
    Named {
        batch_id: u64,
        first_query: u64,
        len: u32,
    },
}

impl Serialize for PendingBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.batch_id, self.first_query, self.len).serialize(s)
    }
}

impl<'de> Deserialize<'de> for PendingBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match PendingForm::deserialize(d)? {
            PendingForm::Positional(b, f, l) => PendingBatch::new(b, f, l),
            PendingForm::Named {
                batch_id,
                first_query,
                len,
            } => PendingBatch::new(batch_id, first_query, len),
        })
    }
}

/// Processing (model) time per batch, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcStats {
    /// The mean.
    pub mean: f64,
    /// The standard deviation.
    pub std: f64,
    /// The median.
    pub median: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl ProcStats {
    /// The figures in their wire order, with their names.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("mean", self.mean),
            ("std", self.std),
            ("median", self.median),
            ("p90", self.p90),
            ("p95", self.p95),
            ("p99", self.p99),
        ]
    }
}

/// `ServeState::proc_ms` on the wire: `[]` for none, the six figures in order for some.
pub mod proc_ms {
    use super::ProcStats;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Positional(Vec<f64>),
        Named(ProcStats),
    }

    /// Writes the figures as an array.
    pub fn serialize<S: Serializer>(v: &Option<ProcStats>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => Vec::<f64>::new().serialize(s),
            Some(p) => p.named().map(|(_, x)| x).serialize(s),
        }
    }

    /// Reads an array (fewer than six figures: none) or a map.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ProcStats>, D::Error> {
        Ok(match Form::deserialize(d)? {
            Form::Named(p) => Some(p),
            Form::Positional(v) if v.len() >= 6 => Some(ProcStats {
                mean: v[0],
                std: v[1],
                median: v[2],
                p90: v[3],
                p95: v[4],
                p99: v[5],
            }),
            Form::Positional(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Holder {
        pending: Vec<PendingBatch>,
        #[serde(with = "proc_ms", default)]
        proc_ms: Option<ProcStats>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Older {
        pending: Vec<(u64, u64, u32)>,
        proc_ms: Vec<f64>,
    }

    #[test]
    fn the_named_shapes_keep_the_positional_wire_both_ways() {
        let stats = ProcStats {
            mean: 1.0,
            std: 2.0,
            median: 3.0,
            p90: 4.0,
            p95: 5.0,
            p99: 6.0,
        };
        let new = Holder {
            pending: vec![PendingBatch::new(3, 192, 64)],
            proc_ms: Some(stats),
        };
        let bytes = rmp_serde::to_vec_named(&new).unwrap();
        let older: Older = rmp_serde::from_slice(&bytes).expect("an older reader reads it");
        assert_eq!(older.pending, [(3, 192, 64)]);
        assert_eq!(older.proc_ms, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let back: Holder = rmp_serde::from_slice(&rmp_serde::to_vec_named(&older).unwrap())
            .expect("a new reader reads the older form");
        assert_eq!(back, new);
        let none = Older {
            pending: vec![],
            proc_ms: vec![],
        };
        let read: Holder = rmp_serde::from_slice(&rmp_serde::to_vec_named(&none).unwrap()).unwrap();
        assert_eq!(read.proc_ms, None, "no batch timed yet");
        let json = serde_json::json!({
            "pending": [{"batch_id": 1, "first_query": 0, "len": 8}],
            "proc_ms": {"mean": 1.0, "std": 2.0, "median": 3.0, "p90": 4.0, "p95": 5.0, "p99": 6.0},
        });
        let named: Holder = serde_json::from_value(json).expect("the named form reads");
        assert_eq!(named.pending, [PendingBatch::new(1, 0, 8)]);
        assert_eq!(named.proc_ms, Some(stats));
    }
}
