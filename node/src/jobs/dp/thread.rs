//! The training thread of a data-parallel attempt: it holds the model and does what the
//! exchange says (hand over a snapshot, adopt a state, contribute to a step, apply a sum);
//! as rank 0 it also sends progress, the checkpoint at the end of each epoch and, after the
//! last step, the evaluated model.

use super::super::train_run::{done, Msg, StepRate};
use super::super::JobError;
use crate::ml::history::EpochMeter;
use crate::ml::train::{Samples, Trainer};
use bus_schemas::jobs::TrainSpec;
use idunno_dp::{digest, Snapshot};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

/// What the exchange tells the training thread.
#[derive(Debug)]
pub enum ToTrainer {
    /// Drop the step in flight; send a snapshot for this generation.
    Regroup(u32),
    /// Take this state, `applied` steps in.
    Adopt(u64, Arc<Vec<f32>>),
    /// Contribute to `step` as rank `rank` of `workers` in generation `generation`.
    Go {
        generation: u32,
        rank: usize,
        workers: usize,
        step: u64,
    },
    /// The sum of the contributions to `step`, which took `waited` to gather.
    Reduced {
        generation: u32,
        step: u64,
        sum: Vec<f32>,
        waited: Duration,
    },
}

/// What the training thread tells the exchange.
#[derive(Debug)]
pub enum ToExchange {
    /// The contribution's size, once the model is built.
    Ready(usize),
    /// The answer to a regroup.
    Snapshot(Snapshot),
    /// A contribution.
    Contribution {
        generation: u32,
        step: u64,
        values: Vec<f32>,
    },
}

/// The thread's ends of its channels.
pub struct Io {
    pub rx: Receiver<ToTrainer>,
    pub exchange: Sender<ToExchange>,
    pub duties: Sender<Msg>,
}

/// Where this worker stands in its group.
#[derive(Debug, Clone, Copy)]
struct Plan {
    generation: u32,
    rank: usize,
    workers: usize,
}

/// The thread's state between messages.
struct Thread<'a> {
    trainer: Trainer,
    spec: &'a TrainSpec,
    test: Option<Samples>,
    io: &'a Io,
    total: u64,
    steps: u64,
    plan: Option<Plan>,
    finished: bool,
    resumed_sent: bool,
    rate: StepRate,
    meter: Option<EpochMeter>,
}

/// Runs the thread until `halt` or until its channels close.
pub fn run(
    trainer: Trainer,
    spec: &TrainSpec,
    test: Option<Samples>,
    io: &Io,
    halt: &AtomicBool,
) -> Result<(), JobError> {
    let (params, _, len) = trainer.sizes();
    tracing::debug!(params, contribution = len, "data-parallel trainer ready");
    send(io, ToExchange::Ready(len))?;
    let mut t = Thread {
        total: trainer.total_steps(),
        steps: trainer.steps_per_epoch().max(1),
        trainer,
        spec,
        test,
        io,
        plan: None,
        finished: false,
        resumed_sent: false,
        rate: StepRate::new(),
        meter: None,
    };
    while !halt.load(Ordering::Relaxed) {
        match io.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => t.handle(m)?,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err(JobError::Stopped),
        }
    }
    Err(JobError::Stopped)
}

fn send(io: &Io, m: ToExchange) -> Result<(), JobError> {
    io.exchange.blocking_send(m).map_err(|_| JobError::Stopped)
}

impl Thread<'_> {
    fn applied(&self) -> u64 {
        self.trainer.history.len() as u64
    }

    fn handle(&mut self, msg: ToTrainer) -> Result<(), JobError> {
        match msg {
            ToTrainer::Regroup(generation) => {
                self.plan = None;
                let state = self.trainer.state();
                let snap = Snapshot {
                    generation,
                    applied: self.applied(),
                    digest: digest(&state),
                    state: Arc::new(state),
                };
                send(self.io, ToExchange::Snapshot(snap))
            }
            ToTrainer::Adopt(at, state) => {
                self.meter = None;
                (self.trainer.load_state(at, &state))
                    .map_err(|e| JobError::Internal(format!("cannot adopt a state: {e}")))
            }
            ToTrainer::Go {
                generation,
                rank,
                workers,
                step,
            } => self.go(
                Plan {
                    generation,
                    rank,
                    workers,
                },
                step,
            ),
            ToTrainer::Reduced {
                generation,
                step,
                sum,
                waited,
            } => self.reduced(generation, step, &sum, waited),
        }
    }

    fn go(&mut self, p: Plan, step: u64) -> Result<(), JobError> {
        if step != self.applied() {
            return Err(JobError::Internal(format!(
                "told to go on from step {step}, at step {}",
                self.applied()
            )));
        }
        self.plan = Some(p);
        if p.rank == 0 && !self.resumed_sent {
            self.resumed_sent = true;
            let _ = (self.io.duties).blocking_send(Msg::Resumed((step / self.steps) as u32));
        }
        next(&mut self.trainer, p, self.total, self.io)?;
        self.finish_if_done(p)
    }

    fn reduced(
        &mut self,
        generation: u32,
        step: u64,
        sum: &[f32],
        waited: Duration,
    ) -> Result<(), JobError> {
        let applied = self.applied();
        let Some(p) = self
            .plan
            .filter(|p| p.generation == generation && step == applied)
        else {
            return Ok(()); // of a generation this worker has left behind
        };
        let record = self.trainer.apply(step, sum, p.workers);
        self.rate.step(waited);
        let epoch = (step / self.steps) as u32;
        let first = u64::from(epoch) * self.steps;
        let history = &self.trainer.history;
        let m = match &mut self.meter {
            Some(m) if m.epoch() == epoch => m,
            slot => slot.insert(EpochMeter::replaying(
                epoch,
                self.steps,
                &history[first as usize..step as usize],
            )),
        };
        let report = m.add(&record);
        next(&mut self.trainer, p, self.total, self.io)?;
        if p.rank != 0 {
            return Ok(());
        }
        let (applied, epoch_end) = (step + 1, report.step == report.steps);
        if self.rate.due() || epoch_end {
            let stats = self.rate.stats(p.workers as u32, applied, p.generation);
            let _ = self.io.duties.try_send(Msg::Step(report, stats));
        }
        if epoch_end && applied < self.total {
            let epochs = (applied / self.steps) as u32;
            let bytes = self.trainer.checkpoint(epochs);
            let _ = self.io.duties.blocking_send(Msg::Checkpoint(epochs, bytes));
        }
        self.finish_if_done(p)
    }

    /// Rank 0, once every step is applied: evaluates and sends the model (once).
    fn finish_if_done(&mut self, p: Plan) -> Result<(), JobError> {
        if self.applied() < self.total || p.rank != 0 || self.finished {
            return Ok(());
        }
        self.finished = true;
        let done = done(&mut self.trainer, self.spec, self.test.as_ref())?;
        let _ = self.io.duties.blocking_send(Msg::Done(Box::new(done)));
        Ok(())
    }
}

/// Contributes to the next step, if there is one.
fn next(trainer: &mut Trainer, p: Plan, total: u64, io: &Io) -> Result<(), JobError> {
    let step = trainer.history.len() as u64;
    if step >= total {
        return Ok(());
    }
    let values = trainer.contribution(step, p.rank, p.workers)?;
    let generation = p.generation;
    send(
        io,
        ToExchange::Contribution {
            generation,
            step,
            values,
        },
    )
}
