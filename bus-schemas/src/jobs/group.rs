//! The workers of a data-parallel training attempt (`idunno train … --workers N`): who they
//! are, in rank order, and the generation that changes each time one is lost or joins.
//!
//! The coordinator (and a member that finds another stalled) changes the group in the job
//! record by compare-and-swap; the members follow the record and regroup at the new
//! generation (see `idunno_dp::exchange`).

use serde::{Deserialize, Serialize};

/// The most lost members a group remembers (the oldest are dropped).
pub const MAX_LOST: usize = 32;

/// A data-parallel attempt's workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Bumped at every change of `members`, from 1.
    pub generation: u32,
    /// The workers in rank order. Rank 0 is also the attempt's `worker`: it stores
    /// checkpoints, publishes progress and ends the job.
    pub members: Vec<GroupMember>,
    /// Workers that left the group, oldest first (at most [`MAX_LOST`]).
    #[serde(default)]
    pub lost: Vec<LostMember>,
}

/// One worker of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The node id.
    pub worker: String,
    /// Its membership generation when it joined (a newer one means its process died).
    #[serde(default)]
    pub generation: Option<u64>,
    /// When its process started, as membership said when it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When it joined the group, milliseconds since the epoch.
    pub joined_ms: u64,
}

/// A worker that left a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostMember {
    /// The node id.
    pub worker: String,
    /// What happened (`n2 was declared failed`, `n3 sent nothing for step 812 in 15 s`).
    pub reason: String,
    /// Whether its process died (counted against `--max-worker-deaths`).
    pub died: bool,
    /// The group generation that no longer had it.
    pub generation: u32,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
    /// Its membership generation and process start when it joined (see [`GroupMember`]).
    #[serde(default)]
    pub member_generation: Option<u64>,
    /// See [`GroupMember::started_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
}

impl Group {
    /// The member ids in rank order.
    pub fn workers(&self) -> Vec<String> {
        self.members.iter().map(|m| m.worker.clone()).collect()
    }

    /// Whether `worker` is a member.
    pub fn has(&self, worker: &str) -> bool {
        self.members.iter().any(|m| m.worker == worker)
    }

    /// Removes `worker` (if a member) as the next generation, remembering why.
    pub fn remove(&mut self, worker: &str, reason: String, died: bool, now_ms: u64) -> bool {
        let Some(i) = self.members.iter().position(|m| m.worker == worker) else {
            return false;
        };
        let gone = self.members.remove(i);
        self.generation += 1;
        self.lost.push(LostMember {
            worker: gone.worker,
            reason,
            died,
            generation: self.generation,
            at_ms: now_ms,
            member_generation: gone.generation,
            started_ms: gone.started_ms,
        });
        if self.lost.len() > MAX_LOST {
            self.lost.remove(0);
        }
        true
    }

    /// Adds `member` last, as the next generation.
    pub fn add(&mut self, member: GroupMember) {
        self.members.push(member);
        self.generation += 1;
    }
}
