//! Going through the records and the view: new and ended jobs, the worker pool, joins, deaths,
//! the `qps local` division, and the statistics saved in each record.

use super::deaths::{self, Lost};
use super::index::{digest, JobView, ServeView};
use super::run::Run;
use super::{Action, Dispatcher};
use crate::batches::percentiles;
use crate::fair;
use bus_schemas::jobs::{JobRecord, JobState, QpsPolicy};
use bus_schemas::membership::MemberState;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

impl Dispatcher {
    /// One pass over the records and the view.
    pub(super) fn pass(&mut self, now: Instant) {
        self.passed = Some(now);
        self.dirty = false;
        let jobs = std::mem::take(&mut self.jobs);
        self.read_view(&jobs);
        self.abandon_lost(now);
        self.confirm_deaths(now);
        self.end_runs(&jobs);
        self.divide(now);
        self.level_virtual_queries();
        let serving = jobs.values().filter(|j| j.spec.is_some());
        for job in serving {
            self.follow(job, now);
        }
        self.jobs = jobs;
        self.recheck_all();
    }

    /// The pool (alive workers not held by a training or import job), members and hosts.
    fn read_view(&mut self, jobs: &BTreeMap<String, JobView>) {
        let usable = |w: &String| {
            (self.view.iter())
                .any(|m| m.id == *w && matches!(m.state, MemberState::Alive | MemberState::Suspect))
        };
        let training: BTreeSet<&String> = (jobs.values())
            .filter(|j| j.state == JobState::Running)
            .filter_map(|j| j.holds.as_ref())
            .filter(|w| usable(w))
            .collect();
        let alive: BTreeSet<String> = (self.view.iter())
            .filter(|m| m.state == MemberState::Alive && !training.contains(&m.id))
            .map(|m| m.id.clone())
            .collect();
        let members = deaths::members(&self.view);
        if alive != self.alive || members != self.members {
            self.pool_version += 1;
        }
        (self.alive, self.members) = (alive, members);
        self.hosts = (self.view.iter())
            .map(|m| (m.id.clone(), m.host.clone()))
            .collect();
        let members = &self.members;
        let present = |w: &String| {
            members
                .get(w)
                .is_some_and(|m| !matches!(m.state, MemberState::Failed | MemberState::Left))
        };
        self.pace.retain(|w, _| present(w));
        self.late.retain(present);
    }

    /// Sends again at once the batches in flight on workers that are no longer in the pool
    /// (suspected, failed, left, or training) instead of waiting for their deadline; a late
    /// answer to an abandoned flight is still counted, once.
    pub(super) fn abandon_lost(&mut self, now: Instant) {
        let lost: Vec<u64> = (self.flights.iter())
            .filter(|(_, f)| !self.alive.contains(&f.worker))
            .map(|(n, _)| *n)
            .collect();
        for n in lost {
            let Some(f) = self.flights.remove(&n) else {
                continue;
            };
            if let Some(l) = self.load.get_mut(&f.worker) {
                *l = l.saturating_sub(1);
            }
            let Some(run) = self.runs.get_mut(&f.job) else {
                continue;
            };
            tracing::info!(job = %f.job, batch = f.batch.batch_id, worker = %f.worker, "worker lost, sending again");
            run.in_flight = run.in_flight.saturating_sub(1);
            let lost = Lost {
                batch: f.batch,
                worker: f.worker,
                generation: f.generation,
                started: f.started,
                at: now,
                why: "it stopped answering while it ran the batch".into(),
            };
            deaths::keep(&mut run.lost, lost);
            run.send_again(f.batch, now);
        }
    }

    /// Records the losses membership confirms as deaths; releases held batches.
    fn confirm_deaths(&mut self, now: Instant) {
        for (id, run) in self.runs.iter_mut() {
            for (lost, what) in deaths::confirm(&mut run.lost, &self.members, now) {
                run.dead.insert(lost.batch.batch_id); // still suspect until the record is read back
                self.out.push(Action::RecordDeath {
                    job: id.clone(),
                    batch: lost.batch,
                    worker: lost.worker,
                    what,
                });
            }
            run.release(now);
        }
    }

    /// Ends the runs of jobs that ended (or are gone): their workers leave, their flights are
    /// forgotten (a late answer finds no flight and is counted at most once, if the job runs
    /// again).
    fn end_runs(&mut self, jobs: &BTreeMap<String, JobView>) {
        let ended: Vec<String> = (self.runs.keys())
            .filter(|id| jobs.get(*id).is_none_or(|j| j.state.is_final()))
            .cloned()
            .collect();
        for id in ended {
            if let Some(run) = self.runs.remove(&id) {
                self.out.push(Action::Leave {
                    job: id.clone(),
                    workers: run.joined.into_iter().collect(),
                });
            }
            let load = &mut self.load;
            self.flights.retain(|_, f| {
                let mine = f.job == id;
                if let Some(l) = load.get_mut(&f.worker).filter(|_| mine) {
                    *l = l.saturating_sub(1);
                }
                !mine
            });
        }
        self.starting.retain(|id| jobs.contains_key(id));
    }

    /// Under `qps local`, divides the pool among the running jobs when the jobs or the pool
    /// changed, or every [`super::Config::redivide`] as the measured costs move.
    fn divide(&mut self, now: Instant) {
        if self.policy == QpsPolicy::Global {
            self.divided.clear();
            return;
        }
        let same_jobs = self.divided.keys().eq(self.runs.keys());
        let covered: BTreeSet<&String> = self.divided.values().flatten().collect();
        let pool = &self.alive;
        let same_pool = covered.len() == pool.len() && pool.iter().all(|w| covered.contains(w));
        let recent =
            (self.divided_at).is_some_and(|t| now.saturating_duration_since(t) < self.cfg.redivide);
        if same_jobs && same_pool && recent {
            return;
        }
        let claims: Vec<fair::Claim> = (self.runs.iter_mut())
            .map(|(id, r)| fair::Claim {
                job: id.clone(),
                weight: r.weight(),
                cost: r.cost(now),
            })
            .collect();
        let host = |w: &String| self.hosts.get(w).cloned().unwrap_or_else(|| w.clone());
        let pool: BTreeMap<String, String> = pool.iter().map(|w| (w.clone(), host(w))).collect();
        let divided = fair::partition(&pool, &claims, &self.divided);
        if divided != self.divided {
            tracing::info!(?divided, ?claims, "qps local: workers divided");
        }
        self.divided = divided;
        self.divided_at = Some(now);
    }

    /// Lifts a job that trails the leader by more than [`super::Config::lag_batches`] batches
    /// of a job of weight 1 (it could not be served for a while: no worker, a failure) so that
    /// it is not owed a burst. The allowance is the same for every job in virtual queries (a
    /// job of weight 3 may trail by three times as many of its batches): an allowance divided
    /// by the weight lifted heavier jobs in ordinary jitter and gave them 5–7% less than their
    /// share (the scheduler simulation showed it).
    fn level_virtual_queries(&mut self) {
        let lead = self.runs.values().map(|r| r.vq).fold(0.0, f64::max);
        for run in self.runs.values_mut() {
            let lag = self.cfg.lag_batches * f64::from(run.batch.max(1));
            run.vq = run.vq.max(lead - lag);
        }
    }

    /// Follows one inference job's record: starts a queued one, takes up a running one, and
    /// keeps its workers, its batches' state and its statistics.
    pub(super) fn follow(&mut self, job: &JobView, now: Instant) {
        let (Some(spec), Some(s)) = (&job.spec, &job.serve) else {
            return;
        };
        if job.state == JobState::Queued {
            if !self.runs.contains_key(&job.id) && self.starting.insert(job.id.clone()) {
                self.out.push(Action::Start {
                    job: job.id.clone(),
                });
            }
            return;
        }
        if !self.runs.contains_key(&job.id) {
            tracing::info!(job = %job.id, pending = s.pending.len(), "dispatching");
            // A new job starts level with the others, not owed their past.
            let level = self
                .runs
                .values()
                .map(|r| r.vq)
                .fold(f64::INFINITY, f64::min);
            let mut run = Run::new(job, spec, s, now);
            run.vq = if level.is_finite() { level } else { 0.0 };
            self.runs.insert(job.id.clone(), run);
            self.starting.remove(&job.id);
        }
        self.keep_workers(&job.id);
        self.read_record(&job.id, s, now);
        if self.hopeless(&job.id) {
            return;
        }
        self.join_wanted(&job.id, now);
        self.save(&job.id, s, now);
    }

    /// A started job is taken up at once (its workers asked to join), not at the next pass.
    pub(super) fn started(&mut self, id: &str, record: Option<Box<JobRecord>>, now: Instant) {
        self.starting.remove(id);
        let Some(record) = record else {
            return;
        };
        if record.state == JobState::Running {
            self.follow(&JobView::of(&record), now);
        }
        self.job(&record);
    }

    /// Forgets joined workers that left the pool, and joins asked of processes since gone
    /// (when the pool or the members changed since the job's last look).
    fn keep_workers(&mut self, id: &str) {
        let (pool, members) = (&self.alive, &self.members);
        let Some(run) = self
            .runs
            .get_mut(id)
            .filter(|r| r.pool_seen != self.pool_version)
        else {
            return;
        };
        run.pool_seen = self.pool_version;
        run.joined.retain(|w| pool.contains(w));
        run.joining.retain(|w, g| {
            let same = |m: &deaths::Seen| m.generation == *g && m.state != MemberState::Failed;
            members.get(w).is_some_and(same)
        });
    }

    /// Takes what the record says: counted batches are no longer suspect, recorded deaths are;
    /// whether every query is cut; the batch size; a complete job is finished (again, if its
    /// finishing failed or this coordinator took over a complete job); pending batches nothing
    /// here holds are sent again ([`Run::adopt_strays`]).
    fn read_record(&mut self, id: &str, s: &ServeView, now: Instant) {
        let refinish = self.cfg.refinish;
        let flying: BTreeSet<u64> = (self.flights.values())
            .filter(|f| f.job == id)
            .map(|f| f.batch.batch_id)
            .collect();
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        let adopted = run.adopt_strays(&s.pending, &flying, now);
        if adopted > 0 {
            tracing::info!(job = %id, adopted, "sending again recorded batches nobody held (cut by an earlier coordinator after this one read the record)");
        }
        run.dead
            .retain(|b| s.pending.iter().any(|p| p.batch_id == *b));
        run.dead.extend(s.deaths.iter().copied());
        run.exhausted = s.exhausted();
        run.batch = s.batch;
        if s.complete() && run.finish_due(now, refinish) {
            run.finishing = Some(now);
            self.out.push(Action::Finish {
                job: id.to_string(),
                workers: run.joined.iter().cloned().collect(),
            });
        }
    }

    /// Fails a job that every worker refused for a lasting reason and none serves.
    fn hopeless(&mut self, id: &str) -> bool {
        let pool = &self.alive;
        let Some(run) = self.runs.get(id) else {
            return true;
        };
        let hopeless = run.joined.is_empty()
            && !pool.is_empty()
            && pool.iter().all(|w| run.lasting.contains(w));
        let Some(reason) = run.refusal.as_ref().filter(|_| hopeless) else {
            return false;
        };
        self.out.push(Action::Fail {
            job: id.to_string(),
            reason: format!("no worker can serve it: {reason}"),
        });
        true
    }

    /// Asks the pool's workers that have not joined (and did not refuse lately) to join.
    fn join_wanted(&mut self, id: &str, now: Instant) {
        let (pool, members, retry) = (&self.alive, &self.members, self.cfg.join_retry);
        let version = self.pool_version;
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        // Nothing changed since the last look, and no refusal is due for a retry.
        if run.joins_seen == version && run.joins_due.is_none_or(|t| now < t) {
            return;
        }
        run.joins_seen = version;
        run.joins_due = (run.refused.values())
            .map(|t| *t + retry)
            .filter(|t| *t > now)
            .min();
        let refused_lately = |w: &String| {
            (run.refused.get(w)).is_some_and(|t| now.saturating_duration_since(*t) <= retry)
        };
        let wanted: Vec<String> = (pool.iter())
            .filter(|w| !run.joined.contains(*w) && !run.joining.contains_key(*w))
            .filter(|w| !refused_lately(w))
            .cloned()
            .collect();
        for worker in wanted {
            let generation = members.get(&worker).map_or(0, |m| m.generation);
            run.joining.insert(worker.clone(), generation);
            self.out.push(Action::Join {
                job: id.to_string(),
                worker,
                generation,
                target: run.target.clone(),
            });
        }
    }

    /// Saves the job's workers at once when they changed, and its statistics every
    /// [`super::Config::save_every`].
    fn save(&mut self, id: &str, s: &ServeView, now: Instant) {
        let serving = |r: &Run| digest(r.joined.iter().filter(|w| self.may_serve(id, w)));
        let stale = self.runs.get(id).is_some_and(|r| s.workers != serving(r));
        let every = self.cfg.save_every;
        let due = |r: &Run| stale || now.saturating_duration_since(r.saved) >= every;
        if !self.runs.get(id).is_some_and(due) {
            return;
        }
        let workers = self.workers_of(id).unwrap_or_default();
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        run.saved = now;
        self.out.push(Action::Save {
            job: id.to_string(),
            workers,
            rate: run.rate(now),
            proc_ms: percentiles(&run.proc_ms),
        });
    }

    /// Probes the workers holding batches that have been quiet for [`super::Config::quiet`].
    pub(super) fn probe_stragglers(&mut self, now: Instant) {
        let load = &self.load;
        self.heard
            .retain(|w, _| load.get(w).is_some_and(|l| *l > 0));
        for worker in self.quiet_workers(now) {
            self.probing.insert(worker.clone());
            self.out.push(Action::Probe { worker });
        }
    }

    /// The workers holding batches that have been quiet for a while and are not being probed.
    fn quiet_workers(&self, now: Instant) -> BTreeSet<String> {
        let quiet = |w: &String| {
            (self.heard.get(w)).is_none_or(|t| now.saturating_duration_since(*t) > self.cfg.quiet)
        };
        (self.load.iter())
            .filter(|(w, l)| **l > 0 && !self.probing.contains(*w) && quiet(w))
            .map(|(w, _)| w.clone())
            .collect()
    }
}
