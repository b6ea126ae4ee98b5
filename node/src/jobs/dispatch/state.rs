//! The dispatcher's state: the jobs it runs, the batches in flight, the workers it may use.

use super::*;

/// The dispatcher's state.
#[derive(Default)]
pub(super) struct State {
    pub(super) runs: BTreeMap<String, Run>,
    /// Batches in flight per worker.
    pub(super) load: BTreeMap<String, usize>,
    /// How many batches each worker runs at once (as it said when it joined a job) and how
    /// long they take: how many it may hold.
    pub(super) pace: BTreeMap<String, super::Pace>,
    /// Every batch in flight, by flight number.
    pub(super) flights: BTreeMap<u64, Flight>,
    pub(super) next_flight: u64,
    /// Workers alive (not suspected) in the latest view.
    pub(super) alive: BTreeSet<String>,
    /// The fair-time policy in force.
    pub(super) policy: QpsPolicy,
    /// Under `qps local`: the workers each job may use, and when they were last divided.
    pub(super) divided: BTreeMap<String, BTreeSet<String>>,
    pub(super) divided_at: Option<Instant>,
    /// Workers being probed now.
    pub(super) probing: BTreeSet<String>,
    /// When each worker was last heard from (an answer, a probe answered) or given a batch
    /// while it held none: one holding batches and quiet for [`QUIET`] is probed.
    pub(super) heard: BTreeMap<String, Instant>,
    /// Every member's state and generation in the latest view.
    pub(super) members: super::losses::Members,
    /// Every member's host in the latest view.
    pub(super) hosts: BTreeMap<String, String>,
}

/// How often `qps local` divides the workers again as costs change.
const REDIVIDE: Duration = Duration::from_secs(5);

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

/// Whether `worker` may take a batch of job `id` under `policy` and the division of workers.
pub(super) fn may_serve(
    policy: QpsPolicy,
    divided: &BTreeMap<String, BTreeSet<String>>,
    id: &str,
    worker: &str,
) -> bool {
    policy == QpsPolicy::Global || divided.get(id).is_none_or(|ws| ws.contains(worker))
}

/// How far, in batches, a job's virtual queries may trail the leader's.
const LAG_BATCHES: f64 = 8.0;

impl State {
    /// Lifts a job that trails the leader by more than [`LAG_BATCHES`] of its batches (it could
    /// not be served for a while: no worker, a failure) so that it is not owed a burst.
    pub(super) fn level_virtual_queries(&mut self) {
        let lead = self.runs.values().map(|r| r.vq).fold(0.0, f64::max);
        for run in self.runs.values_mut() {
            let lag = LAG_BATCHES * f64::from(run.spec.batch) / f64::from(run.spec.weight.max(1));
            run.vq = run.vq.max(lead - lag);
        }
    }

    /// Sends again at once the batches in flight on workers that are no longer in the pool
    /// (suspected, failed, left, or training) instead of waiting for their deadline; a late
    /// answer to an abandoned flight is still counted, once.
    pub(super) fn abandon_lost(&mut self) {
        let lost: Vec<u64> = self
            .flights
            .iter()
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
            if let Some(run) = self.runs.get_mut(&f.job) {
                tracing::info!(job = %f.job, batch = f.batch.0, worker = %f.worker, "worker lost, sending again");
                run.in_flight = run.in_flight.saturating_sub(1);
                let lost = super::losses::Lost {
                    batch: f.batch,
                    worker: f.worker,
                    generation: f.generation,
                    started: f.started,
                    at: Instant::now(),
                    why: "it stopped answering while it ran the batch".into(),
                };
                super::losses::keep(&mut run.lost, lost);
                run.send_again(f.batch);
            }
        }
    }

    /// Forgets the batches in flight of a job that ended (a late answer finds no flight and
    /// is counted at most once, if the job runs again).
    pub(super) fn forget_flights(&mut self, job: &str) {
        let load = &mut self.load;
        self.flights.retain(|_, f| {
            if f.job != job {
                return true;
            }
            if let Some(l) = load.get_mut(&f.worker) {
                *l = l.saturating_sub(1);
            }
            false
        });
    }

    /// Under `qps local`, divides the pool among the running jobs when the jobs or the pool
    /// changed, or every [`REDIVIDE`] as the measured costs move.
    pub(super) fn divide(&mut self, pool: &BTreeSet<String>) {
        if self.policy == QpsPolicy::Global {
            self.divided.clear();
            return;
        }
        let now = Instant::now();
        let same_jobs = self.divided.keys().eq(self.runs.keys());
        let covered: BTreeSet<&String> = self.divided.values().flatten().collect();
        let same_pool = covered.len() == pool.len() && pool.iter().all(|w| covered.contains(w));
        if same_jobs && same_pool && self.divided_at.is_some_and(|t| now - t < REDIVIDE) {
            return;
        }
        let claims: Vec<fair::Claim> = self
            .runs
            .iter_mut()
            .map(|(id, r)| fair::Claim {
                job: id.clone(),
                weight: f64::from(r.spec.weight.max(1)),
                cost: r.cost(now),
            })
            .collect();
        let pool: BTreeMap<String, String> = (pool.iter())
            .map(|w| {
                (
                    w.clone(),
                    self.hosts.get(w).cloned().unwrap_or_else(|| w.clone()),
                )
            })
            .collect();
        let divided = fair::partition(&pool, &claims, &self.divided);
        if divided != self.divided {
            tracing::info!(?divided, ?claims, "qps local: workers divided");
        }
        self.divided = divided;
        self.divided_at = Some(now);
    }
}

/// How long a worker that could not join a job is left alone before it is asked again.
pub(super) const JOIN_RETRY: Duration = Duration::from_secs(5);

/// What the dispatcher knows of one running inference job.
pub(super) struct Run {
    pub(super) spec: ServeSpec,
    pub(super) target: ServeTarget,
    pub(super) joined: BTreeSet<String>,
    /// Workers asked to join and not answered yet, with their generation when asked: a join
    /// to a worker that has since died or restarted is forgotten (its answer, if it ever
    /// comes, is ignored), so that the new process is asked at once.
    pub(super) joining: BTreeMap<String, u64>,
    /// Workers that refused to join, and when: asked again only after [`JOIN_RETRY`].
    pub(super) refused: BTreeMap<String, Instant>,
    /// The last reason a worker gave for not joining.
    pub(super) refusal: Option<String>,
    pub(super) in_flight: usize,
    /// Batches recorded as pending and waiting to be sent (again, or cut ahead).
    pub(super) resend: VecDeque<Batch>,
    /// Batches lost while a worker held them, waiting for membership to say if it died.
    pub(super) lost: VecDeque<super::losses::Lost>,
    /// Batches with a worker death recorded in the job record.
    pub(super) dead: BTreeSet<u64>,
    /// Lost batches with a death recorded, held until membership says whether the worker
    /// that lost them now died too (at most `deaths::HOLD`).
    pub(super) held: VecDeque<(Batch, Instant)>,
    /// Answered batches not yet counted in the record (counted in groups).
    pub(super) uncounted: Vec<Answered>,
    pub(super) exhausted: bool,
    /// Queries sent, divided by the weight, since the job started competing (fair queueing).
    pub(super) vq: f64,
    /// Answered batches in the rate window: when, queries, processing milliseconds.
    pub(super) answered: VecDeque<(Instant, u32, f64)>,
    pub(super) proc_ms: VecDeque<f64>,
    /// The median of `proc_ms`, refreshed every [`super::COUNT_EVERY`] (not sorted per batch).
    pub(super) median_ms: f64,
    pub(super) saved: Instant,
    /// When the job was last found complete and its finishing started.
    pub(super) finishing: Option<Instant>,
}

impl Run {
    /// Queues a lost batch to be sent again: at once, unless a worker already died holding it
    /// or an earlier loss of it still waits for membership's verdict, in which case it waits
    /// (see `deaths::release`), so that a batch that kills its workers does not walk
    /// through the cluster faster than membership confirms deaths (a probe finds a dead worker
    /// much sooner than membership declares it).
    pub(super) fn send_again(&mut self, batch: Batch) {
        let losses = self.lost.iter().filter(|l| l.batch.0 == batch.0).count();
        if self.dead.contains(&batch.0) || losses > 1 {
            self.held.push_back((batch, Instant::now()));
        } else {
            self.resend.push_front(batch);
        }
    }

    /// Whether batch `id` may kill its worker: one holding it died or was lost.
    pub(super) fn suspect(&self, id: u64) -> bool {
        self.dead.contains(&id) || self.lost.iter().any(|l| l.batch.0 == id)
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while self
            .answered
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
        {
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
}
