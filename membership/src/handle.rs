//! The membership task's handle: commands with oneshot replies over a bounded channel.

use super::detector::DetectorStats;
use bus_schemas::membership::{MemberChange, ViewSnapshot};
use tokio::sync::{broadcast, mpsc, oneshot};

/// This node's identity and counters, for `stat`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Current generation.
    pub generation: u64,
    /// Current incarnation.
    pub incarnation: u64,
    /// Whether the node is a member.
    pub member: bool,
    /// Detector counters.
    pub stats: DetectorStats,
    /// Current simulated loss.
    pub drop_rate: f64,
}

/// What the task is asked to do.
pub(super) enum Command {
    View(oneshot::Sender<ViewSnapshot>),
    Identity(oneshot::Sender<Identity>),
    Leave(oneshot::Sender<bool>),
    Join(oneshot::Sender<bool>),
    DropRate(f64),
}

/// The only API of the membership task. Cheap to clone.
#[derive(Clone)]
pub struct MembershipHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) changes: broadcast::Sender<MemberChange>,
}

/// Why the membership task could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the membership task has stopped")]
pub struct Stopped;

impl MembershipHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every change of a member's record in this node's view, as the view has it right after
    /// the change. A receiver that falls behind misses some (it is told it lagged) and should
    /// read the whole [`view`](Self::view) again.
    pub fn changes(&self) -> broadcast::Receiver<MemberChange> {
        self.changes.subscribe()
    }

    /// The node's whole view.
    pub async fn view(&self) -> Result<ViewSnapshot, Stopped> {
        self.ask(Command::View).await
    }

    /// The node's identity and counters.
    pub async fn identity(&self) -> Result<Identity, Stopped> {
        self.ask(Command::Identity).await
    }

    /// Leaves the cluster; false if the node was not a member.
    pub async fn leave(&self) -> Result<bool, Stopped> {
        self.ask(Command::Leave).await
    }

    /// Joins again with a new generation; false if the node was a member already.
    pub async fn join(&self) -> Result<bool, Stopped> {
        self.ask(Command::Join).await
    }

    /// Sets the simulated loss of incoming failure-detector messages.
    pub async fn set_drop_rate(&self, rate: f64) -> Result<(), Stopped> {
        self.tx
            .send(Command::DropRate(rate))
            .await
            .map_err(|_| Stopped)
    }
}
