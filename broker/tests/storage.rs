//! Storage engine tests against real files: model-based operations with clean and
//! crash reopen, recovery from torn and corrupt tails, index rebuilds, retention with
//! an injected clock, and group commit.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::storage::{Durability, LogConfig, ManualClock, PartitionLog};
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::{RecordBatch, batch::RecordBatches};
use proptest::prelude::*;

/// A batch of `count` records whose values encode `tag` and their index.
fn batch(tag: u32, count: usize, timestamp_ms: i64) -> RecordBatch {
    let mut builder = BatchBuilder::new();
    for index in 0..count {
        let value = format!("{tag}:{index}");
        builder.push(&RecordInput {
            value: Some(value.as_bytes()),
            timestamp_ms,
            ..Default::default()
        });
    }
    RecordBatch::new(builder.finish()).unwrap()
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 200,
        index_bytes_max: 4096,
        durability: Durability::Interval {
            interval_ms: 1000,
            interval_bytes: 1 << 20,
        },
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig, clock: &ManualClock) -> Arc<PartitionLog> {
    PartitionLog::open(dir, config, Arc::new(clock.clone()))
        .unwrap()
        .0
}

/// Every record readable from `offset`, as (offset, value).
fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, String)> {
    let mut records = Vec::new();
    let mut offset = from;
    loop {
        let result = log.read(offset, 700, i64::MAX).unwrap();
        if result.records.is_empty() {
            return records;
        }
        for batch in RecordBatches::new(result.records) {
            let batch = batch.unwrap();
            batch.validate().unwrap();
            for record in batch.records() {
                let record = record.unwrap();
                if record.offset >= from {
                    records.push((
                        record.offset,
                        String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            offset = batch.next_offset();
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append { count: usize },
    Read { from_back: i64 },
    Truncate { back: i64 },
    DeleteBefore { forward: i64 },
    Retention { bytes: u64 },
    CleanReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..20).prop_map(|count| Op::Append { count }),
        2 => (0i64..40).prop_map(|from_back| Op::Read { from_back }),
        1 => (0i64..30).prop_map(|back| Op::Truncate { back }),
        1 => (0i64..10).prop_map(|forward| Op::DeleteBefore { forward }),
        1 => (0u64..5000).prop_map(|bytes| Op::Retention { bytes }),
        1 => Just(Op::CleanReopen),
        1 => Just(Op::CrashReopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The log behaves like a vector of records under appends, reads, truncation,
    /// record deletion, retention, clean reopen and crash reopen (drop without close).
    /// The model computes every log end and log start itself, from its own segments
    /// and batches; it never copies them from the log under test.
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let mut log = open(dir.path(), small_config(), &clock);
        // The model: every record's (offset, value) from the log start, and the
        // segments as the log lays them out (size-based rolling only: the clock never
        // reaches segment.ms and the small segments never fill an index).
        let mut model: Vec<(i64, String)> = Vec::new();
        let mut segments = vec![ModelSegment::new(0)];
        let mut log_start = 0i64;
        let mut end = 0i64;
        let mut tag = 0u32;
        for op in ops {
            match op {
                Op::Append { count } => {
                    tag += 1;
                    let appended = batch(tag, count, clock.now());
                    let bytes = appended.size_bytes() as u64;
                    let info = log.append(&[appended], 1).unwrap();
                    prop_assert_eq!(info.base_offset, end);
                    let active = segments.last().unwrap();
                    if !active.batches.is_empty() && active.size() + bytes > small_config().segment_bytes {
                        segments.push(ModelSegment::new(end));
                    }
                    segments.last_mut().unwrap().batches.push((end, count as i64, bytes));
                    for index in 0..count {
                        model.push((end + index as i64, format!("{tag}:{index}")));
                    }
                    end += count as i64;
                    log.set_high_watermark(end);
                }
                Op::Read { from_back } => {
                    let from = (end - from_back).max(log_start);
                    let expected: Vec<_> = model.iter().filter(|(offset, _)| *offset >= from).cloned().collect();
                    prop_assert_eq!(read_all(&log, from), expected);
                }
                Op::Truncate { back } => {
                    let target = (end - back).max(log_start);
                    let new_end = log.truncate_to(target).unwrap();
                    if target < end {
                        // Segments from the target on go; in the last one left, the
                        // batch holding the target and everything after it.
                        while segments.len() > 1 && segments.last().unwrap().base >= target {
                            segments.pop();
                        }
                        let active = segments.last_mut().unwrap();
                        active.batches.retain(|(base, count, _)| base + count <= target);
                        end = active.next_offset();
                        log_start = log_start.min(end);
                    }
                    prop_assert_eq!(new_end, end);
                    model.retain(|(offset, _)| *offset < end);
                    log.set_high_watermark(end);
                }
                Op::DeleteBefore { forward } => {
                    let target = (log_start + forward).min(end);
                    let new_start = log.delete_records_before(target).unwrap();
                    log_start = log_start.max(target);
                    while segments.len() > 1 && segments[0].next_offset() <= log_start {
                        segments.remove(0);
                        log_start = log_start.max(segments[0].base);
                    }
                    prop_assert_eq!(new_start, log_start);
                    model.retain(|(offset, _)| *offset >= log_start);
                }
                Op::Retention { bytes } => {
                    let mut config = small_config();
                    config.retention_bytes = Some(bytes);
                    log.set_config(config);
                    let deleted = log.apply_retention().unwrap();
                    log.set_config(small_config());
                    // Oldest sealed segments below the high watermark (the end) go
                    // while what remains without them is still at least the limit.
                    let mut size: u64 = segments.iter().map(ModelSegment::size).sum();
                    let mut expected_deleted = 0;
                    while segments.len() > 1
                        && segments[0].next_offset() <= end
                        && size - segments[0].size() >= bytes
                    {
                        size -= segments.remove(0).size();
                        log_start = log_start.max(segments[0].base);
                        expected_deleted += 1;
                    }
                    prop_assert_eq!(deleted, expected_deleted);
                    model.retain(|(offset, _)| *offset >= log_start);
                }
                Op::CleanReopen => {
                    log.close().unwrap();
                    drop(log);
                    let (reopened, report) = PartitionLog::open(dir.path(), small_config(), Arc::new(clock.clone())).unwrap();
                    prop_assert!(report.clean_shutdown);
                    prop_assert_eq!(report.segments_scanned, 0);
                    log = reopened;
                    log.set_high_watermark(end);
                }
                Op::CrashReopen => {
                    drop(log);
                    log = open(dir.path(), small_config(), &clock);
                    log.set_high_watermark(end);
                }
            }
            prop_assert_eq!(log.log_end_offset(), end);
            prop_assert_eq!(log.log_start_offset(), log_start);
            prop_assert_eq!(log.segment_count(), segments.len());
            prop_assert_eq!(log.size_bytes(), segments.iter().map(ModelSegment::size).sum::<u64>());
            clock.advance_ms(1);
        }
        prop_assert_eq!(read_all(&log, log_start), model);
    }
}

/// A segment as the model of `log_matches_model` sees it.
#[derive(Debug, Clone)]
struct ModelSegment {
    base: i64,
    /// (base offset, record count, bytes) of each batch.
    batches: Vec<(i64, i64, u64)>,
}

impl ModelSegment {
    /// Bytes of a segment's file header.
    const HEADER_BYTES: u64 = 24;

    fn new(base: i64) -> Self {
        Self {
            base,
            batches: Vec::new(),
        }
    }

    fn size(&self) -> u64 {
        Self::HEADER_BYTES + self.batches.iter().map(|(_, _, bytes)| bytes).sum::<u64>()
    }

    fn next_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.base, |(base, count, _)| base + count)
    }
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for ManualClock {
    fn now(&self) -> i64 {
        fjord_broker::storage::Clock::now_ms(self)
    }
}

/// Writes `batches` batches of 3 records into a fresh single-segment log and returns
/// the log file's path and the byte position where each batch ends.
fn write_segment(dir: &Path, batches: u32) -> (std::path::PathBuf, Vec<u64>) {
    let clock = ManualClock::new(1);
    let mut config = small_config();
    config.segment_bytes = 1 << 20;
    let log = open(dir, config, &clock);
    let mut ends = Vec::new();
    for tag in 0..batches {
        log.append(&[batch(tag, 3, 1)], 0).unwrap();
        ends.push(log.size_bytes());
    }
    drop(log); // a crash: no clean checkpoint, so reopening scans
    (dir.join(format!("{:020}.log", 0)), ends)
}

/// Cutting the segment at every byte inside its last batch, and flipping any single
/// byte of the last batch, leaves exactly the batches before the damage after recovery.
#[test]
fn recovery_keeps_exactly_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, ends) = write_segment(dir.path(), 4);
    let original = fs::read(&log_path).unwrap();
    let last_start = ends[2] as usize;
    let check = |bytes: &[u8], expected_end: i64, what: &str| {
        let case = tempfile::tempdir().unwrap();
        fs::copy(
            dir.path().join("checkpoint"),
            case.path().join("checkpoint"),
        )
        .unwrap();
        fs::write(case.path().join(format!("{:020}.log", 0)), bytes).unwrap();
        let clock = ManualClock::new(1);
        let (log, report) =
            PartitionLog::open(case.path(), small_config(), Arc::new(clock)).unwrap();
        assert_eq!(log.log_end_offset(), expected_end, "{what}");
        assert_eq!(
            report.truncated_bytes,
            bytes.len() as u64 - ends[(expected_end / 3) as usize - 1],
            "{what}"
        );
        assert_eq!(read_all(&log, 0).len() as i64, expected_end, "{what}");
        // The repaired log takes new appends at the right offset.
        assert_eq!(
            log.append(&[batch(99, 1, 1)], 0).unwrap().base_offset,
            expected_end,
            "{what}"
        );
    };
    for cut in last_start + 1..original.len() {
        check(&original[..cut], 9, &format!("cut at {cut}"));
    }
    for flip in last_start..original.len() {
        // Bytes 0..8 (base offset) and 12..16 (epoch) of a batch are not covered by the
        // CRC; a changed base offset is caught by the offset sequence check instead.
        let within = flip - last_start;
        if (12..16).contains(&within) {
            continue;
        }
        let mut damaged = original.clone();
        damaged[flip] ^= 0x10;
        check(&damaged, 9, &format!("flip at {flip}"));
    }
}

/// Missing and damaged index files are rebuilt from the log, and lookups still work.
#[test]
fn indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let log = open(dir.path(), small_config(), &clock);
    for tag in 0..30 {
        log.append(&[batch(tag, 2, 1000 + i64::from(tag))], 0)
            .unwrap();
    }
    log.set_high_watermark(60);
    let expected = read_all(&log, 0);
    log.close().unwrap();
    drop(log);
    let mut indexes: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    indexes.sort();
    assert!(indexes.len() >= 4, "several segments expected");
    fs::remove_file(&indexes[0]).unwrap();
    fs::write(&indexes[1], b"garbage").unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), Arc::new(clock)).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(read_all(&log, 0), expected);
    assert_eq!(read_all(&log, 37), expected[37..]);
    assert_eq!(log.offset_for_timestamp(1010).unwrap(), Some((20, 1010)));
    assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
    assert!(dir.path().join(indexes[0].file_name().unwrap()).exists());
}

/// Retention deletes whole sealed segments by size and by age (injected clock), never
/// the active segment, and moves the log start.
#[test]
fn retention_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = open(dir.path(), small_config(), &clock);
    for tag in 0..100 {
        log.append(&[batch(tag, 4, clock.now())], 0).unwrap();
        clock.advance_ms(1000);
    }
    log.set_high_watermark(log.log_end_offset());
    let segments = log.segment_count();
    assert!(segments > 4);

    let mut config = small_config();
    config.retention_bytes = Some(4096);
    log.set_config(config);
    assert!(log.apply_retention().unwrap() > 0);
    assert!(log.size_bytes() >= 4096 && log.size_bytes() < 4096 + 2048 + 100);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(read_all(&log, start).first().map(|r| r.0), Some(start));

    let mut config = small_config();
    config.retention_ms = Some(10_000);
    log.set_config(config);
    clock.advance_ms(1_000_000);
    log.apply_retention().unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "everything expired but the active segment"
    );
    assert_eq!(log.log_end_offset(), 400);
}

/// Concurrent appenders under the fsync policy all get durable, distinct offsets and
/// share fsyncs (counted: commits of appends written before a flush started are all
/// served by that one flush); after a crash every committed record is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_concurrent_appenders() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let mut config = small_config();
    config.segment_bytes = 1 << 20;
    config.durability = Durability::Fsync;
    let log = open(dir.path(), config.clone(), &clock);
    let mut tasks = Vec::new();
    for appender in 0..8u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for round in 0..20u32 {
                let info = log
                    .append(&[batch(appender * 1000 + round, 5, 1)], 0)
                    .unwrap();
                log.commit(&info).await.unwrap();
                offsets.push(info.base_offset);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..160).map(|i| i * 5).collect::<Vec<_>>());
    println!(
        "measured: {} flushes for 160 concurrent commits",
        log.flush_count()
    );

    // Eight appends written before any of their commits starts: the first commit's
    // fsync covers all eight, so a round costs one flush where one fsync per commit
    // would cost eight. At most one more may run: a waiter that read the durable
    // offset just before the previous flush published it starts a redundant flush
    // (seen once under load; see the report on log.rs wait_durable). Counted from
    // before the appends, so that a commit that skipped its fsync would show as 0.
    for round in 0..5u32 {
        let before = log.flush_count();
        let appended: Vec<_> = (0..8u32)
            .map(|appender| {
                log.append(&[batch(10_000 + round * 100 + appender, 5, 1)], 0)
                    .unwrap()
            })
            .collect();
        futures::future::join_all(appended.iter().map(|info| log.commit(info)))
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .unwrap();
        let flushes = log.flush_count() - before;
        assert!(
            (1..=2).contains(&flushes),
            "round {round}: {flushes} flushes for eight commits"
        );
    }
    drop(log);
    let log = open(dir.path(), config, &clock);
    assert_eq!(log.log_end_offset(), 1000);
}

/// Reads stop at the offset limit (the high watermark) and return whole batches, at
/// least one even when it is larger than the byte budget.
#[test]
fn reads_respect_limit_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let log = open(dir.path(), small_config(), &clock);
    for tag in 0..5 {
        log.append(&[batch(tag, 10, 1)], 0).unwrap();
    }
    let result = log.read(0, 1, 30).unwrap();
    let batches: Vec<_> = RecordBatches::new(result.records).collect();
    assert_eq!(batches.len(), 1, "one batch despite a 1-byte budget");
    let result = log.read(0, 1 << 20, 30).unwrap();
    assert_eq!(
        RecordBatches::new(result.records).count(),
        3,
        "stops at the limit"
    );
    assert_eq!(log.read(30, 1 << 20, 30).unwrap().records, Bytes::new());
    assert!(log.read(51, 100, i64::MAX).is_err(), "past the end");
    let from_middle = log.read(15, 1 << 20, i64::MAX).unwrap().records;
    let first = RecordBatches::new(from_middle).next().unwrap().unwrap();
    assert_eq!(first.base_offset(), 10, "the batch holding offset 15");
}

/// After a crash recovery that rebuilt the indexes of sealed segments, a clean close
/// and reopen scans nothing: rebuilt indexes are trimmed like any sealed index.
#[test]
fn clean_open_after_crash_recovery_scans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let log = open(dir.path(), small_config(), &clock);
    for tag in 0..120 {
        log.append(&[batch(tag, 3, 1)], 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    drop(log); // crash: nothing was fsynced, so recovery scans every segment
    let (log, report) =
        PartitionLog::open(dir.path(), small_config(), Arc::new(clock.clone())).unwrap();
    assert!(!report.clean_shutdown);
    assert_eq!(report.segments_scanned, report.segments);
    log.close().unwrap();
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config(), Arc::new(clock)).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(log.log_end_offset(), 360);
}

/// A failed write is fatal for the log: the append that hit it fails, every later append
/// is refused with the reason (the log is offline, not silently continuing), and what
/// was written before stays readable. The failure is real: the next segment's file
/// name points at /dev/full, so creating it fails with "No space left on device".
#[test]
fn a_failed_write_takes_the_log_offline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let log = open(dir.path(), small_config(), &clock);
    for base in 1..400 {
        std::os::unix::fs::symlink("/dev/full", dir.path().join(format!("{base:020}.log")))
            .unwrap();
    }
    let mut appended = 0;
    let failure = loop {
        match log.append(&[batch(appended as u32, 3, 1)], 0) {
            Ok(_) => appended += 3,
            Err(error) => break error,
        }
        assert!(appended < 1200, "the segment never rolled");
    };
    assert!(
        failure.to_string().contains("No space left on device"),
        "{failure}"
    );
    assert_eq!(
        failure.error_code(),
        fjord_protocol::ErrorCode::StorageError
    );
    let refused = log.append(&[batch(999, 1, 1)], 0).unwrap_err();
    assert!(refused.to_string().contains("offline"), "{refused}");
    assert!(
        log.flush().is_err(),
        "flush must not report success on an offline log"
    );
    assert_eq!(log.log_end_offset(), appended);
    assert_eq!(read_all(&log, 0).len() as i64, appended);
}
