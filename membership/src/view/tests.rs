use super::*;
use MemberState::*;

fn m(generation: u64, incarnation: u64, state: MemberState) -> Member {
    named("a", generation, incarnation, state)
}

fn named(id: &str, generation: u64, incarnation: u64, state: MemberState) -> Member {
    Member {
        started_ms: None,
        id: id.into(),
        generation,
        incarnation,
        state,
        host: String::new(),
        zone: None,
        http: None,
    }
}

fn view() -> View {
    View::new("me", 4)
}

#[test]
fn swim_order_within_a_generation() {
    assert!(m(1, 0, Suspect).supersedes(&m(1, 0, Alive)));
    assert!(!m(1, 0, Alive).supersedes(&m(1, 0, Suspect)));
    assert!(m(1, 1, Alive).supersedes(&m(1, 0, Suspect)));
    assert!(m(1, 0, Failed).supersedes(&m(1, 5, Alive)));
    assert!(!m(1, 9, Alive).supersedes(&m(1, 0, Failed)));
    assert!(!m(1, 0, Failed).supersedes(&m(1, 0, Left)));
}

#[test]
fn a_new_generation_beats_a_final_state() {
    assert!(m(2, 0, Alive).supersedes(&m(1, 0, Failed)));
    assert!(!m(1, 0, Failed).supersedes(&m(2, 0, Alive)));
}

#[test]
fn last_heard_belongs_to_one_generation() {
    let mut view = view();
    let now = Instant::now();
    view.apply(m(1, 0, Alive), now);
    view.heard_from("a", now);
    assert_eq!(view.records(now)[0].last_heard_ms, Some(0));
    view.apply(m(1, 1, Alive), now);
    assert_eq!(view.records(now)[0].last_heard_ms, Some(0));
    view.apply(m(2, 0, Alive), now);
    assert_eq!(view.records(now)[0].last_heard_ms, None);
}

#[test]
fn merge_is_order_independent() {
    let updates = [
        m(1, 0, Alive),
        m(1, 0, Suspect),
        m(1, 1, Alive),
        m(1, 1, Failed),
        m(2, 0, Alive),
    ];
    let now = Instant::now();
    let mut forward = view();
    let mut backward = view();
    for u in updates.iter() {
        forward.apply(u.clone(), now);
    }
    for u in updates.iter().rev() {
        backward.apply(u.clone(), now);
    }
    assert_eq!(forward.get("a"), backward.get("a"));
    assert_eq!(forward.digest(), backward.digest());
    assert_eq!(forward.get("a").unwrap().generation, 2);
}

#[test]
fn ended_members_are_forgotten_and_their_generation_stays_dead() {
    let mut view = view();
    let t0 = Instant::now();
    let after = Duration::from_secs(600);
    view.apply(named("me", 1, 0, Alive), t0);
    view.apply(m(5, 0, Alive), t0);
    view.apply(m(5, 0, Failed), t0 + Duration::from_secs(1));
    assert!(view.forget_ended(t0 + after, after).is_empty(), "not yet");
    let forgotten = view.forget_ended(t0 + after + Duration::from_secs(1), after);
    assert_eq!(forgotten, vec!["a".to_string()]);
    assert_eq!((view.get("a"), view.forgotten("a")), (None, Some(5)));
    // A stale sync still holding generation 5 cannot bring it back, alive or failed.
    let later = t0 + after * 2;
    assert_eq!(view.apply(m(5, 3, Alive), later), Applied::Stale);
    assert_eq!(view.apply(m(4, 0, Failed), later), Applied::Stale);
    // A new generation of that node joins as usual.
    assert_eq!(view.apply(m(6, 0, Alive), later), Applied::Changed);
    assert_eq!(view.forgotten("a"), None);
}

#[test]
fn this_node_and_live_members_are_never_forgotten() {
    let mut view = view();
    let t0 = Instant::now();
    view.apply(named("me", 1, 0, Left), t0);
    view.apply(m(1, 0, Suspect), t0);
    let much_later = t0 + Duration::from_secs(86_400);
    assert!(view
        .forget_ended(much_later, Duration::from_secs(1))
        .is_empty());
    assert_eq!(view.len(), 2);
}

#[test]
fn a_full_view_makes_room_from_ended_members_only() {
    let mut view = view();
    let t0 = Instant::now();
    view.apply(named("me", 1, 0, Alive), t0);
    for id in ["b", "c", "d"] {
        assert_eq!(view.apply(named(id, 1, 0, Alive), t0), Applied::Changed);
    }
    assert_eq!(view.apply(named("e", 1, 0, Alive), t0), Applied::Full);
    assert_eq!(view.len(), 4);
    view.apply(named("c", 1, 0, Failed), t0 + Duration::from_secs(2));
    view.apply(named("b", 1, 0, Left), t0 + Duration::from_secs(1));
    // The member that ended first makes room, and leaves a tombstone.
    let t1 = t0 + Duration::from_secs(3);
    assert_eq!(view.apply(named("e", 1, 0, Alive), t1), Applied::Changed);
    assert_eq!((view.get("b"), view.forgotten("b")), (None, Some(1)));
    assert!(view.get("c").is_some());
    assert_eq!(view.len(), 4);
}

#[test]
fn tombstones_are_bounded_by_the_member_cap() {
    let mut view = view();
    let t0 = Instant::now();
    for i in 0..50u32 {
        let now = t0 + Duration::from_secs(u64::from(i));
        view.apply(named(&format!("x{i}"), 1, 0, Failed), now);
        view.forget_ended(now + Duration::from_secs(1), Duration::from_millis(1));
        assert!(view.tombstones() <= 4 && view.len() <= 4);
    }
    // The oldest tombstones went first.
    assert_eq!(view.forgotten("x49"), Some(1));
    assert_eq!(view.forgotten("x0"), None);
}
