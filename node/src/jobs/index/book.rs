//! The job index's book (sans-IO): every job record the bucket holds, in listing order (live
//! before ended, each newest submitted first) and in retention order (ended jobs by when they
//! ended), and the keys purged lately, whose purge markers are removed after a while.

use crate::kv_index::Applied;
use bus_schemas::jobs::{JobRecord, JobsFilter};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A job's place in a listing; its text form is the cursor of the page it ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    ended: bool,
    newest: Reverse<u64>,
    id: String,
}

impl Pos {
    fn of(job: &JobRecord) -> Pos {
        Pos {
            ended: job.state.is_final(),
            newest: Reverse(job.submitted_ms),
            id: job.id.clone(),
        }
    }

    /// The cursor: `<0|1>.<submitted ms>.<id>` (opaque to clients).
    fn cursor(&self) -> String {
        format!("{}.{}.{}", u8::from(self.ended), self.newest.0, self.id)
    }

    fn parse(cursor: &str) -> Option<Pos> {
        let mut parts = cursor.splitn(3, '.');
        let ended = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let submitted = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_string();
        Some(Pos {
            ended,
            newest: Reverse(submitted),
            id,
        })
    }

    /// The first place of the jobs `which` names.
    fn start(which: JobsFilter) -> Pos {
        Pos {
            ended: which == JobsFilter::Ended,
            newest: Reverse(u64::MAX),
            id: String::new(),
        }
    }
}

/// A cursor that is not one this index made.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a cursor of a job list (use the `next` of the page before)")]
pub struct BadCursor(pub String);

/// Every job record, ordered twice.
#[derive(Debug, Default)]
pub struct Book {
    records: HashMap<String, (JobRecord, u64)>,
    order: BTreeSet<Pos>,
    /// Ended jobs by (when they ended, id), oldest first.
    by_end: BTreeSet<(u64, String)>,
    /// Keys purged, with when their marker was written (ms since the epoch).
    markers: BTreeMap<String, u64>,
}

/// Whether a key names a job (other keys of the bucket are the index's own, see
/// [`super::TICK_KEY`]).
fn is_job_key(key: &str) -> bool {
    !key.starts_with('_')
}

impl Book {
    /// Takes a record written at `revision`.
    pub fn put(&mut self, key: &str, record: Result<JobRecord, String>, revision: u64) -> Applied {
        if !is_job_key(key) {
            return Applied::Same;
        }
        let job = match record {
            Ok(job) if job.id == key => job,
            Ok(job) => {
                tracing::warn!(%key, id = %job.id, "a job record under another job's key, ignored");
                return Applied::Corrupt;
            }
            Err(e) => {
                tracing::warn!(%key, "corrupt job record, ignored: {e}");
                return Applied::Corrupt;
            }
        };
        if self.records.get(key).is_some_and(|(_, r)| *r >= revision) {
            return Applied::Same;
        }
        self.forget(key);
        self.markers.remove(key);
        self.order.insert(Pos::of(&job));
        if job.state.is_final() {
            self.by_end.insert((ended_ms(&job), job.id.clone()));
        }
        self.records.insert(key.to_string(), (job, revision));
        Applied::Changed
    }

    /// Takes a delete or purge of `key`, its marker written at `at_ms` (the watch delivers
    /// changes in revision order: a key gone is gone until put again).
    pub fn gone(&mut self, key: &str, at_ms: u64) -> Applied {
        if !is_job_key(key) {
            return Applied::Same;
        }
        self.markers.insert(key.to_string(), at_ms);
        if self.forget(key) {
            Applied::Changed
        } else {
            Applied::Same
        }
    }

    /// Drops `key`'s record from every order; whether it was there.
    fn forget(&mut self, key: &str) -> bool {
        let Some((old, _)) = self.records.remove(key) else {
            return false;
        };
        self.order.remove(&Pos::of(&old));
        self.by_end.remove(&(ended_ms(&old), old.id));
        true
    }

    /// At most `limit` jobs of `which` after `after`, and the cursor of the next page.
    pub fn page(
        &self,
        which: JobsFilter,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<JobRecord>, Option<String>), BadCursor> {
        let from = match after {
            Some(c) => Pos::parse(c).ok_or_else(|| BadCursor(c.to_string()))?,
            None => Pos::start(which),
        };
        let mut jobs = Vec::new();
        let mut last = None;
        let range = self
            .order
            .range((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded));
        for pos in range.take_while(|p| which.admits(p.ended)) {
            if jobs.len() == limit {
                return Ok((jobs, last.map(Pos::cursor)));
            }
            if let Some((job, _)) = self.records.get(&pos.id) {
                jobs.push(job.clone());
                last = Some(pos);
            }
        }
        Ok((jobs, None))
    }

    /// Every job that has not ended, by id.
    pub fn live(&self) -> BTreeMap<String, JobRecord> {
        (self.order.iter())
            .take_while(|p| !p.ended)
            .filter_map(|p| self.records.get(&p.id))
            .map(|(job, _)| (job.id.clone(), job.clone()))
            .collect()
    }

    /// The `n` jobs that ended last, newest first.
    pub fn recent(&self, n: usize) -> Vec<JobRecord> {
        (self.by_end.iter().rev().take(n))
            .filter_map(|(_, id)| self.records.get(id))
            .map(|(job, _)| job.clone())
            .collect()
    }

    /// How many jobs have ended.
    pub fn ended(&self) -> usize {
        self.by_end.len()
    }

    /// The oldest ended jobs beyond the newest `keep`, at most `most` of them, with the
    /// revision each was read at.
    pub fn beyond(&self, keep: usize, most: usize) -> Vec<(String, u64)> {
        let over = self.by_end.len().saturating_sub(keep).min(most);
        (self.by_end.iter().take(over))
            .filter_map(|(_, id)| self.records.get(id))
            .map(|(job, revision)| (job.id.clone(), *revision))
            .collect()
    }

    /// Keys whose purge marker was written before `before_ms`, at most `most`.
    pub fn old_markers(&self, before_ms: u64, most: usize) -> Vec<String> {
        (self.markers.iter())
            .filter(|(_, at)| **at < before_ms)
            .take(most)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets these keys' markers (removed from the bucket).
    pub fn forget_keys(&mut self, keys: &[String]) {
        for key in keys {
            self.markers.remove(key);
        }
    }

    /// Forgets the markers written before `before_ms` (removed from the bucket by then, or
    /// to be found again by the next load): what the book keeps follows the jobs kept.
    pub fn forget_markers(&mut self, before_ms: u64) {
        self.markers.retain(|_, at| *at >= before_ms);
    }
}

/// When a job ended (its submission for a record that does not say).
fn ended_ms(job: &JobRecord) -> u64 {
    job.finished_ms.unwrap_or(job.submitted_ms)
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
