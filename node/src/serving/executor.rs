//! The inference lanes: a fixed set of threads that run every libtorch inference call of this
//! node, each taking the next task from shared queues.
//!
//! libtorch parallelises inside an operation with OpenMP, and OpenMP keeps a team of threads
//! per calling thread, spinning between operations. Calls from the runtime's pool of blocking
//! threads would start a team on each of them, and their spinning threads would take the CPU
//! from the one doing the work; a fixed set of calling threads keeps a fixed set of teams.
//!
//! How the node's `--threads` are divided (see [`Lanes::for_threads`]): by default one lane per
//! thread, each running libtorch on one thread, so that batches run side by side instead of
//! one batch's operations being split across threads. On a machine the node shares with its
//! async runtime and nats-server, a split operation waits at every step for its slowest
//! thread, and the thread the runtime took the core from is the slowest; side-by-side batches
//! only slow down by the CPU the others take.
//!
//! Online requests (urgent) go before job batches, up to their share of the thread's time
//! (see [`super::share`]); both queues are bounded and refuse work at once when full.

use super::share::{Gate, Share, DEFAULT_ONLINE_SHARE_PERCENT, HOLD};
use crate::error::JobError;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

/// Most urgent tasks (batches of online requests) waiting for the inference thread.
pub const URGENT_QUEUE: usize = 64;
/// Most other tasks (pieces of job batches, model loads) waiting for the inference thread.
pub const NORMAL_QUEUE: usize = 256;

/// What a task is, for the thread's division of its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Online requests' batches: first, within their share.
    Urgent,
    /// A piece of a job's batch: while these come, a job is being served.
    Job,
    /// Anything else (loading a model): in the job queue, but not a job's work.
    Other,
}

/// Waiting tasks: urgent ones (online requests) run before the others (batches of jobs).
struct Queues {
    urgent: VecDeque<Task>,
    normal: VecDeque<(Task, Kind)>,
    /// Most tasks each queue holds: `(urgent, normal)`.
    caps: (usize, usize),
}

impl Queues {
    /// The next task and its kind: urgent ones first while they have taken less than their
    /// share of the thread's time (see [`super::share`]). Past their share, while job work
    /// ran within [`HOLD`] (`held`), an urgent task waits for the job's next piece.
    fn pick(&mut self, share: &mut Share, held: bool) -> Option<(Task, Kind)> {
        let urgent_ok = share.urgent_first(Instant::now());
        if urgent_ok || (self.normal.is_empty() && !held) {
            if let Some(t) = self.urgent.pop_front() {
                return Some((t, Kind::Urgent));
            }
        }
        self.normal.pop_front()
    }
}

/// How many inference lanes, and libtorch threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes {
    /// Threads taking tasks.
    pub count: usize,
    /// libtorch (OpenMP) threads each lane's operations use; 0 leaves libtorch's setting.
    pub threads: usize,
}

impl Lanes {
    /// One lane that leaves libtorch's thread setting alone (tests, tools).
    pub const ONE: Lanes = Lanes {
        count: 1,
        threads: 0,
    };

    /// The default division of `threads`: `lanes` lanes if given, else one per thread; each
    /// lane gets `threads / lanes` libtorch threads (at least one).
    pub fn for_threads(threads: usize, lanes: Option<usize>) -> Lanes {
        let count = lanes.unwrap_or(threads).clamp(1, threads.max(1));
        Lanes {
            count,
            threads: (threads / count).max(1),
        }
    }
}

/// A handle to the inference lanes; cloning it shares them.
#[derive(Clone)]
pub struct Executor {
    shared: Arc<(Mutex<Queues>, Condvar)>,
    /// When the last urgent task was submitted.
    last_urgent: Arc<Mutex<Option<std::time::Instant>>>,
    /// Nanoseconds of online work done off the thread (decoding images), not yet counted in
    /// its share.
    charged: Arc<AtomicU64>,
    gate: Arc<Gate>,
}

impl Executor {
    /// Starts one lane, which lives as long as the process, with queues of [`URGENT_QUEUE`]
    /// and [`NORMAL_QUEUE`] tasks and the default online share.
    pub fn new() -> Executor {
        Self::with_share(DEFAULT_ONLINE_SHARE_PERCENT, Lanes::ONE)
    }

    /// Starts `lanes`, online work taking at most `percent` of each lane's time while jobs run.
    pub fn with_share(percent: u32, lanes: Lanes) -> Executor {
        Self::start((URGENT_QUEUE, NORMAL_QUEUE), percent, lanes)
    }

    /// Starts one lane with queues of at most `urgent` and `normal` waiting tasks; a task
    /// submitted to a full queue is refused at once with [`JobError::Overloaded`].
    #[cfg(test)]
    pub fn with_caps(urgent: usize, normal: usize) -> Executor {
        Self::start((urgent, normal), DEFAULT_ONLINE_SHARE_PERCENT, Lanes::ONE)
    }

    fn start((urgent, normal): (usize, usize), percent: u32, lanes: Lanes) -> Executor {
        let queues = Queues {
            urgent: VecDeque::with_capacity(urgent.min(64)),
            normal: VecDeque::with_capacity(normal.min(64)),
            caps: (urgent, normal),
        };
        let shared = Arc::new((Mutex::new(queues), Condvar::new()));
        let charged = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Gate::new(Instant::now()));
        let global = tch::get_num_threads();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let count = lanes.count.max(1);
        for lane in 0..count {
            let (queues, off_thread, tells) = (shared.clone(), charged.clone(), gate.clone());
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("tch-infer-{lane}"))
                .spawn(move || {
                    if lanes.threads > 0 {
                        // This thread's own OpenMP setting, fixed now (libtorch reads its
                        // process-wide setting into a thread once, on first use).
                        tch::set_num_threads(lanes.threads as i32);
                        let _ = tch::get_num_threads();
                    }
                    let _ = ready.send(());
                    drop(ready);
                    work(&queues, percent, &off_thread, &tells)
                })
                .expect("start an inference lane");
        }
        drop(ready_tx);
        // Every lane has fixed its setting: the process-wide one (which threads started later,
        // like training's, take) is the node's again.
        for _ in 0..count {
            let _ = ready_rx.recv();
        }
        if lanes.threads > 0 {
            tch::set_num_threads(global);
        }
        Executor {
            shared,
            last_urgent: Arc::default(),
            charged,
            gate,
        }
    }

    /// Runs `f`, a piece of a job's batch, on the inference thread after the tasks queued
    /// before it, and waits for it without blocking the runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit(f, Kind::Job).await
    }

    /// Like [`Executor::run`] for work that is not a job's (loading a model): it does not
    /// count as a job being served.
    pub async fn run_other<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit(f, Kind::Other).await
    }

    /// Like [`Executor::run`], ahead of every task not urgent (an online request waits at most
    /// for the batch running now).
    pub async fn run_urgent<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit(f, Kind::Urgent).await
    }

    /// Whether a new online request may be taken in now, with `busy` in progress (see
    /// [`Gate::admits`]); the node sheds it at once otherwise.
    pub fn admits_online(&self, busy: usize, busy_while_job: usize) -> bool {
        self.gate.admits(Instant::now(), busy, busy_while_job)
    }

    /// Counts `took` of online work done on another thread (decoding a request's images) in
    /// the online share of this thread's time, so that the share bounds all the CPU online
    /// requests take from jobs, not only their model time.
    pub fn charge_urgent(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.charged.fetch_add(ns, Ordering::Relaxed);
    }

    /// Whether an urgent task was submitted within `window`: long work should then run in
    /// short pieces, so that the next urgent task need not wait long.
    pub fn urgent_within(&self, window: std::time::Duration) -> bool {
        let last = self.last_urgent.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|t| t.elapsed() < window)
    }

    /// Tasks waiting: urgent, then the others.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        (q.urgent.len(), q.normal.len())
    }

    async fn submit<T, F>(&self, f: F, kind: Kind) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(out);
        });
        {
            let (lock, ready) = &*self.shared;
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (urgent_cap, normal_cap) = q.caps;
            if kind == Kind::Urgent {
                *self.last_urgent.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                if q.urgent.len() >= urgent_cap {
                    return Err(full("online", urgent_cap));
                }
                q.urgent.push_back(task);
            } else {
                if q.normal.len() >= normal_cap {
                    return Err(full("job", normal_cap));
                }
                q.normal.push_back((task, kind));
            }
            ready.notify_one();
        }
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(JobError::Internal("libtorch panicked".into())),
            Err(_) => Err(JobError::Internal(
                "the inference thread has stopped".into(),
            )),
        }
    }
}

/// One inference lane: runs queued tasks one at a time, for ever.
fn work(queues: &(Mutex<Queues>, Condvar), percent: u32, off_thread: &AtomicU64, gate: &Gate) {
    let mut share = Share::new(Instant::now(), percent);
    // When the last piece of a job's batch ended.
    let mut last_job: Option<Instant> = None;
    loop {
        let (task, kind) = {
            let (lock, ready) = queues;
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let off = off_thread.swap(0, Ordering::Relaxed);
                if off > 0 {
                    let now = Instant::now();
                    share.add(true, Duration::from_nanos(off), now);
                    gate.set_over_share(!share.urgent_first(now));
                }
                let hold = last_job.map(|t| t + HOLD);
                let held = hold.is_some_and(|h| Instant::now() < h);
                if let Some(t) = q.pick(&mut share, held) {
                    break t;
                }
                q = match hold.filter(|_| held && !q.urgent.is_empty()) {
                    Some(h) => {
                        let left = h.saturating_duration_since(Instant::now());
                        let woke = ready.wait_timeout(q, left);
                        woke.unwrap_or_else(|e| e.into_inner()).0
                    }
                    None => ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                };
            }
        };
        let started = Instant::now();
        task();
        let now = Instant::now();
        if kind == Kind::Job && last_job.is_none_or(|t| started >= t + HOLD) {
            // A job starts after a pause: the online share counts from now, not from the
            // time online work had the thread to itself.
            share = Share::new(started, percent);
        }
        share.add(kind == Kind::Urgent, now - started, now);
        gate.set_over_share(!share.urgent_first(now));
        if kind == Kind::Job {
            last_job = Some(now);
            gate.job_ran(now);
        }
    }
}

fn full(which: &str, cap: usize) -> JobError {
    JobError::Overloaded(format!(
        "the inference thread's queue of {which} tasks holds at most {cap}, and it is full"
    ))
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_in_order_on_one_thread_and_panics_are_errors() {
        let exec = Executor::new();
        let a = exec.run(|| std::thread::current().id()).await.unwrap();
        let b = exec.run(|| std::thread::current().id()).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a, std::thread::current().id());
        let err = exec
            .run(|| panic!("boom"))
            .await
            .map(|_: ()| ())
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(exec.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn lanes_run_tasks_side_by_side_with_their_own_threads_setting() {
        let before = tch::get_num_threads();
        let lanes = Lanes {
            count: 2,
            threads: 1,
        };
        let exec = Executor::with_share(DEFAULT_ONLINE_SHARE_PERCENT, lanes);
        assert_eq!(
            tch::get_num_threads(),
            before,
            "the process-wide setting is kept"
        );
        // Each task waits for the other: they finish only if two lanes run them at once.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let task = |b: Arc<std::sync::Barrier>| {
            move || {
                b.wait();
                (std::thread::current().id(), tch::get_num_threads())
            }
        };
        let (a, b) = tokio::join!(
            exec.run(task(barrier.clone())),
            exec.run(task(barrier.clone()))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.0, b.0);
        assert_eq!((a.1, b.1), (1, 1));
    }

    #[test]
    fn threads_are_divided_into_lanes() {
        let lanes = |threads, given| {
            let l = Lanes::for_threads(threads, given);
            (l.count, l.threads)
        };
        assert_eq!(lanes(2, None), (2, 1));
        assert_eq!(lanes(8, None), (8, 1));
        assert_eq!(lanes(8, Some(2)), (2, 4));
        assert_eq!(lanes(8, Some(3)), (3, 2));
        assert_eq!(lanes(1, None), (1, 1));
        assert_eq!(lanes(4, Some(9)), (4, 1));
    }

    async fn wait_for(exec: &Executor, queued: (usize, usize)) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while exec.queued() != queued {
            assert!(std::time::Instant::now() < deadline, "{:?}", exec.queued());
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn loading_a_model_is_not_a_job_being_served() {
        let exec = Executor::with_share(1, Lanes::ONE);
        let pause = || std::thread::sleep(std::time::Duration::from_millis(50));
        exec.run_other(pause).await.unwrap();
        exec.run_urgent(pause).await.unwrap();
        exec.run_urgent(pause).await.unwrap();
        assert!(
            exec.admits_online(0, 1),
            "without a job online work has the thread, past any share"
        );
    }

    /// Occupies the thread with a task that runs until the returned sender is used.
    async fn hold(
        exec: &Executor,
    ) -> (
        tokio::task::JoinHandle<Result<(), JobError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let exec = exec.clone();
            async move {
                exec.run(move || {
                    started_tx.send(()).unwrap();
                    gate_rx.recv().unwrap()
                })
                .await
            }
        });
        while started_rx.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        (first, gate_tx)
    }

    #[tokio::test]
    async fn urgent_tasks_overtake_queued_ones() {
        let exec = Executor::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the thread until every task is queued.
        let (first, gate_tx) = hold(&exec).await;
        let log = |name: &'static str| {
            let order = order.clone();
            move || order.lock().unwrap().push(name)
        };
        let normal = tokio::spawn({
            let exec = exec.clone();
            let f = log("normal");
            async move { exec.run(f).await }
        });
        wait_for(&exec, (0, 1)).await;
        let urgent = tokio::spawn({
            let exec = exec.clone();
            let f = log("urgent");
            async move { exec.run_urgent(f).await }
        });
        wait_for(&exec, (1, 1)).await;
        gate_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        normal.await.unwrap().unwrap();
        urgent.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["urgent", "normal"]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_thread_goes_on() {
        let exec = Executor::with_caps(1, 2);
        let (first, gate_tx) = hold(&exec).await;
        let queued: Vec<_> = (0..2)
            .map(|i| {
                tokio::spawn({
                    let exec = exec.clone();
                    async move { exec.run(move || i).await }
                })
            })
            .collect();
        let urgent = tokio::spawn({
            let exec = exec.clone();
            async move { exec.run_urgent(|| 9).await }
        });
        wait_for(&exec, (1, 2)).await;
        let refused = exec.run(|| 0).await.unwrap_err();
        assert!(matches!(refused, JobError::Overloaded(_)), "{refused}");
        assert!(refused.to_string().contains("at most 2"), "{refused}");
        let refused = exec.run_urgent(|| 0).await.unwrap_err();
        assert!(matches!(refused, JobError::Overloaded(_)), "{refused}");
        gate_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(urgent.await.unwrap().unwrap(), 9);
        for (i, q) in queued.into_iter().enumerate() {
            assert_eq!(q.await.unwrap().unwrap(), i);
        }
        assert_eq!(exec.run(|| 5).await.unwrap(), 5);
    }
}
