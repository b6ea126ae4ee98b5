//! The NATS server's refusals of this process's publishes and subscriptions.
//!
//! A server that refuses a publish or a subscription (the identity's permissions do not allow
//! it) drops it and sends the connection an `-ERR 'Permissions Violation for …'`, which
//! async-nats hands to the connection's event callback. The callback passes it to
//! [`note_event`]; a [`crate::request`] waiting for an answer on a refused subject then fails
//! at once with [`crate::RequestError::Denied`] instead of timing out.

use std::sync::LazyLock;
use tokio::sync::broadcast;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A publish (or a request).
    Publish,
    /// A subscription.
    Subscribe,
}

/// One refusal, of the connection whose reply inbox prefix is `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The inbox prefix of the connection refused.
    pub prefix: String,
    /// What it tried.
    pub action: Action,
    /// On which subject.
    pub subject: String,
}

static DENIALS: LazyLock<broadcast::Sender<Denial>> = LazyLock::new(|| broadcast::channel(1024).0);

/// Reads a server error text: `Permissions Violation for Publish to "x"` or
/// `Permissions Violation for Subscription to "x"` (maybe with a queue group after it).
pub fn parse(text: &str) -> Option<(Action, String)> {
    let rest = text.trim().trim_matches('\'');
    let rest = rest.strip_prefix("Permissions Violation for ")?;
    let (action, rest) = if let Some(r) = rest.strip_prefix("Publish to ") {
        (Action::Publish, r)
    } else {
        (Action::Subscribe, rest.strip_prefix("Subscription to ")?)
    };
    let subject = rest.trim().strip_prefix('"')?.split('"').next()?;
    Some((action, subject.to_string()))
}

/// Records a refusal if `event` is one; call it from the connection's event callback.
pub fn note_event(prefix: &str, event: &async_nats::Event) {
    if let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = event {
        if let Some((action, subject)) = parse(text) {
            let _ = DENIALS.send(Denial {
                prefix: prefix.to_string(),
                action,
                subject,
            });
        }
    }
}

/// Refusals from now on.
pub fn watch() -> broadcast::Receiver<Denial> {
    DENIALS.subscribe()
}

/// The reply inbox prefix of `client` (what its event callback passes to [`note_event`]).
pub fn prefix_of(client: &async_nats::Client) -> String {
    let inbox = client.new_inbox();
    match inbox.rsplit_once('.') {
        Some((prefix, _)) => prefix.to_string(),
        None => inbox,
    }
}

/// Waits until `client`'s publish to `subject`, or the subscription for its replies, is
/// refused; never returns otherwise.
pub async fn refused(
    denials: &mut broadcast::Receiver<Denial>,
    prefix: &str,
    subject: &str,
) -> Denial {
    loop {
        match denials.recv().await {
            Ok(d) if d.prefix == prefix => {
                let ours = match d.action {
                    Action::Publish => d.subject == subject,
                    Action::Subscribe => d.subject.starts_with(prefix),
                };
                if ours {
                    return d;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_read() {
        assert_eq!(
            parse("Permissions Violation for Publish to \"idunno.v1.sdfs.rpc.delete\""),
            Some((Action::Publish, "idunno.v1.sdfs.rpc.delete".into()))
        );
        assert_eq!(
            parse("'Permissions Violation for Subscription to \"idunno.v1.sdfs.rpc.*\" using queue \"idunno-sdfs\"'"),
            Some((Action::Subscribe, "idunno.v1.sdfs.rpc.*".into()))
        );
        assert_eq!(parse("Slow Consumer"), None);
    }
}
