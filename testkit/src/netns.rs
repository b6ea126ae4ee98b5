//! A bus client inside a machine's network namespace, for a test that must speak to a machine
//! cut off from the others (and from the test's own namespace).
//!
//! A socket belongs to the network namespace of the thread that creates it: the client is
//! connected, and reconnects, from a thread that entered the namespace and runs its own
//! runtime; the handle works from any runtime.

use std::thread::JoinHandle;

/// A client connected from inside a network namespace; its thread ends on drop.
pub struct NsClient {
    /// The client (usable from the test's runtime).
    pub client: async_nats::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NsClient {
    /// Connects as `bus` says (its URL and credentials) from inside network namespace `netns`
    /// (`/run/netns/<netns>`).
    pub fn connect(netns: &str, bus: &bus_client::BusOptions) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (path, bus) = (format!("/run/netns/{netns}"), bus.clone());
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace (needs root)");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime in the namespace");
            rt.block_on(async move {
                let client = match bus.nats_options("test").await {
                    Ok(opts) => opts
                        .connect(bus.url.as_str())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if tx.send(client).is_ok() {
                    let _ = stopped.await;
                }
            });
        });
        let client = rx
            .recv()
            .expect("the namespace thread answers")
            .expect("connect from inside the namespace");
        Self {
            client,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for NsClient {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
