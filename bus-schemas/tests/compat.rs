//! Compatibility of error kinds across versions: a kind added by a newer writer reads as the
//! fallback kind of every error-kind enum, so an older reader still reads the whole reply.

use bus_schemas::control::ControlErrorKind;
use bus_schemas::infer::InferErrorKind;
use bus_schemas::jobs::JobsErrorKind;
use bus_schemas::sdfs::SdfsErrorKind;
use bus_schemas::serve::WorkErrorKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn read_as<K: DeserializeOwned>(kind: &str) -> K {
    let bytes = rmp_serde::to_vec(kind).expect("a string encodes");
    rmp_serde::from_slice(&bytes).expect("every kind reads")
}

fn round_trip<K: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(kind: K) {
    let bytes = rmp_serde::to_vec(&kind).expect("a kind encodes");
    assert_eq!(
        rmp_serde::from_slice::<K>(&bytes).expect("reads back"),
        kind
    );
}

#[test]
fn a_kind_added_later_reads_as_the_fallback() {
    let newer = "a_kind_added_in_a_later_version";
    assert_eq!(
        read_as::<ControlErrorKind>(newer),
        ControlErrorKind::Unknown
    );
    assert_eq!(read_as::<JobsErrorKind>(newer), JobsErrorKind::Unknown);
    assert_eq!(read_as::<SdfsErrorKind>(newer), SdfsErrorKind::Unknown);
    assert_eq!(read_as::<InferErrorKind>(newer), InferErrorKind::Other);
    assert_eq!(read_as::<WorkErrorKind>(newer), WorkErrorKind::Other);
}

#[test]
fn todays_kinds_keep_their_names() {
    assert_eq!(
        read_as::<ControlErrorKind>("wrong_state"),
        ControlErrorKind::WrongState
    );
    assert_eq!(
        read_as::<JobsErrorKind>("already_ended"),
        JobsErrorKind::AlreadyEnded
    );
    assert_eq!(
        read_as::<SdfsErrorKind>("quorum_not_met"),
        SdfsErrorKind::QuorumNotMet
    );
    assert_eq!(
        read_as::<InferErrorKind>("overloaded"),
        InferErrorKind::Overloaded
    );
    assert_eq!(
        read_as::<WorkErrorKind>("bad_batch"),
        WorkErrorKind::BadBatch
    );
    round_trip(ControlErrorKind::InvalidArgument);
    round_trip(JobsErrorKind::BadArgument);
}
