//! The outcomes of the dispatcher's actions: joins, answered batches, probes, cuts and counts.

use super::deaths::{keep, Lost};
use super::run::Flight;
use super::{Action, Dispatcher, Failure};
use crate::batches::{Answered, Batch};
use bus_schemas::serve::{AssignReply, WorkReply, MAX_WORKER_LANES};
use std::time::Instant;

impl Dispatcher {
    /// A worker's answer to a join.
    pub(super) fn join_answered(
        &mut self,
        id: &str,
        worker: String,
        generation: u64,
        result: Result<AssignReply, Failure>,
        now: Instant,
    ) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if run.joining.get(&worker) != Some(&generation) {
            return; // asked of a process that has since died or restarted
        }
        run.joining.remove(&worker);
        match result {
            Ok(AssignReply::Done { lanes, .. }) => {
                run.lasting.remove(&worker);
                let lanes = lanes.clamp(1, MAX_WORKER_LANES) as usize;
                self.pace.entry(worker.clone()).or_default().lanes = lanes;
                // One that left the pool meanwhile is asked again when it is back.
                if self.alive.contains(&worker) {
                    run.joined.insert(worker);
                }
            }
            Ok(AssignReply::Error {
                message,
                bad_input,
                transient,
                ..
            }) => {
                tracing::warn!(job = %id, %worker, transient, "cannot serve: {message}");
                if transient {
                    run.lasting.remove(&worker);
                } else {
                    run.lasting.insert(worker.clone());
                }
                run.refused.insert(worker, now);
                run.joins_seen = u64::MAX;
                if bad_input {
                    // Any worker would refuse it: fail once, here, without trying others.
                    let reason = format!("cannot be served: {message}");
                    self.out.push(Action::Fail {
                        job: id.to_string(),
                        reason,
                    });
                }
                run.refusal = Some(message);
            }
            Err(e) => {
                tracing::debug!(job = %id, %worker, "join: {e:?}");
                run.refused.insert(worker, now);
                run.joins_seen = u64::MAX;
            }
        }
    }

    /// A worker's answer to a batch (or its absence).
    pub(super) fn work_answered(
        &mut self,
        flight: u64,
        id: &str,
        to: &str,
        batch: Batch,
        result: Result<WorkReply, Failure>,
        now: Instant,
    ) {
        self.heard.insert(to.to_string(), now);
        let answered = accept(id, to, batch, &result);
        if answered.is_some() {
            self.late.remove(to);
        }
        let Some(f) = self.flights.remove(&flight) else {
            // Abandoned and sent again: count a late answer (once), nothing else.
            if let (Some(answered), Some(run)) = (answered, self.runs.get_mut(id)) {
                self.stats.answered += 1;
                run.uncounted.push(answered);
            }
            return;
        };
        if let Some(l) = self.load.get_mut(to) {
            *l = l.saturating_sub(1);
        }
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.in_flight = run.in_flight.saturating_sub(1);
        match (result, answered) {
            (Ok(WorkReply::Done { infer_ms, .. }), Some(answered)) => {
                self.took(id, to, answered, infer_ms, now);
            }
            (Ok(reply), _) => {
                let why = match reply {
                    WorkReply::Error { message, .. } => format!("batch failed: {message}"),
                    WorkReply::Done { .. } => "an answer that cannot be accepted (another \
                                               worker's, or no stored results)"
                        .into(),
                };
                tracing::warn!(job = %id, batch = batch.batch_id, worker = %to, "{why}: sending again");
                run.drop_worker(to);
                run.retry(batch);
            }
            (Err(e), _) => self.unanswered(id, to, batch, &f, e, now),
        }
    }

    /// An accepted answer: its model time is the job's cost and the worker's pace, and it
    /// waits to be counted.
    fn took(&mut self, id: &str, to: &str, answered: Answered, infer_ms: f64, now: Instant) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        // Model time: the worker's wait for its inference thread (other jobs' batches) is
        // not this job's cost.
        run.took(now, answered.queries, infer_ms);
        let pace = self.pace.entry(to.to_string()).or_default();
        pace.answered(infer_ms);
        run.uncounted.push(answered);
        self.stats.answered += 1;
        // The last batch of a job is counted at once; others in groups.
        let last = run.exhausted && run.in_flight == 0 && run.resend.is_empty();
        if run.uncounted.len() >= self.cfg.count_group || last {
            self.settle(id);
        }
    }

    /// A batch without an answer: sent again; one perhaps delivered is kept as a loss until
    /// membership says whether its worker died, and the worker is late.
    fn unanswered(
        &mut self,
        id: &str,
        to: &str,
        batch: Batch,
        f: &Flight,
        e: Failure,
        now: Instant,
    ) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        match e {
            Failure::NoResponders => {
                tracing::info!(job = %id, batch = batch.batch_id, worker = %to, "no worker listens, sending again");
                run.drop_worker(to); // it does not serve the job (any more)
            }
            Failure::Failed(why) => {
                tracing::info!(job = %id, batch = batch.batch_id, worker = %to, "no answer, sending again: {why}");
                self.late.insert(to.to_string());
                let lost = Lost {
                    batch,
                    worker: to.to_string(),
                    generation: f.generation,
                    started: f.started,
                    at: now,
                    why,
                };
                keep(&mut run.lost, lost);
            }
        }
        run.send_again(batch, now);
    }

    /// Whether a probed worker's process answered.
    pub(super) fn probed(&mut self, worker: &str, up: bool, now: Instant) {
        self.probing.remove(worker);
        if up {
            self.heard.insert(worker.to_string(), now);
        }
        if !up && self.alive.remove(worker) {
            self.pool_version += 1;
            tracing::info!(%worker, "a worker with a late batch does not answer: treated as lost");
            for run in self.runs.values_mut() {
                run.drop_worker(worker);
            }
            self.abandon_lost(now);
            self.recheck_all();
        }
    }

    /// The batches a cut wrote.
    pub(super) fn cut(&mut self, id: &str, batches: Option<Vec<Batch>>) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.cutting = false;
        match batches {
            Some(b) if b.is_empty() => run.exhausted = true,
            Some(b) => run.resend.extend(b),
            // The record cannot be written now (a server restarting): try at the next tick.
            None => run.cut_blocked = true,
        }
    }

    /// The outcome of counting answered batches.
    pub(super) fn counted(
        &mut self,
        id: &str,
        answered: &[Answered],
        complete: Option<bool>,
        now: Instant,
    ) {
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if complete.is_some() {
            run.counted_now(answered, now);
        }
        match complete {
            Some(true) => {
                run.finishing = Some(now);
                self.out.push(Action::Finish {
                    job: id.to_string(),
                    workers: run.joined.iter().cloned().collect(),
                });
            }
            Some(false) => {}
            None => answered.iter().for_each(|a| run.retry(a.batch)),
        }
    }
}

/// The batch as answered by `to`, if the answer can be accepted: a `done` from `to` itself (the
/// worker the batch was sent to) naming the stream message that holds its results. The counts
/// come from the batch as cut, not from the worker's word.
fn accept(
    id: &str,
    to: &str,
    batch: Batch,
    result: &Result<WorkReply, Failure>,
) -> Option<Answered> {
    let Ok(WorkReply::Done {
        batch_id,
        worker,
        correct,
        stream_seq: Some(seq),
        ..
    }) = result
    else {
        return None;
    };
    if worker != to || *batch_id != batch.batch_id {
        tracing::warn!(job = %id, batch = batch.batch_id, %to, "an answer naming worker {worker:?} and batch {batch_id} ignored");
        return None;
    }
    Some(Answered {
        batch,
        worker: to.to_string(),
        stream_seq: *seq,
        queries: batch.len,
        correct: correct.map(|c| c.min(batch.len)),
    })
}
