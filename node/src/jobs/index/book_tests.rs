use super::*;
use bus_schemas::jobs::{JobSpec, JobState, ServeSpec};

fn job(id: &str, state: JobState, submitted_ms: u64) -> JobRecord {
    let spec = JobSpec::Serve(ServeSpec {
        model: "m".into(),
        model_version: None,
        dataset: "d".into(),
        split: "test".into(),
        batch: 16,
        passes: None,
        weight: 1,
    });
    JobRecord {
        state,
        finished_ms: state.is_final().then_some(submitted_ms + 10),
        ..JobRecord::queued(id.into(), spec, submitted_ms, None)
    }
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[test]
fn the_book_keeps_the_newest_revision_of_each_job() {
    let mut book = Book::default();
    assert_eq!(
        book.put("a", Ok(job("a", JobState::Running, 1)), 5),
        Applied::Changed
    );
    let older = book.put("a", Ok(job("a", JobState::Queued, 1)), 4);
    assert_eq!(older, Applied::Same, "an older revision is ignored");
    assert_eq!(book.live()["a"].state, JobState::Running);
    assert_eq!(
        book.put("a", Ok(job("a", JobState::Succeeded, 1)), 7),
        Applied::Changed
    );
    assert!(book.live().is_empty(), "an ended job is no longer live");
    assert_eq!(ids(&book.recent(5)), ["a"]);
    let other = book.put("b", Ok(job("a", JobState::Queued, 1)), 8);
    assert_eq!(other, Applied::Corrupt, "a record under another's key");
    assert_eq!(book.put("c", Err("garbage".into()), 9), Applied::Corrupt);
    assert_eq!(
        book.put("_tick", Err("not a job".into()), 10),
        Applied::Same
    );
}

#[test]
fn pages_list_live_jobs_then_ended_ones_newest_first_and_cursors_resume() {
    let mut book = Book::default();
    let mut rev = 0;
    for i in 0..10u64 {
        rev += 1;
        let state = if i % 2 == 0 {
            JobState::Running
        } else {
            JobState::Failed
        };
        book.put(&format!("j{i}"), Ok(job(&format!("j{i}"), state, i)), rev);
    }
    let (first, next) = book.page(JobsFilter::All, 4, None).expect("a page");
    assert_eq!(ids(&first), ["j8", "j6", "j4", "j2"]);
    let (second, next) = (book.page(JobsFilter::All, 4, next.as_deref())).expect("a page");
    assert_eq!(ids(&second), ["j0", "j9", "j7", "j5"]);
    let (third, next) = (book.page(JobsFilter::All, 4, next.as_deref())).expect("a page");
    assert_eq!(ids(&third), ["j3", "j1"]);
    assert_eq!(next, None, "the last page says so");
    let (ended, next) = book.page(JobsFilter::Ended, 100, None).expect("a page");
    assert_eq!(ids(&ended), ["j9", "j7", "j5", "j3", "j1"]);
    assert_eq!(next, None);
    let (live, _) = book.page(JobsFilter::Live, 100, None).expect("a page");
    assert_eq!(ids(&live), ["j8", "j6", "j4", "j2", "j0"]);
    let (exact, next) = book.page(JobsFilter::Live, 5, None).expect("a page");
    assert_eq!(
        (exact.len(), next),
        (5, None),
        "a page that ends the list has no next"
    );
    assert!(
        book.page(JobsFilter::All, 4, Some("x")).is_err(),
        "a bad cursor is refused"
    );
}

#[test]
fn a_job_that_goes_leaves_every_order_and_its_marker_is_kept_a_while() {
    let mut book = Book::default();
    book.put("a", Ok(job("a", JobState::Succeeded, 1)), 1);
    book.put("b", Ok(job("b", JobState::Running, 2)), 2);
    assert_eq!(book.gone("a", 1_000), Applied::Changed);
    assert_eq!(book.gone("a", 1_000), Applied::Same, "gone already");
    assert_eq!(book.ended(), 0);
    let (all, _) = book.page(JobsFilter::All, 10, None).expect("a page");
    assert_eq!(ids(&all), ["b"]);
    assert_eq!(book.old_markers(1_001, 10), ["a"]);
    assert!(book.old_markers(1_000, 10).is_empty(), "not old yet");
    book.forget_markers(1_001);
    assert!(book.old_markers(u64::MAX, 10).is_empty());
}

#[test]
fn retention_picks_the_oldest_ended_jobs_beyond_the_newest_kept() {
    let mut book = Book::default();
    for i in 0..10u64 {
        book.put(
            &format!("e{i}"),
            Ok(job(&format!("e{i}"), JobState::Succeeded, i)),
            i + 1,
        );
    }
    book.put("live", Ok(job("live", JobState::Running, 0)), 20);
    let over = book.beyond(7, 100);
    let over: Vec<&str> = over.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(over, ["e0", "e1", "e2"], "live jobs are never picked");
    assert_eq!(book.beyond(7, 2).len(), 2, "at most `most` a pass");
    assert!(book.beyond(10, 100).is_empty());
    assert_eq!(book.beyond(7, 1)[0].1, 1, "with the revision read");
}
