//! One thread that runs every libtorch inference call of this node, in order.
//!
//! libtorch parallelises inside an operation with OpenMP, and OpenMP keeps a team of threads
//! per calling thread, spinning between operations. Calls from the runtime's pool of blocking
//! threads would start a team on each of them, and their spinning threads would take the CPU
//! from the one doing the work; a single calling thread keeps a single team.

use crate::jobs::JobError;
use std::sync::mpsc;
use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

/// A handle to the inference thread; cloning it shares the thread.
#[derive(Clone)]
pub struct Executor {
    tx: mpsc::Sender<Task>,
}

impl Executor {
    /// Starts the thread (it ends when every handle is dropped).
    pub fn new() -> Executor {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("tch-infer".into())
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    task();
                }
            })
            .expect("start the inference thread");
        Executor { tx }
    }

    /// Runs `f` on the inference thread and waits for it without blocking the runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let task: Task = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = done.send(out);
        });
        self.tx
            .send(task)
            .map_err(|_| JobError::Internal("the inference thread has stopped".into()))?;
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(JobError::Internal("libtorch panicked".into())),
            Err(_) => Err(JobError::Internal(
                "the inference thread has stopped".into(),
            )),
        }
    }
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
}
