//! Subscribing for the life of a service: the bus may not be reachable yet when a node starts.

use async_nats::{Client, Subscriber};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Subscribes to `subject` (in queue group `queue`, if given), trying again every second
/// while the bus refuses; None if `shutdown` comes first. `what` names the subscription in
/// the warning.
pub async fn retrying(
    client: &Client,
    subject: String,
    queue: Option<&str>,
    what: &str,
    shutdown: &CancellationToken,
) -> Option<Subscriber> {
    loop {
        let sub = match queue {
            Some(q) => client.queue_subscribe(subject.clone(), q.to_string()).await,
            None => client.subscribe(subject.clone()).await,
        };
        match sub {
            Ok(sub) => return Some(sub),
            Err(e) => tracing::warn!("cannot subscribe to {what}: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
