//! IDunno's scheduler core, sans-IO: decisions without a bus, a clock or a runtime.
//!
//! - [`dispatcher`]: the coordinator's dispatcher of inference jobs, a plain struct fed the
//!   job records, the membership view, replies and clock ticks, returning [`dispatcher::Action`]s
//!   (join, leave, cut, send, count, finish, …) for an async shell to perform. Fair time between
//!   jobs, `qps local`, stragglers, workers lost mid-batch and counting each batch once all live
//!   here, with unit tests on injected time.
//! - [`batches`]: what cutting and counting do to a job's record, and batch statistics.
//! - [`assign`]: which worker a training or import job goes to.
//! - [`attempts`]: what counts as a worker's death for a training or import job.
//! - [`fair`]: the `qps local` division of workers among jobs.
//! - [`group`]: which members of a data-parallel training group are lost and which free
//!   workers join.
//! - [`sim`]: a deterministic simulated cluster of workers for the dispatcher's tests and its
//!   scale simulation.

#![warn(missing_docs)]

pub mod assign;
pub mod attempts;
pub mod batches;
pub mod dispatcher;
pub mod fair;
pub mod group;
pub mod sim;

pub use dispatcher::{Action, Dispatcher, Failure};
