//! Which online requests a node takes in, which it sheds with `overloaded`, and when it leaves
//! the `idunno-infer` queue group altogether.
//!
//! A node takes a request while it has a free slot (`--infer-max-inflight`) and, while a job
//! is being served, while online work is within its share ([`super::share`]). Shedding a
//! request still costs the node its bytes, an answer and the broker two hops, and under a
//! flood that is nearly all the cost, taken from the jobs. So once a node sheds, it leaves the
//! queue group: it drains its subscription (the requests already on their way are still
//! answered, none is lost) and joins again when it has room, that is half its slots free and
//! online work back within its share. A request that finds no node in the group is answered
//! "no responders" by NATS itself, which clients read as `overloaded`
//! ([`bus_client::infer`]).

use crate::serving::executor::Executor;
use crate::serving::share::busy_while_job;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How often a node out of the queue group looks whether it has room again.
pub const ROOM_POLL: Duration = Duration::from_millis(10);

/// The admission rules of one node, with the `overloaded` answers encoded once.
pub struct Admission {
    slots: Arc<Semaphore>,
    max_inflight: usize,
    while_job: usize,
    exec: Executor,
    full: Bytes,
    over_share: Bytes,
}

impl Admission {
    /// Rules for `max_inflight` slots and an online share of `percent` while jobs run on
    /// `exec`; `full` and `over_share` are the encoded answers for a shed request.
    pub fn new(
        max_inflight: usize,
        percent: u32,
        exec: Executor,
        full: Bytes,
        over_share: Bytes,
    ) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_inflight)),
            max_inflight,
            while_job: busy_while_job(max_inflight, percent),
            exec,
            full,
            over_share,
        }
    }

    fn busy(&self) -> usize {
        self.max_inflight
            .saturating_sub(self.slots.available_permits())
    }

    /// A slot for a new request, or the answer that sheds it.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, Bytes> {
        if !self.exec.admits_online(self.busy(), self.while_job) {
            return Err(self.over_share.clone());
        }
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.full.clone())
    }

    /// Whether a node out of the queue group should join it again: half its slots are free
    /// (so it does not leave again at once) and a new request would be taken in.
    pub fn has_room(&self) -> bool {
        let free = self.slots.available_permits();
        free >= self.max_inflight.div_ceil(2)
            && self.exec.admits_online(self.busy(), self.while_job)
    }

    /// Waits until [`Admission::has_room`]; false if `shutdown` comes first.
    pub async fn room(&self, shutdown: &CancellationToken) -> bool {
        while !self.has_room() {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(ROOM_POLL) => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize) -> Admission {
        let (full, share) = (Bytes::from_static(b"full"), Bytes::from_static(b"share"));
        Admission::new(max, 5, Executor::new(), full, share)
    }

    #[tokio::test]
    async fn requests_are_taken_until_the_slots_are_full_and_room_comes_back_at_half() {
        let a = admission(4);
        let held: Vec<_> = (0..4).map(|_| a.take().expect("a free slot")).collect();
        assert_eq!(a.take().err(), Some(Bytes::from_static(b"full")));
        assert!(!a.has_room());
        let mut held = held.into_iter();
        drop(held.next());
        assert!(!a.has_room(), "one of four free is not room yet");
        drop(held.next());
        assert!(a.has_room(), "half free is room");
        assert!(a.room(&CancellationToken::new()).await);
    }

    #[tokio::test]
    async fn waiting_for_room_ends_at_shutdown() {
        let a = admission(1);
        let _held = a.take().expect("a free slot");
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!a.room(&stop).await);
    }
}
