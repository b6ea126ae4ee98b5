//! Every bus message type, fed arbitrary bytes, well-formed maps with hostile values, and
//! MessagePack headers that claim huge lengths: decoding returns a value or a typed error,
//! never panics, and never makes an allocation much larger than the payload.
//!
//! One test in this binary on purpose: a counting allocator measures the largest single
//! allocation while decoding, and no other test thread may allocate meanwhile.

use bus_schemas::{control, fsck, infer, jobs, membership, sdfs, serve};
use bus_schemas::{decode, Message};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest allocation any decode may make for a payload of `len` bytes.
fn allowed(len: usize) -> usize {
    64 * 1024 + 64 * len
}

fn one<T: Message + std::fmt::Debug>(bytes: &[u8]) {
    LARGEST.store(0, Ordering::Relaxed);
    let decoded = decode::<T>(bytes);
    let largest = LARGEST.load(Ordering::Relaxed);
    drop(decoded);
    assert!(
        largest <= allowed(bytes.len()),
        "{}: {largest} bytes allocated for a {}-byte payload",
        T::NAME,
        bytes.len()
    );
}

/// Decodes `bytes` as every message type.
fn every(bytes: &[u8]) {
    one::<membership::FdMessage>(bytes);
    one::<membership::MemberEvent>(bytes);
    one::<membership::ViewRequest>(bytes);
    one::<membership::ViewSnapshot>(bytes);
    one::<control::ControlRequest>(bytes);
    one::<control::ControlReply>(bytes);
    one::<sdfs::SdfsRequest>(bytes);
    one::<sdfs::SdfsReply>(bytes);
    one::<sdfs::StoreRequest>(bytes);
    one::<sdfs::StoreReply>(bytes);
    one::<sdfs::ChunkRequest>(bytes);
    one::<sdfs::Chunk>(bytes);
    one::<sdfs::FileInfo>(bytes);
    one::<fsck::MetaEpoch>(bytes);
    one::<fsck::BlobLabel>(bytes);
    one::<fsck::InventoryRequest>(bytes);
    one::<fsck::InventoryReply>(bytes);
    one::<serve::AssignRequest>(bytes);
    one::<serve::AssignReply>(bytes);
    one::<serve::WorkBatch>(bytes);
    one::<serve::WorkReply>(bytes);
    one::<serve::ResultsBatch>(bytes);
    one::<infer::InferRequest>(bytes);
    one::<infer::InferReply>(bytes);
    one::<jobs::JobsRequest>(bytes);
    one::<jobs::JobsReply>(bytes);
    one::<jobs::JobEvent>(bytes);
    one::<jobs::JobRecord>(bytes);
    one::<jobs::Progress>(bytes);
}

/// Field names and tags the messages use, so that random maps reach deep into the decoders.
const KEYS: &[&str] = &[
    "type",
    "op",
    "reply",
    "kind",
    "from",
    "node",
    "id",
    "name",
    "job_id",
    "batch_id",
    "len",
    "first_query",
    "generation",
    "incarnation",
    "members",
    "blob",
    "size",
    "sha256",
    "source",
    "chunk_size",
    "data",
    "offset",
    "versions",
    "replicas",
    "attrs",
    "images",
    "timeout_ms",
    "results",
    "label",
    "spec",
    "target",
    "model",
    "version",
    "state",
    "host",
    "http",
    "files",
];
const TAGS: &[&str] = &[
    "ping", "ack", "ping_req", "join", "leave", "members", "prepare", "commit", "ls", "restore",
    "done", "error", "submit", "list", "get", "cancel", "serve", "train", "alive", "failed",
];

fn value() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        Just(rmpv::Value::from(u64::MAX)),
        any::<f64>().prop_map(rmpv::Value::from),
        proptest::sample::select(TAGS).prop_map(rmpv::Value::from),
        ".{0,12}".prop_map(rmpv::Value::from),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(rmpv::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(rmpv::Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |kv| { rmpv::Value::Map(kv.into_iter().map(|(k, v)| (k.into(), v)).collect()) }
            ),
        ]
    })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..10).prop_map(|kv| {
        let mut map = vec![(rmpv::Value::from("schema_version"), rmpv::Value::from(1))];
        map.extend(kv.into_iter().map(|(k, v)| (rmpv::Value::from(k), v)));
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(map)).expect("encodes");
        bytes
    })
}

/// MessagePack headers that claim far more elements or bytes than follow.
fn lying_lengths() -> Vec<Vec<u8>> {
    let version = [
        0xae, b's', b'c', b'h', b'e', b'm', b'a', b'_', b'v', b'e', b'r', b's', b'i', b'o', b'n',
        0x01,
    ];
    let mut out = Vec::new();
    for key in KEYS {
        for claim in [
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],       // array of 4 billion
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],       // map of 4 billion
            vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'], // string of 4 GB
            vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00], // binary of 4 GB
        ] {
            let mut m = vec![0x82];
            m.extend_from_slice(&version);
            m.push(0xa0 | key.len() as u8);
            m.extend_from_slice(key.as_bytes());
            m.extend_from_slice(&claim);
            out.push(m);
        }
    }
    out
}

#[test]
fn no_payload_panics_or_allocates_beyond_its_size() {
    for bytes in lying_lengths() {
        every(&bytes);
    }
    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
            every(&bytes);
            Ok(())
        })
        .expect("arbitrary bytes");
    runner
        .run(&message(), |bytes| {
            every(&bytes);
            Ok(())
        })
        .expect("hostile maps");
}
