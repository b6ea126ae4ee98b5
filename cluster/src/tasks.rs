//! Supervised tasks. Every long-lived task of a node belongs to a [`Tasks`] owner, which stops
//! it (through the shutdown token the task was given) and awaits it. A service task that ends
//! while the node runs, with an error, by returning or by panicking, stops the whole node:
//! [`Tasks::run`] cancels the token, awaits every other task and returns what happened, and the
//! node exits non-zero rather than going on half alive.

use std::future::Future;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// Why a node stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A service returned while the node ran.
    #[error("{name} ended while the node ran")]
    Ended {
        /// The task.
        name: &'static str,
    },
    /// A task failed.
    #[error("{name} failed: {}", crate::error::chain(source.as_ref()))]
    Failed {
        /// The task.
        name: &'static str,
        /// Its error.
        source: crate::error::BoxError,
    },
    /// A task panicked.
    #[error("{name} panicked: {message}")]
    Panicked {
        /// The task.
        name: &'static str,
        /// The panic's message.
        message: String,
    },
}

/// What a task is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Runs until the token is cancelled: ending sooner stops the node.
    Service,
    /// Does something and ends (creating a stream, say): only an error stops the node.
    Once,
}

struct Ended {
    name: &'static str,
    kind: Kind,
    result: Result<(), crate::error::BoxError>,
}

/// The owner of a group of tasks that share one shutdown token.
pub struct Tasks {
    set: JoinSet<Ended>,
    names: Vec<(tokio::task::Id, &'static str)>,
    stop: CancellationToken,
}

impl Tasks {
    /// An owner whose tasks stop when `stop` is cancelled; it cancels `stop` itself when one
    /// of them fails.
    pub fn new(stop: CancellationToken) -> Self {
        Tasks {
            set: JoinSet::new(),
            names: Vec::new(),
            stop,
        }
    }

    /// The token the tasks stop on.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns a service: a task that runs until the token is cancelled.
    pub fn service<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<crate::error::BoxError>,
    {
        self.spawn(name, Kind::Service, task);
    }

    /// Spawns a task that does something and ends; only its error stops the node.
    pub fn once<F, E>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<crate::error::BoxError>,
    {
        self.spawn(name, Kind::Once, task);
    }

    fn spawn<F, E>(&mut self, name: &'static str, kind: Kind, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<crate::error::BoxError>,
    {
        let handle = self.set.spawn(async move {
            let result = task.await.map_err(Into::into);
            Ended { name, kind, result }
        });
        self.names.push((handle.id(), name));
    }

    /// Runs until the token is cancelled or a task fails; then cancels the token, awaits every
    /// task and returns the first failure, if any.
    pub async fn run(mut self) -> Result<(), TaskError> {
        let mut first = None;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                ended = self.set.join_next_with_id() => match ended {
                    None => {
                        // Nothing left to run: wait for the stop like a service would.
                        self.stop.cancelled().await;
                        break;
                    }
                    Some(ended) => {
                        if let Some(e) = self.failure(ended, false) {
                            tracing::error!("{e}; stopping the node");
                            first = Some(e);
                            self.stop.cancel();
                            break;
                        }
                    }
                },
            }
        }
        while let Some(ended) = self.set.join_next_with_id().await {
            if let Some(e) = self.failure(ended, true) {
                tracing::error!("while stopping: {e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// What a task's end means: `None` when it is no failure.
    fn failure(
        &self,
        ended: Result<(tokio::task::Id, Ended), JoinError>,
        stopping: bool,
    ) -> Option<TaskError> {
        match ended {
            Ok((_, Ended { name, result, .. })) if result.is_err() => {
                let source = result.err()?;
                Some(TaskError::Failed { name, source })
            }
            Ok((_, Ended { name, kind, .. })) => {
                // A service that saw the stop before this owner did ended on purpose.
                let stopped = stopping || self.stop.is_cancelled();
                (kind == Kind::Service && !stopped).then_some(TaskError::Ended { name })
            }
            Err(e) => {
                let name = self.name_of(e.id());
                match e.try_into_panic() {
                    Ok(panic) => Some(TaskError::Panicked {
                        name,
                        message: panic_message(&panic),
                    }),
                    Err(_) => None, // cancelled: only at shutdown
                }
            }
        }
    }

    fn name_of(&self, id: tokio::task::Id) -> &'static str {
        (self.names.iter().find(|(i, _)| *i == id)).map_or("a task", |(_, n)| n)
    }
}

/// A task that cannot fail, as one [`Tasks`] runs.
pub async fn ok(task: impl Future<Output = ()>) -> Result<(), crate::error::BoxError> {
    task.await;
    Ok(())
}

/// The text of a panic's payload.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;

    #[tokio::test]
    async fn a_service_that_fails_stops_the_others_and_names_itself() {
        let stop = CancellationToken::new();
        let mut tasks = Tasks::new(stop.clone());
        let token = tasks.token();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.service("steady", async move {
            token.cancelled().await;
            let _ = tx.send(());
            Ok::<_, BoxError>(())
        });
        tasks.service("broken", async { Err(std::io::Error::other("disk gone")) });
        let e = tasks.run().await.expect_err("the node stops with an error");
        assert!(matches!(e, TaskError::Failed { name: "broken", .. }), "{e}");
        assert!(e.to_string().contains("disk gone"));
        assert!(stop.is_cancelled());
        rx.await
            .expect("the steady service was stopped and awaited");
    }

    #[tokio::test]
    async fn a_service_that_returns_early_or_panics_stops_the_node() {
        let mut tasks = Tasks::new(CancellationToken::new());
        tasks.service("quitter", async { Ok::<_, BoxError>(()) });
        let e = tasks.run().await.expect_err("ending early is a failure");
        assert!(matches!(e, TaskError::Ended { name: "quitter" }), "{e}");
        let mut tasks = Tasks::new(CancellationToken::new());
        fn out_of_range() -> Result<(), BoxError> {
            panic!("index out of range")
        }
        tasks.service("bug", async { out_of_range() });
        let e = tasks.run().await.expect_err("a panic is a failure");
        assert!(
            e.to_string().contains("bug panicked: index out of range"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn tasks_that_end_on_purpose_and_a_stop_are_no_failure() {
        let stop = CancellationToken::new();
        let mut tasks = Tasks::new(stop.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.once("create a stream", async move {
            let _ = done_tx.send(());
            Ok::<_, BoxError>(())
        });
        let token = tasks.token();
        tasks.service("serve", async move {
            token.cancelled().await;
            Ok::<_, BoxError>(())
        });
        // The node is stopped once the one-shot task is done.
        tokio::spawn(async move {
            let _ = done_rx.await;
            stop.cancel();
        });
        tasks.run().await.expect("a clean stop");
    }

    #[tokio::test]
    async fn a_service_that_sees_the_stop_first_ended_on_purpose() {
        for _ in 0..50 {
            let mut tasks = Tasks::new(CancellationToken::new());
            let token = tasks.token();
            tasks.service("quick", async move {
                token.cancel();
                Ok::<_, BoxError>(())
            });
            tasks.run().await.expect("stopping is no failure");
        }
    }
}
