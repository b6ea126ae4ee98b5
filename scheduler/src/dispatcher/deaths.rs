//! Batches whose workers die. A batch in flight on a worker that stops answering (suspected,
//! probed without an answer, or past its deadline) is sent again at once, and the loss is kept
//! until membership says what happened to the worker: declared failed, or seen again with a newer
//! generation of a new process (it restarted), is a death (the same process seen again rejoined
//! after a false failure: not a death), recorded in the job record against the batch while it
//! is still pending. When one batch has killed `--max-worker-deaths` different workers the job
//! fails, rather than the batch walking through (and killing) the whole cluster. A batch that
//! was never delivered (no responders) or that a worker answered, even with an error, is not a
//! death; a loss that membership does not confirm within [`CONFIRM_WITHIN`] is forgotten.

use crate::attempts::died_reason;
use crate::batches::Batch;
use bus_schemas::membership::{MemberRecord, MemberState};
use bus_schemas::serve::{BatchDeaths, ServeState};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Losses kept per job while they wait for membership; beyond this the oldest is forgotten.
pub const MAX_UNCONFIRMED: usize = 256;
/// A batch lost while a worker held it.
#[derive(Debug, Clone)]
pub struct Lost {
    /// The batch.
    pub batch: Batch,
    /// The worker that held it.
    pub worker: String,
    /// The worker's generation when the batch was sent.
    pub generation: u64,
    /// When the worker's process started, as membership said when the batch was sent.
    pub started: Option<u64>,
    /// When it was lost.
    pub at: Instant,
    /// How it was lost ("request timed out", "stopped answering").
    pub why: String,
}

/// A member's state, newest generation and process start in the latest view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its state.
    pub state: MemberState,
    /// Its newest generation.
    pub generation: u64,
    /// When its process started (milliseconds since the epoch), if known.
    pub started: Option<u64>,
}

/// Each member as the latest view has it.
pub type Members = BTreeMap<String, Seen>;

/// Builds [`Members`] from a view.
pub fn members(view: &[MemberRecord]) -> Members {
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
pub fn keep(queue: &mut VecDeque<Lost>, lost: Lost) {
    while queue.len() >= MAX_UNCONFIRMED {
        queue.pop_front();
    }
    queue.push_back(lost);
}

/// How long a loss waits for membership to confirm (or not) that its worker died.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(120);

/// Longest a lost batch that has already killed a worker waits for membership's verdict on
/// the next worker before it is sent again.
pub const HOLD: Duration = Duration::from_secs(10);

/// Whether the worker that lost `lost` is seen again as the same process with a newer
/// generation: it was declared failed falsely and rejoined.
fn rejoined(members: &Members, lost: &Lost) -> bool {
    members.get(&lost.worker).is_some_and(|s| {
        s.generation > lost.generation && lost.started.is_some() && s.started == lost.started
    })
}

/// What membership says happened to the worker that held a batch, if it died.
pub fn death(members: &Members, lost: &Lost) -> Option<String> {
    if rejoined(members, lost) {
        return None;
    }
    let seen = members.get(&lost.worker)?;
    let what = match seen.state {
        _ if seen.generation > lost.generation => "started again",
        MemberState::Failed => "was declared failed",
        _ => return None,
    };
    Some(format!(
        "{} {what} while it held batch {} ({})",
        lost.worker, lost.batch.batch_id, lost.why
    ))
}

/// Takes the losses that membership confirms as deaths (with what it saw), and forgets those
/// older than [`CONFIRM_WITHIN`] or whose worker left on purpose.
pub fn confirm(queue: &mut VecDeque<Lost>, members: &Members, now: Instant) -> Vec<(Lost, String)> {
    let mut deaths = Vec::new();
    queue.retain(|l| match death(members, l) {
        Some(what) => {
            deaths.push((l.clone(), what));
            false
        }
        None => {
            let left = members
                .get(&l.worker)
                .is_some_and(|s| s.state == MemberState::Left);
            !left && !rejoined(members, l) && now.duration_since(l.at) < CONFIRM_WITHIN
        }
    });
    deaths
}

/// What recording a death did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The batch was counted meanwhile, or this worker's death was already recorded.
    Ignored,
    /// Recorded; the batch is sent again.
    Recorded,
    /// The batch reached the limit: the job fails with this reason.
    Fatal(String),
}

/// Records in `s` that `worker` died holding `batch` (while the batch is pending).
pub fn add(s: &mut ServeState, batch: Batch, worker: &str, what: &str, max: u32) -> Outcome {
    if !s.pending.iter().any(|b| b.batch_id == batch.batch_id) {
        return Outcome::Ignored;
    }
    let pos = match s.deaths.iter().position(|d| d.batch_id == batch.batch_id) {
        Some(pos) => pos,
        None => {
            s.deaths.push(BatchDeaths {
                batch_id: batch.batch_id,
                ..Default::default()
            });
            s.deaths.len() - 1
        }
    };
    let d = &mut s.deaths[pos];
    if d.workers.iter().any(|w| w == worker) {
        return Outcome::Ignored;
    }
    d.workers.push(worker.into());
    d.last = what.into();
    if d.workers.len() < max as usize {
        return Outcome::Recorded;
    }
    let end = batch.first_query.saturating_add(u64::from(batch.len));
    let holding = format!(
        " holding batch {} (queries {} to {})",
        batch.batch_id,
        batch.first_query,
        end.saturating_sub(1)
    );
    Outcome::Fatal(died_reason(&d.workers, &holding, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(worker: &str, generation: u64) -> Lost {
        Lost {
            batch: Batch::new(4, 80, 20),
            worker: worker.into(),
            generation,
            started: Some(1),
            at: Instant::now(),
            why: "request timed out".into(),
        }
    }

    fn members(list: &[(&str, MemberState, u64)]) -> Members {
        let seen = |state, generation| Seen {
            state,
            generation,
            started: Some(generation),
        };
        list.iter()
            .map(|(id, s, g)| (id.to_string(), seen(*s, *g)))
            .collect()
    }

    #[test]
    fn the_same_process_rejoined_after_a_false_failure_is_no_death() {
        // n2's generation 9 is of the process started at 9.
        let m = members(&[("n2", MemberState::Alive, 9)]);
        assert!(death(&m, &lost("n2", 5)).is_some_and(|w| w.contains("n2 started again")));
        let was = Lost {
            started: Some(9),
            ..lost("n2", 5)
        };
        let mut q: VecDeque<Lost> = [was.clone()].into();
        assert_eq!(death(&m, &was), None);
        assert!(confirm(&mut q, &m, Instant::now()).is_empty());
        assert!(q.is_empty(), "forgotten: the worker is back");
    }

    #[test]
    fn only_a_failed_or_restarted_worker_is_a_death() {
        let m = members(&[
            ("n1", MemberState::Failed, 5),
            ("n2", MemberState::Alive, 9),
            ("n3", MemberState::Alive, 5),
            ("n4", MemberState::Left, 5),
            ("n5", MemberState::Suspect, 5),
        ]);
        assert!(death(&m, &lost("n1", 5)).is_some_and(|w| w.contains("n1 was declared failed")));
        assert!(death(&m, &lost("n2", 5)).is_some_and(|w| w.contains("n2 started again")));
        for alive in ["n3", "n4", "n5", "n6"] {
            assert_eq!(death(&m, &lost(alive, 5)), None, "{alive}");
        }
    }

    #[test]
    fn confirmation_takes_deaths_and_forgets_the_left_and_the_old() {
        let m = members(&[
            ("n1", MemberState::Failed, 5),
            ("n3", MemberState::Alive, 5),
            ("n4", MemberState::Left, 5),
        ]);
        let mut q: VecDeque<Lost> = [lost("n1", 5), lost("n3", 5), lost("n4", 5)].into();
        let now = Instant::now();
        let deaths = confirm(&mut q, &m, now);
        assert_eq!(deaths.len(), 1);
        assert_eq!(deaths[0].0.worker, "n1");
        assert_eq!(q.len(), 1, "n3 still waits");
        assert!(confirm(&mut q, &m, now + CONFIRM_WITHIN).is_empty());
        assert!(q.is_empty(), "forgotten after the window");
    }

    #[test]
    fn unconfirmed_losses_are_bounded() {
        let mut q = VecDeque::new();
        for i in 0..MAX_UNCONFIRMED as u64 + 10 {
            keep(&mut q, lost("n1", i));
        }
        assert_eq!(q.len(), MAX_UNCONFIRMED);
        assert_eq!(q.front().map(|l| l.generation), Some(10));
    }

    #[test]
    fn a_batch_fails_the_job_after_the_limit_of_different_workers() {
        let mut s = ServeState {
            pending: vec![Batch::new(4, 80, 20)],
            ..Default::default()
        };
        let b = Batch::new(4, 80, 20);
        assert_eq!(add(&mut s, b, "n2", "n2 died", 3), Outcome::Recorded);
        assert_eq!(add(&mut s, b, "n2", "n2 died", 3), Outcome::Ignored);
        assert_eq!(add(&mut s, b, "n4", "n4 died", 3), Outcome::Recorded);
        let Outcome::Fatal(reason) = add(&mut s, b, "n1", "n1 was declared failed", 3) else {
            panic!("not fatal: {s:?}");
        };
        assert_eq!(
            reason,
            "the job's worker died 3 times holding batch 4 (queries 80 to 99): n2, n4, n1 \
             (last error: n1 was declared failed)"
        );
        // A batch counted meanwhile is not charged.
        assert_eq!(
            add(&mut s, Batch::new(5, 100, 20), "n3", "x", 3),
            Outcome::Ignored
        );
    }
}
