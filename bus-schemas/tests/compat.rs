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

/// A refusal as a worker before `transient` wrote it.
#[derive(Serialize)]
struct RefusalBeforeTransient<'a> {
    reply: &'a str,
    worker: &'a str,
    message: &'a str,
    bad_input: bool,
}

#[test]
fn a_refusal_without_transient_reads_as_lasting_and_a_new_one_reads_both_ways() {
    use bus_schemas::serve::AssignReply;
    let old = RefusalBeforeTransient {
        reply: "error",
        worker: "n1",
        message: "no space",
        bad_input: false,
    };
    let bytes = rmp_serde::to_vec_named(&old).expect("encodes");
    let read: AssignReply = rmp_serde::from_slice(&bytes).expect("a new reader reads it");
    assert_eq!(
        read,
        AssignReply::Error {
            worker: "n1".into(),
            message: "no space".into(),
            bad_input: false,
            transient: false,
        }
    );
    // An older reader ignores the field it does not know.
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct OlderReader {
        reply: String,
        message: String,
        bad_input: bool,
    }
    let new = AssignReply::Error {
        worker: "n1".into(),
        message: "file store: no answer".into(),
        bad_input: false,
        transient: true,
    };
    let bytes = rmp_serde::to_vec_named(&new).expect("encodes");
    let older: OlderReader = rmp_serde::from_slice(&bytes).expect("an older reader reads it");
    assert_eq!(older.message, "file store: no answer");
    assert_eq!(older.reply, "error");
    assert!(!older.bad_input);
}

#[test]
fn a_bare_list_and_ls_of_an_older_client_read_as_first_pages_and_older_replies_as_whole() {
    use bus_schemas::jobs::{JobsFilter, JobsReply, JobsRequest};
    use bus_schemas::sdfs::{SdfsReply, SdfsRequest};
    #[derive(Serialize)]
    struct Op<'a> {
        op: &'a str,
    }
    let bytes = rmp_serde::to_vec_named(&Op { op: "list" }).expect("encodes");
    let read: JobsRequest = rmp_serde::from_slice(&bytes).expect("reads");
    assert_eq!(
        read,
        JobsRequest::List {
            which: JobsFilter::All,
            limit: None,
            after: None
        }
    );
    #[derive(Serialize)]
    struct Ls<'a> {
        op: &'a str,
        name: &'a str,
    }
    let bytes = rmp_serde::to_vec_named(&Ls {
        op: "ls",
        name: "d",
    })
    .expect("encodes");
    let read: SdfsRequest = rmp_serde::from_slice(&bytes).expect("reads");
    assert_eq!(
        read,
        SdfsRequest::Ls {
            name: "d".into(),
            limit: None,
            after: None
        }
    );
    #[derive(Serialize)]
    struct Whole<'a> {
        reply: &'a str,
        jobs: Vec<u8>,
        files: Vec<u8>,
    }
    let whole = |reply| {
        let w = Whole {
            reply,
            jobs: Vec::new(),
            files: Vec::new(),
        };
        rmp_serde::to_vec_named(&w).expect("encodes")
    };
    let jobs: JobsReply = rmp_serde::from_slice(&whole("jobs")).expect("reads");
    assert_eq!(
        jobs,
        JobsReply::Jobs {
            jobs: Vec::new(),
            next: None
        }
    );
    let files: SdfsReply = rmp_serde::from_slice(&whole("listing")).expect("reads");
    assert_eq!(
        files,
        SdfsReply::Listing {
            files: Vec::new(),
            next: None
        }
    );
}
