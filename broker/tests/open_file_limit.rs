//! The real `fjord-broker` under a low open-file limit: a topic with a thousand tiny
//! segments keeps serving reads of its oldest segment, an unrelated topic keeps
//! working, and a restart under the same limit succeeds.
//!
//! This binary holds one test only: it lowers its own soft open-file limit, which the
//! broker child inherits.

mod common;

use std::time::Instant;

use common::BrokerProcess;
use common::blocking_client::{Client, create_topic, values, values_batch, wait_ready};
use fjord_protocol::ErrorCode;
use serde_json::json;

/// The soft open-file limit the broker runs under.
const OPEN_FILES_LIMIT: u64 = 512;
/// Segments the small-segment topic ends up with: far more than the limit would allow
/// if every sealed segment kept its three files open.
const SEGMENTS: usize = 1_000;

#[test]
fn thousands_of_segments_fit_a_low_open_file_limit() {
    let limits = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let lowered = rustix::process::Rlimit {
        current: Some(OPEN_FILES_LIMIT),
        maximum: limits.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, lowered)
        .expect("lower the soft open-file limit");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut broker = BrokerProcess::spawn(dir.path(), &data_dir, &[]);
    let bound = broker.addresses_blocking();
    wait_ready(bound.http_listen);
    create_topic(
        bound.http_listen,
        "tiny",
        1,
        json!({"segment.bytes": 1024, "max.message.bytes": 1024}),
    );
    let mut client = Client::connect(bound.listen);
    // One batch of ~600 bytes per request: every request rolls a segment.
    let started = Instant::now();
    for index in 0..SEGMENTS {
        let code = client.produce(
            "tiny",
            0,
            values_batch(&format!("{index:05}-{}", "x".repeat(40)), 12),
        );
        assert_eq!(
            code,
            ErrorCode::None,
            "produce {index} to the small-segment topic"
        );
    }
    println!("{SEGMENTS} segments written in {:?}", started.elapsed());
    let segment_files = std::fs::read_dir(data_dir.join("tiny-0"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert!(segment_files >= SEGMENTS, "{segment_files} segments");
    let open_files = std::fs::read_dir(format!("/proc/{}/fd", broker.id()))
        .map(|entries| entries.count())
        .unwrap_or(0);
    println!("{segment_files} segment files; the broker holds {open_files} open files");

    // Every old segment reads back, each through the bounded set of open files.
    let expect_first = |records: Vec<(i64, String)>, offset: i64, index: usize| {
        assert_eq!(records.first().map(|record| record.0), Some(offset));
        assert!(
            records[0].1.starts_with(&format!("{index:05}-")),
            "{records:?}"
        );
    };
    for index in (0..SEGMENTS).step_by(7) {
        let offset = (index * 12) as i64;
        let fetched = client.fetch("tiny", 0, offset);
        assert_eq!(fetched.error_code, ErrorCode::None, "fetch at {offset}");
        expect_first(values(fetched.records), offset, index);
    }
    // An unrelated topic is created and serves.
    create_topic(bound.http_listen, "other", 3, json!({}));
    for partition in 0..3 {
        assert_eq!(
            client.produce("other", partition, values_batch("other", 5)),
            ErrorCode::None
        );
        let fetched = client.fetch("other", partition, 0);
        assert_eq!(values(fetched.records).len(), 5);
    }
    drop(client);

    // A restart under the same limit opens every segment and serves the oldest.
    let status = broker.terminate_blocking();
    assert!(status.success(), "clean exit: {status}");
    let mut broker = BrokerProcess::spawn(dir.path(), &data_dir, &[]);
    let bound = broker.addresses_blocking();
    let ready = wait_ready(bound.http_listen);
    println!("ready {ready:?} after the restart");
    let mut client = Client::connect(bound.listen);
    let fetched = client.fetch("tiny", 0, 0);
    assert_eq!(
        fetched.error_code,
        ErrorCode::None,
        "after the restart:\n{}",
        broker.log()
    );
    assert_eq!(fetched.high_watermark, (SEGMENTS * 12) as i64);
    expect_first(values(fetched.records), 0, 0);
    assert_eq!(
        client.produce("tiny", 0, values_batch("after", 3)),
        ErrorCode::None
    );
    assert_eq!(
        client.produce("other", 1, values_batch("after", 3)),
        ErrorCode::None
    );
    assert_eq!(values(client.fetch("other", 1, 0).records).len(), 8);
}
