//! Reading and writing JetStream KV entries that must be current (SDFS metadata, job records).
//!
//! Reads go to the stream's leader ([`leader_entry`]): a KV bucket allows "direct" reads,
//! answered by any copy, and a copy that was cut off and is catching up answers with what it
//! had (a job record without its last checkpoint, a file without its newest version, or no
//! file at all).
//!
//! A write can fail because another writer got there first (the revision moved: read again
//! and retry at once), because the read came from a copy still catching up with the leader
//! (the revision is stale: the same error, for as long as the copy lags), or because the
//! bucket has no leader for a moment (a server lost, an election: a timeout or "no
//! responders"). Retrying 32 times in a row turns the last two into a spurious "kept
//! changing"; instead, tries back off from 10 ms up to 1 s within a budget of [`BUDGET`], so
//! a write rides out an election. The change a caller retries must be idempotent: a write
//! whose acknowledgement was lost may have been applied, and the next try reads it back.

use crate::error::{KvError, KvErrorKind};
use async_nats::jetstream::kv::Store;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use std::time::Duration;
use tokio::time::Instant;

/// An entry as the stream's leader has it.
#[derive(Debug, Clone)]
pub struct LeaderEntry {
    /// The value (empty for a delete).
    pub value: bytes::Bytes,
    /// Its revision, for a compare-and-swap.
    pub revision: u64,
    /// Whether the last operation on the key deleted or purged it.
    pub deleted: bool,
}

/// The last entry of `key` in `store`, read from the stream's leader; None if it never had one.
pub async fn leader_entry(store: &Store, key: &str) -> Result<Option<LeaderEntry>, KvError> {
    let subject = format!("{}{key}", store.prefix);
    let msg = match store.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(msg) => msg,
        Err(e) => {
            let kind = match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                LastRawMessageErrorKind::JetStream(api) => crate::error::api_kind(&api),
                LastRawMessageErrorKind::InvalidSubject => KvErrorKind::Refused,
                _ => KvErrorKind::Unavailable,
            };
            return Err(KvError::with_kind(format!("reading {subject}"), kind, e));
        }
    };
    let op = msg
        .headers
        .get("KV-Operation")
        .map(|v| v.as_str().to_string());
    let marker = msg.headers.get("Nats-Marker-Reason").is_some();
    let deleted = marker || matches!(op.as_deref(), Some("DEL" | "PURGE"));
    Ok(Some(LeaderEntry {
        value: msg.payload,
        revision: msg.sequence,
        deleted,
    }))
}

/// Every key `store` has held (deleted ones too: read each with [`leader_entry`]), sorted,
/// from the stream's leader. Unlike `Store::keys`, which makes a consumer (a request the
/// JetStream meta leader must answer), this needs only the bucket's own leader: a list keeps
/// working while the cluster elects a new meta leader after a server died.
pub async fn leader_keys(store: &Store) -> Result<Vec<String>, KvError> {
    use futures::TryStreamExt;
    let filter = format!("{}>", store.prefix);
    let failed = |e| KvError::new(format!("listing {filter}"), e);
    let subjects: Vec<(String, usize)> = (store.stream.info_with_subjects(&filter).await)
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    let mut keys: Vec<String> = (subjects.into_iter())
        .filter_map(|(s, _)| s.strip_prefix(store.prefix.as_str()).map(str::to_string))
        .collect();
    keys.sort();
    Ok(keys)
}

/// How long a write keeps trying before it gives up.
pub const BUDGET: Duration = Duration::from_secs(20);

/// The tries of one compare-and-swap write.
#[derive(Debug)]
pub struct Tries {
    deadline: Instant,
    tries: u32,
}

impl Default for Tries {
    fn default() -> Self {
        Self::new()
    }
}

impl Tries {
    /// Tries within [`BUDGET`] from now.
    pub fn new() -> Self {
        Self {
            deadline: Instant::now() + BUDGET,
            tries: 0,
        }
    }

    /// Waits before the next try (the first few quickly: races between writers clear at
    /// once); false when the budget is spent.
    pub async fn next(&mut self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let pause = Duration::from_millis(10u64 << self.tries.min(7)).min(Duration::from_secs(1));
        self.tries += 1;
        let jitter = rand::random_range(0..=pause.as_millis() as u64 / 2);
        let pause = pause + Duration::from_millis(jitter);
        tokio::time::sleep(pause.min(self.deadline - Instant::now())).await;
        true
    }

    /// How many writes were tried.
    pub fn tried(&self) -> u32 {
        self.tries + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tries_back_off_and_stop_at_the_budget() {
        let start = Instant::now();
        let mut tries = Tries::new();
        let mut pauses = Vec::new();
        let mut last = start;
        while tries.next().await {
            pauses.push(Instant::now() - last);
            last = Instant::now();
        }
        let spent = Instant::now() - start;
        assert!(
            spent >= BUDGET && spent < BUDGET + Duration::from_millis(10),
            "{spent:?}"
        );
        assert!(pauses[0] < Duration::from_millis(20), "{pauses:?}");
        assert!(
            pauses.iter().all(|p| *p <= Duration::from_millis(1500)),
            "{pauses:?}"
        );
        assert!((15..60).contains(&pauses.len()), "{}", pauses.len());
    }
}
