use super::*;
use crate::membership::{MemberEventKind, MemberState};
use proptest::prelude::*;

const CLOCK: Clock = Clock {
    now_ms: 1_800_000_000_000,
    max_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
};

fn event() -> MemberEvent {
    MemberEvent {
        started_ms: None,
        kind: MemberEventKind::Fail,
        node: "n1".into(),
        generation: CLOCK.now_ms - 5_000,
        incarnation: 3,
        host: "vm".into(),
        zone: Some("rack-1".into()),
        http: Some("127.0.0.1:9300".into()),
        reporter: "n2".into(),
        at_ms: 0,
    }
}

fn record() -> MemberRecord {
    MemberRecord {
        started_ms: None,
        id: "n1".into(),
        generation: CLOCK.now_ms,
        incarnation: 0,
        state: MemberState::Alive,
        host: "vm".into(),
        zone: Some("rack-1".into()),
        http: None,
        last_heard_ms: None,
    }
}

#[test]
fn real_events_and_records_pass() {
    assert_eq!(event().check(CLOCK), Ok(()));
    assert_eq!(record().check(CLOCK), Ok(()));
    let at_limit = MemberEvent {
        generation: CLOCK.max_generation(),
        incarnation: MAX_INCARNATION,
        host: "h".repeat(MAX_HOST_LEN),
        ..event()
    };
    assert_eq!(at_limit.check(CLOCK), Ok(()));
}

#[test]
fn a_process_cannot_start_after_its_generation() {
    let started = |started_ms| MemberRecord {
        started_ms: Some(started_ms),
        ..record()
    };
    assert_eq!(started(CLOCK.now_ms).check(CLOCK), Ok(()));
    assert_eq!(
        started(CLOCK.now_ms + 1).check(CLOCK),
        Err(Implausible::StartedAfterGeneration {
            started_ms: CLOCK.now_ms + 1,
            generation: CLOCK.now_ms
        })
    );
}

#[test]
fn generations_too_far_ahead_are_refused() {
    for generation in [
        CLOCK.max_generation() + 1,
        CLOCK.now_ms + 86_400_000,
        u64::MAX,
    ] {
        let ev = MemberEvent {
            generation,
            ..event()
        };
        assert!(
            matches!(ev.check(CLOCK), Err(Implausible::Generation { .. })),
            "{generation}"
        );
    }
    let msg = CLOCK.check_generation(u64::MAX).unwrap_err().to_string();
    assert!(msg.contains("max clock skew of 300000 ms"), "{msg}");
}

#[test]
fn counters_at_their_maximum_are_refused() {
    for incarnation in [MAX_INCARNATION + 1, u64::MAX] {
        let r = MemberRecord {
            incarnation,
            ..record()
        };
        assert_eq!(r.check(CLOCK), Err(Implausible::Incarnation(incarnation)));
    }
}

#[test]
fn ids_that_are_not_tokens_are_refused() {
    let ev = MemberEvent {
        node: "n1.>".into(),
        ..event()
    };
    assert!(matches!(
        ev.check(CLOCK),
        Err(Implausible::BadId { field: "node", .. })
    ));
    let ev = MemberEvent {
        reporter: String::new(),
        ..event()
    };
    assert!(matches!(
        ev.check(CLOCK),
        Err(Implausible::BadId {
            field: "reporter",
            ..
        })
    ));
    let r = MemberRecord {
        id: "x".repeat(1 << 20),
        ..record()
    };
    let err = r.check(CLOCK).unwrap_err();
    assert_eq!(
        err,
        Implausible::IdTooLong {
            field: "node",
            len: 1 << 20
        }
    );
    assert!(
        err.to_string().len() < 100,
        "the error does not carry the id"
    );
}

#[test]
fn oversized_hosts_and_bad_addresses_are_refused() {
    let r = MemberRecord {
        host: "h".repeat(1_000_000),
        ..record()
    };
    assert_eq!(r.check(CLOCK), Err(Implausible::HostTooLong(1_000_000)));
    let r = MemberRecord {
        zone: Some("z".repeat(MAX_HOST_LEN + 1)),
        ..record()
    };
    assert_eq!(
        r.check(CLOCK),
        Err(Implausible::ZoneTooLong(MAX_HOST_LEN + 1))
    );
    for bad in [
        "",
        "no-port",
        "h:",
        "h:99999",
        "h:-1",
        "javascript:alert(1)",
        "a b:80",
        "[::1]",
        "x/y:80",
    ] {
        assert!(
            matches!(check_http(bad), Err(Implausible::HttpNotHostPort(_))),
            "{bad}"
        );
    }
    let long = format!("{}:80", "h".repeat(MAX_HTTP_LEN));
    assert_eq!(check_http(&long), Err(Implausible::HttpTooLong(long.len())));
    for ok in [
        "127.0.0.1:9300",
        "[::1]:8080",
        "node-1.example.org:80",
        "vm:0",
    ] {
        assert_eq!(check_http(ok), Ok(()), "{ok}");
    }
}

#[test]
fn fd_messages_name_tokens() {
    let ping = FdMessage::Ping {
        from: "n1".into(),
        from_generation: CLOCK.now_ms,
        seq: u64::MAX,
        digest: u64::MAX,
    };
    assert_eq!(ping.check(CLOCK), Ok(()));
    let req = FdMessage::PingReq {
        from: "n1".into(),
        from_generation: 0,
        seq: 0,
        target: "*".into(),
    };
    assert!(matches!(
        req.check(CLOCK),
        Err(Implausible::BadId {
            field: "target",
            ..
        })
    ));
    let ack = FdMessage::Ack {
        from: "n1".into(),
        from_generation: 1,
        seq: 0,
        target: "n2".into(),
        target_generation: u64::MAX,
        digest: 0,
    };
    assert!(matches!(
        ack.check(CLOCK),
        Err(Implausible::Generation { .. })
    ));
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        Just(MAX_INCARNATION),
        Just(MAX_INCARNATION + 1),
        Just(CLOCK.max_generation()),
        Just(CLOCK.max_generation() + 1),
        any::<u64>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9_-]{1,64}",
        ".{0,80}",
        (0usize..2000).prop_map(|n| "h".repeat(n)),
    ]
}

proptest! {
    #[test]
    fn the_check_never_panics_and_passes_only_what_is_within_the_limits(
        node in text(), reporter in text(), host in text(), http in proptest::option::of(text()),
        generation in number(), incarnation in number(), now_ms in number(), skew in number(),
    ) {
        let clock = Clock { now_ms, max_skew_ms: skew };
        let ev = MemberEvent { node, reporter, host, http, generation, incarnation, ..event() };
        if ev.check(clock).is_ok() {
            prop_assert!(validate_token(&ev.node).is_ok() && validate_token(&ev.reporter).is_ok());
            prop_assert!(ev.generation <= clock.max_generation());
            prop_assert!(ev.incarnation <= MAX_INCARNATION);
            prop_assert!(ev.host.len() <= MAX_HOST_LEN);
            prop_assert!(ev.http.as_ref().is_none_or(|h| h.len() <= MAX_HTTP_LEN && h.contains(':')));
        } else {
            let err = ev.check(clock).unwrap_err().to_string();
            prop_assert!(err.len() < 2048, "{}", err);
        }
    }
}
