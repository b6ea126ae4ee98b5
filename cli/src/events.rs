//! `idunno events`: the bus's public events as JSON lines, decoded from MessagePack (the
//! readable `nats sub`): member events, job events and, for one job, its progress.

use anyhow::Context;
use bus_schemas::jobs::{JobEvent, Progress};
use bus_schemas::membership::MemberEvent;
use bus_schemas::{decode, subjects};
use futures::StreamExt;
use serde_json::{json, Value};

/// Which events to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventKind {
    /// Members joining, suspected, failed, leaving (`idunno.v1.members.events`).
    Member,
    /// Jobs submitted, started, reassigned, ended (`idunno.v1.jobs.events`), and with
    /// `--job` that job's progress.
    Job,
}

/// One event as a JSON line: `{"type", "subject", …its fields}`, or `null` for a payload that
/// does not decode (said on stderr).
fn line(subject: &str, payload: &[u8], job: Option<&str>) -> Option<Value> {
    let (kind, decoded) = if subject == subjects::member_events() {
        ("member", decode::<MemberEvent>(payload).map(|e| json!(e)))
    } else if subject == subjects::job_events() {
        let event = decode::<JobEvent>(payload);
        if let (Ok(e), Some(id)) = (&event, job) {
            if e.job_id != id {
                return None;
            }
        }
        ("job", event.map(|e| json!(e)))
    } else {
        ("progress", decode::<Progress>(payload).map(|e| json!(e)))
    };
    match decoded {
        Ok(Value::Object(mut fields)) => {
            fields.insert("type".into(), json!(kind));
            fields.insert("subject".into(), json!(subject));
            Some(Value::Object(fields))
        }
        Ok(other) => Some(json!({"type": kind, "subject": subject, "event": other})),
        Err(e) => {
            crate::output::warn(&format!("{subject}: undecodable payload skipped: {e}"));
            None
        }
    }
}

/// Prints events until interrupted (or `count` of them).
pub async fn run(
    client: &async_nats::Client,
    kind: Option<EventKind>,
    job: Option<String>,
    count: Option<u64>,
) -> anyhow::Result<()> {
    if let Some(id) = &job {
        bus_schemas::validate_token(id).map_err(|e| anyhow::anyhow!("job {id:?}: {e}"))?;
    }
    let mut subs = Vec::new();
    if kind != Some(EventKind::Job) && job.is_none() {
        subs.push(subjects::member_events());
    }
    if kind != Some(EventKind::Member) {
        subs.push(subjects::job_events());
        if let Some(id) = &job {
            subs.push(subjects::job_progress(id));
        }
    }
    let mut streams = Vec::new();
    for s in &subs {
        let sub = client.subscribe(s.clone()).await;
        streams.push(sub.with_context(|| format!("subscribing to {s}"))?);
    }
    // Subscribed (the server has the interest) before the first event can be missed.
    client.flush().await.context("reaching the bus")?;
    crate::output::warn(&format!("following {} (Ctrl-C ends)", subs.join(", ")));
    let mut all = futures::stream::select_all(streams);
    let mut printed = 0;
    while let Some(msg) = all.next().await {
        if let Some(v) = line(msg.subject.as_str(), &msg.payload, job.as_deref()) {
            println!("{v}");
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus_schemas::encode;
    use bus_schemas::membership::MemberEventKind;

    #[test]
    fn events_become_json_lines_with_their_type_and_subject() {
        let e = MemberEvent {
            kind: MemberEventKind::Fail,
            node: "n2".into(),
            generation: 3,
            incarnation: 1,
            host: "a".into(),
            zone: None,
            http: None,
            started_ms: None,
            reporter: "n1".into(),
            at_ms: 5,
        };
        let v = line(&subjects::member_events(), &encode(&e).unwrap(), None).unwrap();
        assert_eq!(v["type"], "member");
        assert_eq!(v["kind"], "fail");
        assert_eq!(v["node"], "n2");
        assert!(line(&subjects::member_events(), b"\xff", None).is_none());
    }
}
