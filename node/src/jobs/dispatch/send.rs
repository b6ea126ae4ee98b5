//! Sending batches to workers, handling their answers, counting them, probing quiet workers.

use super::state::Flight;
use super::*;

pub(super) enum Done {
    Joined(String, String, u64, Result<AssignReply, RequestError>),
    Answered(u64, String, String, Batch, Result<WorkReply, RequestError>),
    /// A probed worker, and whether its process answered.
    Probed(String, bool),
}

/// Fills free in-flight slots, fewest virtual queries first; each batch goes to the least
/// loaded alive worker of its job.
pub(super) async fn fill(ctx: &Arc<Ctx>, st: &mut State, tasks: &mut JoinSet<Done>) {
    if !ctx.coordinator.borrow().me {
        return;
    }
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    loop {
        let (load, alive) = (&st.load, &st.alive);
        let (policy, divided) = (st.policy, &st.divided);
        let pace = &st.pace;
        let slots = |w: &str| pace.get(w).copied().unwrap_or_default().slots();
        let free_worker = |id: &str, r: &Run, except: &str| {
            r.joined
                .iter()
                .filter(|w| *w != except && alive.contains(*w) && may_serve(policy, divided, id, w))
                .map(|w| (load.get(w).copied().unwrap_or(0), w.clone()))
                .filter(|(l, w)| *l < slots(w))
                .min()
                .map(|(_, w)| w)
        };
        let free_slots = |id: &str, r: &Run| -> usize {
            r.joined
                .iter()
                .filter(|w| alive.contains(*w) && may_serve(policy, divided, id, w))
                .map(|w| slots(w).saturating_sub(load.get(w).copied().unwrap_or(0)))
                .sum()
        };
        let next = st
            .runs
            .iter_mut()
            .filter(|(id, r)| !blocked.contains(*id) && (!r.resend.is_empty() || !r.exhausted))
            .map(|(id, r)| (r.vq, r.in_flight, id.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, _, id)) = next else {
            return;
        };
        let run = st.runs.get_mut(&id).expect("chosen from runs");
        let Some(worker) = free_worker(&id, run, "") else {
            blocked.insert(id);
            continue;
        };
        let batch = match run.resend.pop_front() {
            Some(b) => b,
            None => match cut(ctx, &id, free_slots(&id, run).clamp(1, CUT_AHEAD)).await {
                Ok(cut) if cut.is_empty() => {
                    run.exhausted = true;
                    continue;
                }
                Ok(cut) => {
                    run.resend.extend(cut[1..].iter().copied());
                    cut[0]
                }
                Err(e) => {
                    // The bucket is unreachable for now (a server restart): try again later.
                    tracing::debug!(job = %id, "cannot cut a batch: {e:#}");
                    blocked.insert(id);
                    continue;
                }
            },
        };
        // A batch whose worker died (or may have) goes to another worker than this coordinator,
        // if the job has one: a batch that kills its workers must not kill the coordinator too.
        let worker = match (
            worker == ctx.id && run.suspect(batch.0),
            free_worker(&id, run, &ctx.id),
        ) {
            (false, _) => worker,
            (true, Some(other)) => other,
            (true, None) if run.joined.iter().any(|w| *w != ctx.id && alive.contains(w)) => {
                run.resend.push_front(batch);
                blocked.insert(id);
                continue;
            }
            (true, None) => worker,
        };
        run.in_flight += 1;
        run.vq += f64::from(batch.2) / f64::from(run.spec.weight.max(1));
        let load = st.load.entry(worker.clone()).or_default();
        if *load == 0 {
            st.heard.insert(worker.clone(), Instant::now());
        }
        *load += 1;
        let flight = st.next_flight;
        st.next_flight += 1;
        let (job, to) = (id.clone(), worker.clone());
        let seen = st.members.get(&worker);
        let generation = seen.map_or(0, |m| m.generation);
        let started = seen.and_then(|m| m.started);
        st.flights.insert(
            flight,
            Flight {
                job,
                worker: to,
                batch,
                generation,
                started,
            },
        );
        let deadline = deadline(run.median_ms);
        // A lost batch goes before the batches the worker holds already.
        let again = run.suspect(batch.0);
        let client = ctx.client.clone();
        tasks.spawn(async move {
            let work = WorkBatch {
                job_id: id.clone(),
                batch_id: batch.0,
                first_query: batch.1,
                len: batch.2,
            };
            let subject = if again {
                subjects::job_work_again(&id, &worker)
            } else {
                subjects::job_work(&id, &worker)
            };
            let reply = bus_client::request(&client, subject, &work, deadline).await;
            Done::Answered(flight, id, worker, batch, reply)
        });
    }
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

pub(super) async fn handle(ctx: &Arc<Ctx>, st: &mut State, done: Done) {
    let runs = &mut st.runs;
    match done {
        Done::Joined(id, worker, generation, reply) => {
            let Some(run) = runs.get_mut(&id) else { return };
            if run.joining.get(&worker) != Some(&generation) {
                return; // asked of a process that has since died or restarted
            }
            run.joining.remove(&worker);
            match reply {
                Ok(AssignReply::Done { lanes, .. }) => {
                    let lanes = lanes.clamp(1, MAX_WORKER_LANES) as usize;
                    st.pace.entry(worker.clone()).or_default().lanes = lanes;
                    run.joined.insert(worker);
                }
                Ok(AssignReply::Error {
                    message, bad_input, ..
                }) => {
                    tracing::warn!(job = %id, %worker, "cannot serve: {message}");
                    run.refused.insert(worker, Instant::now());
                    if bad_input {
                        // Any worker would refuse it: fail once, here, without trying others.
                        let reason = format!("cannot be served: {message}");
                        ending::fail(ctx, &id, Owner::Coordinator, reason).await;
                    }
                    run.refusal = Some(message);
                }
                Err(e) => {
                    tracing::debug!(job = %id, %worker, "join: {e}");
                    run.refused.insert(worker, Instant::now());
                }
            }
        }
        Done::Probed(worker, up) => {
            st.probing.remove(&worker);
            if up {
                st.heard.insert(worker.clone(), Instant::now());
            }
            if !up && st.alive.remove(&worker) {
                tracing::info!(%worker, "a worker with a late batch does not answer: treated as lost");
                for run in st.runs.values_mut() {
                    run.joined.remove(&worker);
                }
                st.abandon_lost();
            }
        }
        Done::Answered(flight, id, to, batch, reply) => {
            st.heard.insert(to.clone(), Instant::now());
            let answered = accept(&id, &to, batch, &reply);
            let Some(f) = st.flights.remove(&flight) else {
                // Abandoned and sent again: count a late answer (once), nothing else.
                if let (Some(answered), Some(run)) = (answered, runs.get_mut(&id)) {
                    run.uncounted.push(answered);
                }
                return;
            };
            if let Some(l) = st.load.get_mut(&to) {
                *l = l.saturating_sub(1);
            }
            let Some(run) = runs.get_mut(&id) else { return };
            run.in_flight = run.in_flight.saturating_sub(1);
            match (reply, answered) {
                (Ok(WorkReply::Done { infer_ms, .. }), Some(answered)) => {
                    // Model time: the worker's wait for its inference thread (other jobs'
                    // batches) is not this job's cost.
                    let queries = answered.queries;
                    run.answered.push_back((Instant::now(), queries, infer_ms));
                    run.proc_ms.push_back(infer_ms);
                    st.pace.entry(to.clone()).or_default().answered(infer_ms);
                    if run.proc_ms.len() > 2000 {
                        run.proc_ms.pop_front();
                    }
                    run.uncounted.push(answered);
                    // The last batch of a job is counted at once; others in groups.
                    let last = run.exhausted && run.in_flight == 0 && run.resend.is_empty();
                    if run.uncounted.len() >= COUNT_GROUP || last {
                        settle(ctx, st, &id).await;
                    }
                }
                (Ok(WorkReply::Done { .. }), None) => {
                    tracing::warn!(job = %id, batch = batch.0, worker = %to, "an answer that cannot be accepted (another worker's, or no stored results): sending again");
                    run.joined.remove(&to);
                    run.resend.push_back(batch);
                }
                (Ok(WorkReply::Error { message, .. }), _) => {
                    tracing::warn!(job = %id, batch = batch.0, worker = %to, "batch failed, sending again: {message}");
                    run.joined.remove(&to);
                    run.resend.push_back(batch);
                }
                (Err(e), _) => {
                    tracing::info!(job = %id, batch = batch.0, worker = %to, "no answer, sending again: {e}");
                    if matches!(e, RequestError::NoResponders { .. }) {
                        run.joined.remove(&to); // it does not serve the job (any more)
                    } else {
                        // Delivered, perhaps: if the worker turns out dead, it counts.
                        let lost = losses::Lost {
                            batch,
                            worker: to,
                            generation: f.generation,
                            started: f.started,
                            at: Instant::now(),
                            why: e.to_string(),
                        };
                        losses::keep(&mut run.lost, lost);
                    }
                    run.send_again(batch);
                }
            }
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
    reply: &Result<WorkReply, RequestError>,
) -> Option<Answered> {
    let Ok(WorkReply::Done {
        batch_id,
        worker,
        correct,
        stream_seq: Some(seq),
        ..
    }) = reply
    else {
        return None;
    };
    if worker != to || *batch_id != batch.0 {
        tracing::warn!(job = %id, batch = batch.0, %to, "an answer naming worker {worker:?} and batch {batch_id} ignored");
        return None;
    }
    Some(Answered {
        batch,
        worker: to.to_string(),
        stream_seq: *seq,
        queries: batch.2,
        correct: correct.map(|c| c.min(batch.2)),
    })
}

/// Records the job's answered batches as accepted, then counts them in one write; when either
/// fails they are sent again. Finishes the job when every query is answered.
pub(super) async fn settle(ctx: &Arc<Ctx>, st: &mut State, id: &str) {
    let Some(run) = st.runs.get_mut(id) else {
        return;
    };
    if run.uncounted.is_empty() {
        return;
    }
    let answered = std::mem::take(&mut run.uncounted);
    // The acceptance is stored first: a counted batch always has one (a failover between the
    // two sends the batch again, and the first acceptance of a batch is the one used).
    let js = async_nats::jetstream::new(ctx.client.clone());
    if let Err(e) = accepted::record(&js, ctx.kv_replicas, id, &answered).await {
        tracing::debug!(job = %id, "cannot record {} accepted batches: {e}", answered.len());
        run.resend.extend(answered.iter().map(|a| a.batch));
        return;
    }
    match count(ctx, id, &answered).await {
        Ok(true) => {
            run.finishing = Some(Instant::now());
            serve_finish::finish(ctx.clone(), id.to_string(), run.joined.clone());
        }
        Ok(false) => {}
        Err(e) => {
            tracing::debug!(job = %id, "cannot count {} batches: {e:#}", answered.len());
            run.resend.extend(answered.iter().map(|a| a.batch));
        }
    }
}

/// Probes the workers holding batches that have been quiet for [`QUIET`] (see [`probe`]).
pub(super) fn probe_stragglers(ctx: &Arc<Ctx>, st: &mut State, tasks: &mut JoinSet<Done>) {
    st.heard
        .retain(|w, _| st.load.get(w).is_some_and(|l| *l > 0));
    let late = quiet_workers(st, Instant::now());
    for worker in late {
        st.probing.insert(worker.clone());
        let client = ctx.client.clone();
        tasks.spawn(async move {
            let asked = Instant::now();
            let up = probe(&client, &worker).await;
            let took = asked.elapsed();
            tracing::debug!(%worker, ?took, up, "probed a quiet worker");
            Done::Probed(worker, up)
        });
    }
}

/// Whether `worker`'s process answers a ping within [`PROBE_TIMEOUT`]. A ping unanswered for
/// [`QUIET`] is sent again: one sent just before the process died is never answered, while
/// one sent after finds no responders at once.
async fn probe(client: &async_nats::Client, worker: &str) -> bool {
    let req = bus_schemas::control::ControlRequest::Ping;
    let subject = subjects::node_control(worker, req.op());
    let began = Instant::now();
    loop {
        let left = PROBE_TIMEOUT.saturating_sub(began.elapsed());
        if left.is_zero() {
            return false;
        }
        let reply: Result<bus_schemas::control::ControlReply, _> =
            bus_client::request(client, subject.clone(), &req, left.min(QUIET)).await;
        match reply {
            // Something answered: the process is there.
            Ok(_) | Err(RequestError::Decode { .. }) => return true,
            Err(RequestError::Timeout { .. }) => {}
            Err(_) => return false,
        }
    }
}

/// The workers holding batches that have been quiet for [`QUIET`] and are not being probed.
fn quiet_workers(st: &State, now: Instant) -> BTreeSet<String> {
    st.load
        .iter()
        .filter(|(w, l)| **l > 0 && !st.probing.contains(*w))
        .filter(|(w, _)| st.heard.get(*w).is_none_or(|t| now - *t > QUIET))
        .map(|(w, _)| w.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holding_batches_and_quiet_is_probed_once_at_a_time() {
        let mut st = State::default();
        let t = Instant::now();
        for (w, load) in [("busy", 2), ("idle", 0), ("quiet", 1), ("probed", 1)] {
            st.load.insert(w.into(), load);
            st.heard.insert(w.into(), t);
        }
        st.heard.insert("busy".into(), t + QUIET);
        st.probing.insert("probed".into());
        let later = t + QUIET + Duration::from_millis(1);
        let quiet: Vec<String> = quiet_workers(&st, later).into_iter().collect();
        assert_eq!(quiet, ["quiet"]);
        assert!(quiet_workers(&st, t).is_empty(), "none quiet yet");
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
