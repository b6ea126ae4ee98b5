//! IDunno's data-parallel training exchange, sans-IO.
//!
//! The workers of one training job (`idunno train … --workers N`) each compute the gradient of
//! their shard of every step's batch. [`exchange::Exchange`] is one worker's side of the
//! all-reduce and of regrouping, a plain state machine fed the group (from the job record),
//! the trainer's snapshots and contributions, the bus's messages and the clock, and returning
//! what to publish and what to tell the trainer. The shell that drives it with the bus lives in
//! the node (`jobs::dp`).
//!
//! **The all-reduce** is an all-gather: each worker publishes its whole contribution (in parts
//! under the server's `max_payload`) once, and every worker sums all of them in rank order.
//! Every worker thus computes the same sum, bit for bit, and applies the same update, so the
//! replicas never drift; a lost worker leaves nothing half-reduced behind. For the 2 to 3
//! workers of a small cluster it moves `(N−1)·G` bytes into each worker per step against
//! `2(N−1)/N·G` for a reduce-scatter + all-gather ring (`G`: the gradient's size): the same
//! at 2 workers, a third more at 3, for a protocol with no chunk owners to lose.
//!
//! **Regrouping**: when the group changes (a worker lost, or a free one joining), every member
//! stops its step in flight and says which state it holds (steps applied and a digest). The
//! member that applied the most steps (the lowest rank among equals) gives its state to those
//! that hold another; then all go on from that step, each on its new shard. No step is lost
//! (a step any worker applied is in the state everyone adopts) and none is applied twice
//! (everyone goes on from the step after it).

#![warn(missing_docs)]

mod assembler;
pub mod exchange;

pub use assembler::Assembler;
pub use exchange::{Config, Exchange, In, Out, Snapshot};

/// A digest of a state's values (FNV-1a over their bits): two members whose states have the
/// same digest and steps hold the same state.
pub fn digest(values: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        h ^= u64::from(v.to_bits());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ values.len() as u64
}
