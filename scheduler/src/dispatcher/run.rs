//! What the dispatcher keeps of each running job, each batch in flight and each worker's pace.

use super::deaths::Lost;
use super::index::{JobView, ServeView};
use super::{RATE_WINDOW, SHORT_BATCH_MS};
use crate::batches::{Answered, Batch};
use bus_schemas::jobs::ServeSpec;
use bus_schemas::serve::ServeTarget;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Processing times kept per job for its statistics and deadlines.
const PROC_MS_KEPT: usize = 2000;

/// How long a batch the record holds pending may be held nowhere here before it is sent again
/// (a record read just before a count still names the counted batch for a moment).
pub(super) const STRAY_AFTER: Duration = Duration::from_secs(2);

/// How long the batches this coordinator counted are remembered: a record read while the
/// records' watch lags (a server restart) may still name them pending; they are no strays.
const COUNTED_KEPT: Duration = Duration::from_secs(60);

/// A batch sent to a worker and not answered yet.
pub(super) struct Flight {
    pub(super) job: String,
    pub(super) worker: String,
    pub(super) batch: Batch,
    /// The worker's generation when the batch was sent.
    pub(super) generation: u64,
    /// When the worker's process started, as membership said then.
    pub(super) started: Option<u64>,
}

/// A worker's pace: how many batches it runs at once, and how long they take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pace {
    /// Its inference lanes.
    pub(super) lanes: usize,
    /// Its batches' model time in milliseconds, smoothed (none yet: 0).
    pub(super) batch_ms: f64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            lanes: 1,
            batch_ms: 0.0,
        }
    }
}

impl Pace {
    /// Batches in flight the worker may hold: one more than it runs at once (so the next is
    /// there when one ends), and one more again while its batches are short (under
    /// [`SHORT_BATCH_MS`], or not measured yet).
    pub(super) fn slots(&self) -> usize {
        let short = self.batch_ms < SHORT_BATCH_MS;
        self.lanes.max(1) + 1 + usize::from(short)
    }

    /// Takes the model time of one more answered batch.
    pub(super) fn answered(&mut self, infer_ms: f64) {
        if !infer_ms.is_finite() || infer_ms < 0.0 {
            return;
        }
        self.batch_ms = if self.batch_ms > 0.0 {
            0.8 * self.batch_ms + 0.2 * infer_ms
        } else {
            infer_ms
        };
    }
}

/// What the dispatcher knows of one running inference job.
pub(super) struct Run {
    pub(super) spec: ServeSpec,
    pub(super) target: ServeTarget,
    /// The batch size batches are cut at now (it may change while the job runs).
    pub(super) batch: u32,
    pub(super) joined: BTreeSet<String>,
    /// The pool's version when `joined` was last checked against it.
    pub(super) pool_seen: u64,
    /// The pool's version when workers were last asked to join, and when a refusal is next
    /// due for a retry: no look for workers to ask until one of them changes.
    pub(super) joins_seen: u64,
    pub(super) joins_due: Option<Instant>,
    /// Workers asked to join and not answered yet, with their generation when asked: a join
    /// to a worker that has since died or restarted is forgotten (its answer, if it ever
    /// comes, is ignored), so that the new process is asked at once.
    pub(super) joining: BTreeMap<String, u64>,
    /// Workers that refused to join, and when: asked again only after a while.
    pub(super) refused: BTreeMap<String, Instant>,
    /// Those whose last refusal was lasting (not trouble that may pass): when every worker
    /// of the pool is among them and none serves, the job is hopeless.
    pub(super) lasting: BTreeSet<String>,
    /// The last reason a worker gave for not joining.
    pub(super) refusal: Option<String>,
    pub(super) in_flight: usize,
    /// Batches recorded as pending and waiting to be sent (again, or cut ahead).
    pub(super) resend: VecDeque<Batch>,
    /// A cut asked of the shell and not answered yet.
    pub(super) cutting: bool,
    /// A cut failed (the record could not be written): none until the next tick.
    pub(super) cut_blocked: bool,
    /// Batches lost while a worker held them, waiting for membership to say if it died.
    pub(super) lost: VecDeque<Lost>,
    /// Batches with a worker death recorded in the job record.
    pub(super) dead: BTreeSet<u64>,
    /// Lost batches with a death recorded, held until membership says whether the worker
    /// that lost them now died too (at most `deaths::HOLD`).
    pub(super) held: VecDeque<(Batch, Instant)>,
    /// Answered batches not yet counted in the record (counted in groups).
    pub(super) uncounted: Vec<Answered>,
    /// Batches the record holds pending that nothing here held at the last pass, and since
    /// when ([`Run::adopt_strays`]).
    pub(super) strays: BTreeMap<u64, Instant>,
    /// Batches counted in the last [`COUNTED_KEPT`], and when.
    counted: VecDeque<(u64, Instant)>,
    pub(super) exhausted: bool,
    /// Queries sent, divided by the weight, since the job started competing (fair queueing).
    pub(super) vq: f64,
    /// Answered batches in the rate window: when, queries, processing milliseconds.
    pub(super) answered: VecDeque<(Instant, u32, f64)>,
    pub(super) proc_ms: VecDeque<f64>,
    /// The median of `proc_ms`, refreshed every tick (not sorted per batch).
    pub(super) median_ms: f64,
    pub(super) saved: Instant,
    /// When the job was last found complete and its finishing started.
    pub(super) finishing: Option<Instant>,
}

impl Run {
    /// Takes up a running inference job from its record: its recorded batches are sent again
    /// first.
    pub(super) fn new(job: &JobView, spec: &ServeSpec, s: &ServeView, now: Instant) -> Run {
        Run {
            target: ServeTarget {
                job_id: job.id.clone(),
                model_file: ServeTarget::model_file(&spec.model),
                model_version: s.model_version,
                dataset: spec.dataset.clone(),
                split: spec.split.clone(),
            },
            spec: spec.clone(),
            batch: s.batch,
            joined: BTreeSet::new(),
            pool_seen: u64::MAX,
            joins_seen: u64::MAX,
            joins_due: None,
            joining: BTreeMap::new(),
            refused: BTreeMap::new(),
            lasting: BTreeSet::new(),
            refusal: None,
            in_flight: 0,
            resend: s.pending.iter().copied().collect(),
            cutting: false,
            cut_blocked: false,
            lost: VecDeque::new(),
            dead: BTreeSet::new(),
            held: VecDeque::new(),
            uncounted: Vec::new(),
            strays: BTreeMap::new(),
            counted: VecDeque::new(),
            exhausted: false,
            answered: VecDeque::new(),
            vq: 0.0,
            proc_ms: VecDeque::new(),
            median_ms: 0.0,
            saved: now,
            finishing: None,
        }
    }

    /// The job's weight (at least 1).
    pub(super) fn weight(&self) -> f64 {
        f64::from(self.spec.weight.max(1))
    }

    /// Queues a lost batch to be sent again: at once, unless a worker already died holding it
    /// or an earlier loss of it still waits for membership's verdict, in which case it waits
    /// (see [`Run::release`]), so that a batch that kills its workers does not walk
    /// through the cluster faster than membership confirms deaths (a probe finds a dead worker
    /// much sooner than membership declares it).
    pub(super) fn send_again(&mut self, batch: Batch, now: Instant) {
        self.refund(batch);
        let losses = self
            .lost
            .iter()
            .filter(|l| l.batch.batch_id == batch.batch_id)
            .count();
        if self.dead.contains(&batch.batch_id) || losses > 1 {
            self.held.push_back((batch, now));
        } else {
            self.resend.push_front(batch);
        }
    }

    /// Gives back the virtual queries of a batch that is to be sent again: a batch lost with
    /// its worker, failed, or answered but not counted costs its job one turn, not two (the
    /// simulation showed jobs with long batches, which lose more with a dying worker, served
    /// 5% below their share when charged twice).
    pub(super) fn refund(&mut self, batch: Batch) {
        self.vq -= f64::from(batch.len) / self.weight();
    }

    /// Puts back a batch whose answer cannot be used, to be sent again.
    pub(super) fn retry(&mut self, batch: Batch) {
        self.refund(batch);
        self.resend.push_back(batch);
    }

    /// Sends again the batches the record holds pending that nothing here has held for
    /// [`STRAY_AFTER`]: not in flight (`flying`), waiting, lost, held, answered or lately
    /// counted. A
    /// coordinator that lost its lease while writing a cut can land it after the next one read
    /// the record; without this its batches would stay pending, and the job unfinished,
    /// forever. A batch is counted once whatever happens, so a false stray costs one more run
    /// of it, never a double count. Returns how many were adopted.
    pub(super) fn adopt_strays(
        &mut self,
        pending: &[Batch],
        flying: &BTreeSet<u64>,
        now: Instant,
    ) -> usize {
        while let Some((_, at)) = self.counted.front() {
            if now.saturating_duration_since(*at) < COUNTED_KEPT {
                break;
            }
            self.counted.pop_front();
        }
        let mut known: BTreeSet<u64> = flying.clone();
        known.extend(self.counted.iter().map(|(id, _)| *id));
        known.extend(self.resend.iter().map(|b| b.batch_id));
        known.extend(self.lost.iter().map(|l| l.batch.batch_id));
        known.extend(self.held.iter().map(|(b, _)| b.batch_id));
        known.extend(self.uncounted.iter().map(|a| a.batch.batch_id));
        let strays: Vec<&Batch> = (pending.iter())
            .filter(|b| !known.contains(&b.batch_id))
            .collect();
        let was = std::mem::take(&mut self.strays);
        let mut adopted = 0;
        for b in strays {
            let since = was.get(&b.batch_id).copied().unwrap_or(now);
            if now.saturating_duration_since(since) >= STRAY_AFTER {
                self.resend.push_back(*b);
                adopted += 1;
            } else {
                self.strays.insert(b.batch_id, since);
            }
        }
        adopted
    }

    /// Remembers batches whose count was written (see [`COUNTED_KEPT`]).
    pub(super) fn counted_now(&mut self, answered: &[Answered], now: Instant) {
        let ids = answered.iter().map(|a| (a.batch.batch_id, now));
        self.counted.extend(ids);
    }

    /// Stops sending to `worker` (it does not serve the job, or failed a batch); it is asked
    /// to join again at the next pass.
    pub(super) fn drop_worker(&mut self, worker: &str) {
        self.joined.remove(worker);
        self.joins_seen = u64::MAX;
    }

    /// Moves the held batches whose loss membership has settled (or that waited
    /// [`super::deaths::HOLD`]) back to the batches to send.
    pub(super) fn release(&mut self, now: Instant) {
        let (lost, resend) = (&self.lost, &mut self.resend);
        self.held.retain(|(b, since)| {
            let waiting = lost.iter().any(|l| l.batch.batch_id == b.batch_id);
            let keep = waiting && now.saturating_duration_since(*since) < super::deaths::HOLD;
            if !keep {
                resend.push_back(*b);
            }
            keep
        });
    }

    /// Whether batch `id` may kill its worker: one holding it died or was lost.
    pub(super) fn suspect(&self, id: u64) -> bool {
        self.dead.contains(&id) || self.lost.iter().any(|l| l.batch.batch_id == id)
    }

    /// Takes an answered batch's queries and model time.
    pub(super) fn took(&mut self, now: Instant, queries: u32, infer_ms: f64) {
        self.answered.push_back((now, queries, infer_ms));
        self.proc_ms.push_back(infer_ms);
        if self.proc_ms.len() > PROC_MS_KEPT {
            self.proc_ms.pop_front();
        }
    }

    fn expire(&mut self, now: Instant) {
        let old = |t: &Instant| now.saturating_duration_since(*t) > RATE_WINDOW;
        while self.answered.front().is_some_and(|(t, _, _)| old(t)) {
            self.answered.pop_front();
        }
    }

    /// Queries per second over the last [`RATE_WINDOW`].
    pub(super) fn rate(&mut self, now: Instant) -> f64 {
        self.expire(now);
        let q: u64 = self.answered.iter().map(|(_, n, _)| u64::from(*n)).sum();
        q as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// Worker milliseconds per query over the last [`RATE_WINDOW`], once measured.
    pub(super) fn cost(&mut self, now: Instant) -> Option<f64> {
        self.expire(now);
        let q: u64 = self.answered.iter().map(|(_, n, _)| u64::from(*n)).sum();
        let ms: f64 = self.answered.iter().map(|(_, _, ms)| ms).sum();
        (q > 0).then(|| ms / q as f64)
    }

    /// Whether the job's finishing should start (again): it is complete, and not finishing
    /// since less than `refinish`.
    pub(super) fn finish_due(&self, now: Instant, refinish: Duration) -> bool {
        self.finishing
            .is_none_or(|t| now.saturating_duration_since(t) > refinish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_schemas::jobs::JobState;

    fn run_of(pending: &[Batch], now: Instant) -> Run {
        let spec = ServeSpec {
            model: "m".into(),
            model_version: Some(1),
            dataset: "d".into(),
            split: "test".into(),
            batch: 16,
            passes: None,
            weight: 1,
        };
        let s = ServeView {
            model_version: 1,
            batch: 16,
            next_query: 16 * pending.len() as u64,
            total: Some(1000),
            done: 0,
            pending: pending.to_vec(),
            deaths: Vec::new(),
            workers: 0,
        };
        let job = JobView {
            id: "j".into(),
            state: JobState::Running,
            spec: Some(spec.clone()),
            serve: Some(s.clone()),
            holds: None,
        };
        Run::new(&job, &spec, &s, now)
    }

    #[test]
    fn strays_are_sent_again_after_a_while_and_counted_batches_are_no_strays() {
        let t0 = Instant::now();
        let b = |id| Batch::new(id, id * 16, 16);
        let mut run = run_of(&[b(0)], t0);
        run.resend.clear(); // sent, answered, counted: the core holds it nowhere now
        let answered = |id| Answered {
            batch: b(id),
            worker: "w".into(),
            stream_seq: id,
            queries: 16,
            correct: None,
        };
        run.counted_now(&[answered(0)], t0);
        // A lagging record still names batch 0 and names 1, which nobody here cut.
        let record = [b(0), b(1)];
        let none = BTreeSet::new();
        assert_eq!(run.adopt_strays(&record, &none, t0), 0);
        let later = t0 + STRAY_AFTER;
        assert_eq!(run.adopt_strays(&record, &none, later), 1);
        assert_eq!(
            run.resend.iter().map(|b| b.batch_id).collect::<Vec<_>>(),
            [1]
        );
        // Batch 1 is now waiting to be sent: no stray any more; batch 0 stays counted.
        assert_eq!(run.adopt_strays(&record, &none, later + STRAY_AFTER), 0);
        // A batch in flight is no stray either.
        run.resend.clear();
        let flying = BTreeSet::from([1]);
        assert_eq!(
            run.adopt_strays(&record, &flying, later + 2 * STRAY_AFTER),
            0
        );
    }

    #[test]
    fn a_worker_holds_one_batch_more_than_its_lanes_and_another_while_batches_are_short() {
        let pace = |lanes, batch_ms| Pace { lanes, batch_ms };
        assert_eq!(Pace::default().slots(), 3, "not measured yet: short");
        assert_eq!(pace(1, 10.0).slots(), 3);
        assert_eq!(pace(1, 200.0).slots(), 2);
        assert_eq!(pace(8, 200.0).slots(), 9);
        assert_eq!(pace(8, 10.0).slots(), 10);
        let mut p = Pace::default();
        for _ in 0..20 {
            p.answered(200.0);
        }
        assert_eq!(p.slots(), 2);
        p.answered(f64::NAN);
        assert!((p.batch_ms - 200.0).abs() < 1e-6, "nonsense is ignored");
    }
}
