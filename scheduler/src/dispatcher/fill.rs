//! Filling free in-flight slots: fewest virtual queries first; each batch goes to the least
//! loaded alive worker of its job.

use super::run::Flight;
use super::{Action, Dispatcher};
use crate::batches::{deadline, Batch};
use std::collections::BTreeSet;
use std::time::Instant;

impl Dispatcher {
    /// Sends batches while some job has one and a worker of it has a free slot. A job with no
    /// batch left to send asks the shell to cut more and filling waits for the cut.
    pub(super) fn fill(&mut self, now: Instant) {
        if !self.coordinating {
            return;
        }
        if self.spare.is_empty() {
            return;
        }
        // Workers with a free slot (usually one, after an answer), and the jobs that cannot
        // send now.
        let mut free = self.spare.clone();
        let mut skipped: Vec<String> = Vec::new();
        while let Some(id) = self.next_job(&skipped).filter(|_| !free.is_empty()) {
            let Some(worker) = self.free_worker(&id, &free, |_| true) else {
                skipped.push(id);
                continue;
            };
            let slots = self.free_slots(&id, &free);
            let cut_ahead = self.cfg.cut_ahead;
            let Some(run) = self.runs.get_mut(&id) else {
                return;
            };
            let batch = match run.resend.pop_front() {
                Some(b) => b,
                None if run.cut_blocked => {
                    skipped.push(id);
                    continue;
                }
                None => {
                    run.cutting = true;
                    let n = slots.clamp(1, cut_ahead);
                    self.out.push(Action::Cut { job: id, n });
                    return; // the cut's batches go first when it comes back
                }
            };
            let Some(worker) = self.route(&id, worker, batch, &free) else {
                skipped.push(id);
                continue;
            };
            self.send(&id, &worker, batch, now);
            if !self.spare.contains(&worker) {
                free.remove(&worker);
            }
        }
    }

    /// The job to serve next: the fewest virtual queries (then the fewest batches in flight)
    /// among those with a batch to send or to cut.
    fn next_job(&self, skipped: &[String]) -> Option<String> {
        self.runs
            .iter()
            .filter(|(_, r)| !r.cutting && (!r.resend.is_empty() || !r.exhausted))
            .filter(|(id, _)| !skipped.contains(id))
            .map(|(id, r)| (r.vq, r.in_flight, id))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, id)| id.clone())
    }

    /// Whether worker `w` may take a batch now: alive, serving some job, a slot free.
    fn has_room(&self, w: &str) -> bool {
        self.alive.contains(w)
            && self.load_of(w) < self.slots(w)
            && self.runs.values().any(|r| r.joined.contains(w))
    }

    /// Re-decides whether worker `w` has a free slot, after its load, pace or state changed.
    pub(super) fn recheck(&mut self, w: &str) {
        let free = self.has_room(w);
        if !free {
            self.spare.remove(w);
        } else if !self.spare.contains(w) {
            self.spare.insert(w.to_string());
        }
    }

    /// Re-decides every worker's free slots (the pool changed).
    pub(super) fn recheck_all(&mut self) {
        let free = |w: &&String| self.has_room(w);
        self.spare = self.alive.iter().filter(free).cloned().collect();
    }

    /// Batches `w` may hold: one while it is late (a batch of it timed out and it has not
    /// answered since), else as its pace allows.
    pub(super) fn slots(&self, w: &str) -> usize {
        if self.late.contains(w) {
            return 1;
        }
        self.pace.get(w).copied().unwrap_or_default().slots()
    }

    fn load_of(&self, w: &str) -> usize {
        self.load.get(w).copied().unwrap_or(0)
    }

    /// The job's workers among `free` that may take a batch of it.
    fn usable<'a>(
        &'a self,
        id: &'a str,
        free: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let run = self.runs.get(id);
        free.iter()
            .filter(move |w| run.is_some_and(|r| r.joined.contains(*w)) && self.may_serve(id, w))
    }

    /// The least loaded of the job's workers with a free slot that are `wanted`, late
    /// workers last.
    fn free_worker(
        &self,
        id: &str,
        free: &BTreeSet<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        self.usable(id, free)
            .filter(|w| wanted(w))
            .map(|w| (self.late.contains(w), self.load_of(w), w))
            .filter(|(_, l, w)| *l < self.slots(w))
            .min()
            .map(|(_, _, w)| w.clone())
    }

    /// Free slots over all the job's workers.
    fn free_slots(&self, id: &str, free: &BTreeSet<String>) -> usize {
        self.usable(id, free)
            .map(|w| self.slots(w).saturating_sub(self.load_of(w)))
            .sum()
    }

    /// Where the batch goes. A batch a worker lost goes to another worker, and a batch whose
    /// worker died (or may have) goes to another worker than this coordinator: a batch that
    /// kills its workers must not kill the coordinator too, and a slow worker must not hold
    /// the same batch back again and again. `None`: it waits for such a worker's free slot
    /// (when the job has one alive).
    fn route(
        &mut self,
        id: &str,
        worker: String,
        batch: Batch,
        free: &BTreeSet<String>,
    ) -> Option<String> {
        let run = self.runs.get(id)?;
        let suspect = run.suspect(batch.batch_id);
        let lost_by = |w: &str| {
            run.lost
                .iter()
                .any(|l| l.batch.batch_id == batch.batch_id && l.worker == w)
        };
        let avoid = |w: &str| (suspect && w == self.me) || lost_by(w);
        if !avoid(&worker) {
            return Some(worker);
        }
        if let Some(other) = self.free_worker(id, free, |w| !avoid(w)) {
            return Some(other);
        }
        let elsewhere = (run.joined.iter()).any(|w| !avoid(w) && self.alive.contains(w));
        if elsewhere {
            self.runs.get_mut(id)?.resend.push_front(batch);
            return None;
        }
        Some(worker)
    }

    /// Sends `batch` of job `id` to `worker`.
    fn send(&mut self, id: &str, worker: &str, batch: Batch, now: Instant) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.in_flight += 1;
        run.vq += f64::from(batch.len) / run.weight();
        let again = run.suspect(batch.batch_id);
        let deadline = deadline(run.median_ms);
        let load = self.load.entry(worker.to_string()).or_default();
        if *load == 0 {
            self.heard.insert(worker.to_string(), now);
        }
        *load += 1;
        self.recheck(worker);
        let flight = self.next_flight;
        self.next_flight += 1;
        let seen = self.members.get(worker);
        self.flights.insert(
            flight,
            Flight {
                job: id.to_string(),
                worker: worker.to_string(),
                batch,
                generation: seen.map_or(0, |m| m.generation),
                started: seen.and_then(|m| m.started),
            },
        );
        self.stats.sent += 1;
        self.stats.resent += u64::from(again);
        self.out.push(Action::Send {
            flight,
            job: id.to_string(),
            worker: worker.to_string(),
            batch,
            again,
            deadline,
        });
    }
}
