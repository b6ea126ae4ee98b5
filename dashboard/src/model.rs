//! What the dashboard shows, computed from the bus's records: pure functions, unit-tested.

pub use bus_client::workers::{workers, Worker};
use bus_schemas::jobs::{JobRecord, JobSpec, JobState};
use bus_schemas::membership::{MemberEventKind, MemberRecord, MemberState, ViewSnapshot};
use bus_schemas::sdfs::{FileInfo, VersionInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One running inference job at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSample {
    /// The job.
    pub id: String,
    /// Its model.
    pub model: String,
    /// Queries per second over the last 10 s.
    pub rate: f64,
    /// Queries answered.
    pub done: u64,
    /// Batch model time percentiles, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Batches in flight.
    pub pending: usize,
}

/// Members by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemberCounts {
    /// Alive.
    pub alive: usize,
    /// Suspected.
    pub suspect: usize,
    /// Failed.
    pub failed: usize,
    /// Left.
    pub left: usize,
}

/// The cluster's figures at one moment (one point of the Stats charts).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// Sum of the running jobs' query rates.
    pub throughput: f64,
    /// Each running inference job.
    pub jobs: Vec<JobSample>,
    /// Members by state.
    pub members: MemberCounts,
    /// Distinct failures this node has seen since it started.
    pub failures: u64,
}

/// Membership events this node has seen, by kind, and the distinct failures among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Events by kind (`join`, `alive`, `suspect`, `fail`, `leave`).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Distinct (node, generation) failures.
    pub failures: u64,
}

impl EventCounts {
    /// Counts one event.
    pub fn count(&mut self, kind: MemberEventKind) {
        let name = match kind {
            MemberEventKind::Join => "join",
            MemberEventKind::Alive => "alive",
            MemberEventKind::Suspect => "suspect",
            MemberEventKind::Fail => "fail",
            MemberEventKind::Leave => "leave",
        };
        *self.by_kind.entry(name).or_default() += 1;
    }
}

/// Members of `view` by state.
pub fn member_counts(view: &ViewSnapshot) -> MemberCounts {
    let mut c = MemberCounts::default();
    for m in &view.members {
        match m.state {
            MemberState::Alive => c.alive += 1,
            MemberState::Suspect => c.suspect += 1,
            MemberState::Failed => c.failed += 1,
            MemberState::Left => c.left += 1,
        }
    }
    c
}

/// The running inference jobs' figures.
pub fn job_samples(jobs: &[JobRecord]) -> Vec<JobSample> {
    jobs.iter()
        .filter(|j| j.state == JobState::Running)
        .filter_map(|j| {
            let s = j.serve.as_ref()?;
            let p = s.proc_ms.unwrap_or_default();
            Some(JobSample {
                id: j.id.clone(),
                model: j.spec.model().to_string(),
                rate: s.rate,
                done: s.done,
                p50_ms: p.median,
                p90_ms: p.p90,
                p99_ms: p.p99,
                pending: s.pending.len(),
            })
        })
        .collect()
}

/// The sample of this moment.
pub fn sample(at_ms: u64, view: &ViewSnapshot, jobs: &[JobRecord], failures: u64) -> Sample {
    let jobs = job_samples(jobs);
    Sample {
        at_ms,
        throughput: jobs.iter().map(|j| j.rate).sum(),
        jobs,
        members: member_counts(view),
        failures,
    }
}

/// What the event stream sends every second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// The node answering.
    pub node: String,
    /// The coordinating node.
    pub coordinator: Option<String>,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// The version of the answering node's membership view the workers' states come from
    /// (`member_state` events with a higher version are newer).
    pub view_version: u64,
    /// Every member with its work.
    pub workers: Vec<Worker>,
    /// Every job record.
    pub jobs: Vec<JobRecord>,
    /// The statistics of this moment.
    pub sample: Sample,
}

/// An SDFS file with its replication health, as on the Files page.
#[derive(Debug, Clone, Serialize)]
pub struct FileRow {
    /// The SDFS name.
    pub name: String,
    /// Kept versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Replicas the newest version should have.
    pub wanted: usize,
    /// The newest version's replicas that are alive.
    pub live_replicas: Vec<String>,
    /// Fewer live replicas than wanted.
    pub under_replicated: bool,
}

/// `files` with their replication health: a version wants its own replication (or the
/// cluster's `replication`), at most the `live` nodes.
pub fn file_rows(
    files: Vec<FileInfo>,
    live: &BTreeSet<String>,
    replication: usize,
) -> Vec<FileRow> {
    files
        .into_iter()
        .map(|f| {
            let newest = f.versions.last();
            let wanted = newest
                .and_then(|v| v.replication)
                .map_or(replication, |r| r as usize)
                .min(live.len());
            let live_replicas: Vec<String> = newest
                .map(|v| {
                    v.replicas
                        .iter()
                        .filter(|r| live.contains(*r))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            FileRow {
                under_replicated: live_replicas.len() < wanted,
                name: f.name,
                versions: f.versions,
                wanted,
                live_replicas,
            }
        })
        .collect()
}

/// The ids of the live (alive or suspected) members among `members`.
pub fn live_members<'a>(members: impl IntoIterator<Item = &'a MemberRecord>) -> BTreeSet<String> {
    members
        .into_iter()
        .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
        .map(|m| m.id.clone())
        .collect()
}

/// Whether a job is an inference job.
pub fn is_serve(job: &JobRecord) -> bool {
    matches!(job.spec, JobSpec::Serve(_))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
