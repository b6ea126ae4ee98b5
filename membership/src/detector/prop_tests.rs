//! Arbitrary and boundary member events, view records and failure-detector messages fed to
//! one detector: no panic, this node stays a live member, the view stays within its cap.

use super::*;
use bus_schemas::membership::plausible::MAX_INCARNATION;
use bus_schemas::membership::MemberRecord;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;

const WALL: u64 = 1_800_000_000_000;

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(MAX_INCARNATION),
        Just(MAX_INCARNATION + 1),
        Just(WALL),
        Just(WALL + 300_000),
        Just(WALL + 300_001),
        WALL - 10_000..WALL + 400_000,
        any::<u64>(),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("me".to_string()),
        Just("peer".to_string()),
        "[a-z]{1,3}",
        ".{0,70}",
        Just("x".repeat(65)),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,20}", (0usize..600).prop_map(|n| "h".repeat(n))]
}

fn kind() -> impl Strategy<Value = MemberEventKind> {
    use MemberEventKind::*;
    prop_oneof![
        Just(Join),
        Just(Alive),
        Just(Suspect),
        Just(Fail),
        Just(Leave)
    ]
}

fn state() -> impl Strategy<Value = MemberState> {
    kind().prop_map(MemberEventKind::state)
}

fn http() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![Just("127.0.0.1:1".to_string()), text()])
}

fn zone() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn event() -> impl Strategy<Value = MemberEvent> {
    (
        kind(),
        id(),
        number(),
        number(),
        text(),
        zone(),
        http(),
        id(),
    )
        .prop_map(
            |(kind, node, generation, incarnation, host, zone, http, reporter)| MemberEvent {
                started_ms: None,
                kind,
                node,
                generation,
                incarnation,
                host,
                zone,
                http,
                reporter,
                at_ms: 0,
            },
        )
}

fn record() -> impl Strategy<Value = MemberRecord> {
    (id(), number(), number(), state(), text(), zone(), http()).prop_map(
        |(id, generation, incarnation, state, host, zone, http)| MemberRecord {
            started_ms: None,
            id,
            generation,
            incarnation,
            state,
            host,
            zone,
            http,
            last_heard_ms: None,
        },
    )
}

fn fd() -> impl Strategy<Value = FdMessage> {
    prop_oneof![
        (id(), number(), number(), number()).prop_map(|(from, g, seq, digest)| {
            FdMessage::Ping {
                from,
                from_generation: g,
                seq,
                digest,
            }
        }),
        (id(), number(), number(), id()).prop_map(|(from, g, seq, target)| {
            FdMessage::PingReq {
                from,
                from_generation: g,
                seq,
                target,
            }
        }),
        (id(), number(), number(), id(), number(), number()).prop_map(
            |(from, g, seq, target, tg, digest)| FdMessage::Ack {
                from,
                from_generation: g,
                seq,
                target,
                target_generation: tg,
                digest,
            }
        ),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Event(MemberEvent),
    Records(Vec<MemberRecord>),
    Fd(FdMessage),
    Tick(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        event().prop_map(Input::Event),
        proptest::collection::vec(record(), 0..40).prop_map(Input::Records),
        fd().prop_map(Input::Fd),
        (0u64..20_000).prop_map(Input::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_input_panics_evicts_this_node_or_grows_the_view(
        inputs in proptest::collection::vec(input(), 1..60),
    ) {
        let cfg = DetectorConfig {
            max_members: 8,
            forget_after: Duration::from_secs(5),
            ..DetectorConfig::default()
        };
        // Each forged failure of the current generation moves it up by one.
        let skew = cfg.max_clock_skew.as_millis() as u64;
        let max_generation = |wall: u64, inputs: u64| wall + skew + inputs;
        let mut now = Now { mono: Instant::now(), wall_ms: WALL };
        let rng = StdRng::seed_from_u64(7);
        let mut d = Detector::new(cfg.clone(), "me", "h", None, None, rng, now);
        for (n, input) in (1u64..).zip(inputs) {
            match input {
                Input::Event(ev) => { d.handle_event(&ev, now); }
                Input::Records(rs) => { d.merge_records("peer", &rs, now); }
                Input::Fd(msg) => { d.handle_fd(msg, now); }
                Input::Tick(ms) => {
                    now.mono += Duration::from_millis(ms);
                    now.wall_ms += ms;
                    d.tick(now);
                }
            }
            let me = d.view().get("me");
            prop_assert!(me.is_some_and(Member::is_live), "{:?}", me);
            prop_assert_eq!(me.map(|m| m.generation), Some(d.me().generation));
            prop_assert!(d.me().generation <= max_generation(now.wall_ms, n));
            prop_assert!(d.me().incarnation <= MAX_INCARNATION);
            prop_assert!(d.view().len() <= 8 && d.view().tombstones() <= 8);
            prop_assert!(d.relays.len() <= 8);
        }
    }
}
