//! What the dispatcher keeps about lost batches and about members while membership has not
//! settled what happened to a lost batch's worker (see [`super::deaths`]).

use super::*;

/// Losses kept per job while they wait for membership; beyond this the oldest is forgotten.
pub(super) const MAX_UNCONFIRMED: usize = 256;
/// A batch lost while a worker held it.
#[derive(Debug, Clone)]
pub(super) struct Lost {
    pub(super) batch: Batch,
    pub(super) worker: String,
    /// The worker's generation when the batch was sent.
    pub(super) generation: u64,
    /// When the worker's process started, as membership said when the batch was sent.
    pub(super) started: Option<u64>,
    pub(super) at: Instant,
    /// How it was lost ("request timed out", "stopped answering").
    pub(super) why: String,
}

/// A member's state, newest generation and process start in the latest view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) state: MemberState,
    pub(super) generation: u64,
    pub(super) started: Option<u64>,
}

/// Each member as the latest view has it.
pub(super) type Members = BTreeMap<String, Seen>;

/// Builds [`Members`] from a view.
pub(super) fn members(view: &[bus_schemas::membership::MemberRecord]) -> Members {
    let mut out = Members::new();
    for m in view {
        let seen = Seen {
            state: m.state,
            generation: m.generation,
            started: m.started_ms,
        };
        let e = out.entry(m.id.clone()).or_insert(seen);
        if m.generation >= e.generation {
            *e = seen;
        }
    }
    out
}

/// Keeps `lost` for confirmation, forgetting the oldest beyond [`MAX_UNCONFIRMED`].
pub(super) fn keep(queue: &mut VecDeque<Lost>, lost: Lost) {
    while queue.len() >= MAX_UNCONFIRMED {
        queue.pop_front();
    }
    queue.push_back(lost);
}
