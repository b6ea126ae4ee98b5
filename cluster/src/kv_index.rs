//! An index of a KV bucket owned by one task: a watch delivers the last value of every key and
//! then every change, in revision order, into a book the task owns; readers send it closures
//! over a bounded channel and get their answers back. The job index and the SDFS listing are
//! two books on this.
//!
//! A fresh read waits until the book holds every revision the bucket had when the read was
//! asked (one stream-info request to the bucket's leader): what a writer was told is written
//! is read back, wherever the read lands. If the bucket cannot be read or the watch ends, the
//! book is dropped, readers hear "starting over", and the task loads a new one after a pause.

use crate::error::{KvError, KvErrorKind};
use async_nats::jetstream::kv::{Entry, Store};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pause before the task starts over after the bucket failed it.
const RETRY: Duration = Duration::from_secs(1);
/// Reads waiting for the book to catch up, at most.
const MAX_WAITING: usize = 256;
/// Reads in the channel, at most.
const QUEUED: usize = 64;
/// How long a fresh read waits for the book to reach the bucket's revision.
const FRESH_WAIT: Duration = Duration::from_secs(5);

/// What a change did to a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Something readers see came, changed or went.
    Changed,
    /// Nothing readers see changed (an older revision, a key that is not the book's).
    Same,
    /// The value could not be read (counted as garbage).
    Corrupt,
}

/// What the task keeps.
pub trait Book: Send + 'static {
    /// Takes a change from the watch.
    fn take(&mut self, entry: Entry) -> Applied;
    /// Called once the book holds the bucket, and after every change since: publish here.
    fn settled(&mut self) {}
    /// Called once a second.
    fn tidy(&mut self) {}
    /// Called when the book is dropped (the task starts over or stops).
    fn reset(&mut self) {}
}

/// Why a read got no answer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum IndexError {
    /// Loading, behind the bucket, busy or starting over: a later try may succeed.
    #[error("the index of {bucket} is {why}")]
    NotReady {
        /// The bucket.
        bucket: &'static str,
        /// Why.
        why: &'static str,
    },
}

struct Read<B> {
    fresh: u64,
    until: Instant,
    run: Box<dyn FnOnce(&mut B) + Send>,
}

/// A reader's handle.
pub struct Handle<B> {
    tx: mpsc::Sender<Read<B>>,
    kv: Store,
    name: &'static str,
}

impl<B> Clone for Handle<B> {
    fn clone(&self) -> Self {
        Handle {
            tx: self.tx.clone(),
            kv: self.kv.clone(),
            name: self.name,
        }
    }
}

/// What [`run`] takes.
pub struct Runner<B> {
    rx: mpsc::Receiver<Read<B>>,
    kv: Store,
    name: &'static str,
}

/// An index of `kv` (called `name` in errors): its handle and what runs it.
pub fn new<B: Book>(kv: Store, name: &'static str) -> (Handle<B>, Runner<B>) {
    let (tx, rx) = mpsc::channel(QUEUED);
    let handle = Handle {
        tx,
        kv: kv.clone(),
        name,
    };
    (handle, Runner { rx, kv, name })
}

impl<B: Book> Handle<B> {
    /// Runs `f` on the book once it holds every revision the bucket has now.
    pub async fn fresh<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut B) -> T + Send + 'static,
    ) -> Result<T, IndexError> {
        let fresh = last_revision(&self.kv)
            .await
            .map_err(|_| self.not_ready("unreachable"))?;
        self.read(fresh, f).await
    }

    /// Runs `f` on the book as it is, once loaded.
    pub async fn now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut B) -> T + Send + 'static,
    ) -> Result<T, IndexError> {
        self.read(0, f).await
    }

    async fn read<T: Send + 'static>(
        &self,
        fresh: u64,
        f: impl FnOnce(&mut B) -> T + Send + 'static,
    ) -> Result<T, IndexError> {
        let (reply, answer) = oneshot::channel();
        let read = Read {
            fresh,
            until: Instant::now() + FRESH_WAIT,
            run: Box::new(move |book: &mut B| {
                let _ = reply.send(f(book));
            }),
        };
        (self.tx.send(read).await).map_err(|_| self.not_ready("stopped"))?;
        match tokio::time::timeout(FRESH_WAIT, answer).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) => Err(self.not_ready("busy or starting over")),
            Err(_) => Err(self.not_ready("behind the bucket")),
        }
    }

    fn not_ready(&self, why: &'static str) -> IndexError {
        IndexError::NotReady {
            bucket: self.name,
            why,
        }
    }
}

/// The bucket's last revision (its stream's last sequence), from its stream leader.
pub async fn last_revision(kv: &Store) -> Result<u64, KvError> {
    let info =
        (kv.stream.get_info().await).map_err(|e| KvError::new("the bucket's last revision", e))?;
    Ok(info.state.last_sequence)
}

/// Keeps a book made by `make` true to the bucket until `shutdown`; `garbage` counts corrupt
/// values.
pub async fn run<B: Book>(
    mut runner: Runner<B>,
    mut make: impl FnMut() -> B,
    garbage: impl Fn(),
    shutdown: CancellationToken,
) {
    loop {
        let mut book = make();
        if let Err(e) = follow(&mut runner, &mut book, &garbage, &shutdown).await {
            tracing::warn!("index of {}: {e:#}; starting over", runner.name);
        }
        book.reset();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// One load of the book, with the reads waiting for it.
struct Load<B> {
    revision: u64,
    load_to: u64,
    loaded: bool,
    waiting: Vec<Read<B>>,
}

impl<B: Book> Load<B> {
    /// After a change (or none): publishes once loaded, and runs the reads now due.
    fn settle(&mut self, book: &mut B, changed: bool) {
        let was = self.loaded;
        self.loaded |= self.revision >= self.load_to;
        if !self.loaded {
            return;
        }
        if changed || !was {
            book.settled();
        }
        for read in std::mem::take(&mut self.waiting) {
            self.ask(book, read);
        }
    }

    /// Runs a read now, or keeps it until the book reaches its revision.
    fn ask(&mut self, book: &mut B, read: Read<B>) {
        if self.loaded && self.revision >= read.fresh {
            (read.run)(book);
        } else if self.waiting.len() < MAX_WAITING {
            self.waiting.push(read);
        } // else dropped: its reader hears "busy"
    }

    fn tidy(&mut self, book: &mut B) {
        let now = Instant::now();
        self.waiting.retain(|r| r.until > now);
        book.tidy();
    }
}

/// Loads the book, then follows the watch until it ends.
async fn follow<B: Book>(
    runner: &mut Runner<B>,
    book: &mut B,
    garbage: &impl Fn(),
    shutdown: &CancellationToken,
) -> Result<(), KvError> {
    let load_to = last_revision(&runner.kv).await?;
    let mut watch = (runner.kv.watch_with_history(">").await)
        .map_err(|e| KvError::new("watching the bucket", e))?;
    let mut load = Load {
        revision: 0,
        load_to,
        loaded: false,
        waiting: Vec::new(),
    };
    load.settle(book, false);
    let mut tidy = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            entry = watch.next() => match entry {
                Some(Ok(entry)) => {
                    load.revision = load.revision.max(entry.revision);
                    let applied = book.take(entry);
                    if applied == Applied::Corrupt {
                        garbage();
                    }
                    load.settle(book, applied == Applied::Changed);
                }
                Some(Err(e)) => return Err(KvError::with_kind("the watch", KvErrorKind::Ended, e)),
                None => return Err(KvError::ended("the bucket")),
            },
            Some(read) = runner.rx.recv() => load.ask(book, read),
            _ = tidy.tick() => load.tidy(book),
        }
    }
}
