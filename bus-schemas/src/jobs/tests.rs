//! Round trips of every jobs message.

use super::*;
use crate::codec::round_trip;

fn train() -> JobSpec {
    JobSpec::Train(TrainSpec {
        arch: "cnn".into(),
        name: "cnn".into(),
        dataset: "fashion-mnist".into(),
        epochs: 5,
        batch: 128,
        lr: None,
        limit: Some(1000),
        seed: 7,
        workers: 1,
    })
}

#[test]
fn jobs_messages_round_trip() {
    round_trip(JobsRequest::Submit { spec: train() });
    round_trip(JobsRequest::Get { id: "t-1".into() });
    round_trip(JobsReply::Submitted { id: "t-1".into() });
    round_trip(JobsRequest::Qps {
        policy: Some(QpsPolicy::Local),
    });
    round_trip(JobsReply::Qps {
        policy: QpsPolicy::Global,
    });
    round_trip(Settings::default());
    round_trip(JobRecord {
        id: "t-1".into(),
        spec: train(),
        state: JobState::Running,
        submitted_ms: 1,
        finished_ms: None,
        attempts: vec![Attempt {
            started_ms: None,
            attempt: 1,
            worker: "n2".into(),
            assigned_ms: 2,
            resumed_at_epoch: Some(0),
            generation: Some(7),
            died: Some("n2 was declared failed".into()),
            group: None,
        }],
        checkpoint_epochs: 1,
        checkpoint_version: Some(1),
        progress: Some(Progress::default()),
        outcome: None,
        error: None,
        serve: Some(ServeState {
            deaths: vec![crate::serve::BatchDeaths {
                batch_id: 3,
                workers: vec!["n1".into(), "n2".into()],
                last: "n2 was declared failed".into(),
            }],
            ..Default::default()
        }),
    });
    round_trip(JobEvent {
        job_id: "t-1".into(),
        event: JobEventKind::Reassigned,
        worker: Some("n3".into()),
        detail: None,
        at_ms: 3,
    });
    round_trip(Lease {
        node: "n1".into(),
        generation: 4,
        since_ms: 5,
    });
}

#[test]
fn spec_accessors_name_the_model_and_dataset() {
    let spec = train();
    assert_eq!(spec.model(), "cnn");
    assert_eq!(spec.dataset(), "fashion-mnist");
    assert_eq!(spec.kind(), "train");
    assert!(JobState::Cancelled.is_final() && !JobState::Queued.is_final());
}
