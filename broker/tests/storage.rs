//! Storage engine tests against real files: model-based operations with clean and
//! crash reopen, recovery from torn and corrupt tails, index rebuilds, retention with
//! an injected clock, and group commit.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_broker::storage::{Durability, LogConfig, ManualClock, PartitionLog, RecoveryMode};
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
            if batch.record_count() == 0 {
                // A gap batch, standing for offsets lost and skipped (skip_gap).
                batch.verify_crc().unwrap();
            } else {
                batch.validate().unwrap();
            }
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

/// The model of a log after some operations: every record's (offset, value) from the
/// log start, the log start and the log end.
struct Model {
    records: Vec<(i64, String)>,
    log_start: i64,
    end: i64,
}

/// Runs `ops` on the log in `dir`, checking it against the model after each; returns
/// the log and the model.
fn run_model(
    dir: &Path,
    clock: &ManualClock,
    ops: Vec<Op>,
) -> Result<(Arc<PartitionLog>, Model), TestCaseError> {
    let mut log = open(dir, small_config(), clock);
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
                if !active.batches.is_empty()
                    && active.size() + bytes > small_config().segment_bytes
                {
                    segments.push(ModelSegment::new(end));
                }
                segments
                    .last_mut()
                    .unwrap()
                    .batches
                    .push((end, count as i64, bytes));
                for index in 0..count {
                    model.push((end + index as i64, format!("{tag}:{index}")));
                }
                end += count as i64;
                log.set_high_watermark(end);
            }
            Op::Read { from_back } => {
                let from = (end - from_back).max(log_start);
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(offset, _)| *offset >= from)
                    .cloned()
                    .collect();
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
                    active
                        .batches
                        .retain(|(base, count, _)| base + count <= target);
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
                let (reopened, report) =
                    PartitionLog::open(dir, small_config(), Arc::new(clock.clone())).unwrap();
                prop_assert!(report.clean_shutdown);
                prop_assert_eq!(report.segments_scanned, 0);
                log = reopened;
                log.set_high_watermark(end);
            }
            Op::CrashReopen => {
                drop(log);
                log = open(dir, small_config(), clock);
                log.set_high_watermark(end);
            }
        }
        prop_assert_eq!(log.log_end_offset(), end);
        prop_assert_eq!(log.log_start_offset(), log_start);
        prop_assert_eq!(log.segment_count(), segments.len());
        prop_assert_eq!(
            log.size_bytes(),
            segments.iter().map(ModelSegment::size).sum::<u64>()
        );
        clock.advance_ms(1);
    }
    Ok((
        log,
        Model {
            records: model,
            log_start,
            end,
        },
    ))
}

/// Damage done to a durable log's files while the broker is down.
#[derive(Debug, Clone)]
enum Damage {
    /// Remove a sealed segment's `.log` file.
    DeleteSealedSegment { segment: prop::sample::Index },
    /// Point an offset index entry of a sealed segment at another entry's batch.
    IndexEntry {
        segment: prop::sample::Index,
        entry: prop::sample::Index,
        target: prop::sample::Index,
    },
    /// Flip one bit of a sealed segment's `.log` file.
    FlipBit {
        segment: prop::sample::Index,
        byte: prop::sample::Index,
        bit: u8,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    use prop::sample::Index;
    prop_oneof![
        any::<Index>().prop_map(|segment| Damage::DeleteSealedSegment { segment }),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(segment, entry, target)| {
            Damage::IndexEntry {
                segment,
                entry,
                target,
            }
        }),
        (any::<Index>(), any::<Index>(), 0u8..8).prop_map(|(segment, byte, bit)| Damage::FlipBit {
            segment,
            byte,
            bit
        }),
    ]
}

/// Every record readable from `from`, or the first error a reader would see: the
/// log's, or a batch that does not verify (CRC, framing).
fn read_all_checked(log: &PartitionLog, from: i64) -> Result<Vec<(i64, String)>, String> {
    let mut records = Vec::new();
    let mut offset = from;
    for _ in 0..100_000 {
        let result = log
            .read(offset, 700, i64::MAX)
            .map_err(|error| error.to_string())?;
        if result.records.is_empty() {
            return Ok(records);
        }
        for batch in RecordBatches::new(result.records) {
            let batch = batch.map_err(|error| error.to_string())?;
            if batch.record_count() == 0 {
                batch.verify_crc().map_err(|error| error.to_string())?;
            } else {
                batch.validate().map_err(|error| error.to_string())?;
            }
            for record in batch.records() {
                let record = record.map_err(|error| error.to_string())?;
                if record.offset >= from {
                    let value = record.value.map(|value| value.to_vec()).unwrap_or_default();
                    records.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
                }
            }
            offset = batch.next_offset();
        }
    }
    Err("the read loop did not end".into())
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
        let (log, model) = run_model(dir.path(), &clock, ops)?;
        prop_assert_eq!(read_all(&log, model.log_start), model.records);
    }

    /// After the model's operations, everything made durable (a clean close, or a
    /// flush and checkpoint then a crash), one file damaged, and a reopen: the log
    /// serves exactly the model's records, or refuses with a clear error (at open, or
    /// at the read that reaches the damage); never fewer or other records. A refused
    /// open deletes nothing, and `skip_gap` then serves every record but the lost ones.
    #[test]
    fn damaged_log_serves_the_truth_or_refuses(
        ops in proptest::collection::vec(op(), 10..60),
        damage in damage(),
        clean in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let (log, model) = run_model(dir.path(), &clock, ops)?;
        if clean {
            log.close().unwrap();
        } else {
            log.flush().unwrap();
            log.checkpoint().unwrap();
        }
        drop(log);
        let bases = segment_bases(dir.path());
        prop_assume!(bases.len() >= 2, "no sealed segment");
        let sealed = &bases[..bases.len() - 1];
        let expected = model.records.clone();
        match damage {
            Damage::DeleteSealedSegment { segment } => {
                let index = segment.index(sealed.len());
                let (from, to) = (bases[index], bases[index + 1]);
                fs::remove_file(log_path(dir.path(), from)).unwrap();
                match open_with(dir.path(), RecoveryMode::Refuse) {
                    Ok(log) => prop_assert_eq!(read_all_checked(&log, model.log_start), Ok(expected.clone())),
                    Err(error) => {
                        let message = error.to_string();
                        prop_assert!(message.contains("offline until an operator"), "{}", message);
                        prop_assert_eq!(segment_bases(dir.path()).len(), bases.len() - 1, "nothing deleted");
                        let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
                        let kept: Vec<_> = expected
                            .iter()
                            .filter(|(offset, _)| *offset < from || *offset >= to)
                            .cloned()
                            .collect();
                        prop_assert_eq!(read_all_checked(&log, log.log_start_offset()), Ok(kept));
                        prop_assert_eq!(log.log_end_offset(), model.end);
                    }
                }
            }
            Damage::IndexEntry { segment, entry, target } => {
                let base = sealed[segment.index(sealed.len())];
                let path = dir.path().join(format!("{base:020}.index"));
                let mut bytes = fs::read(&path).unwrap();
                let entries = (bytes.len() - 24) / 16;
                prop_assume!(entries >= 2, "one index entry");
                let (entry, target) = (entry.index(entries), target.index(entries));
                prop_assume!(entry != target);
                let position = |entry: usize| 24 + entry * 16 + 8;
                let moved: [u8; 8] = bytes[position(target)..position(target) + 8].try_into().unwrap();
                bytes[position(entry)..position(entry) + 8].copy_from_slice(&moved);
                fs::write(&path, &bytes).unwrap();
                // Indexes are a cache: the log opens and serves exactly the truth.
                let log = open_with(dir.path(), RecoveryMode::Refuse).unwrap();
                for from in (model.log_start..model.end).step_by(7).chain([model.log_start]) {
                    let suffix: Vec<_> = expected.iter().filter(|(offset, _)| *offset >= from).cloned().collect();
                    prop_assert_eq!(read_all_checked(&log, from), Ok(suffix), "from {}", from);
                }
            }
            Damage::FlipBit { segment, byte, bit } => {
                let base = sealed[segment.index(sealed.len())];
                let path = log_path(dir.path(), base);
                let mut bytes = fs::read(&path).unwrap();
                let byte = byte.index(bytes.len());
                // The partition leader epoch (bytes 12..16 of a batch) is covered by
                // neither the CRC nor any offset check; it does not change records.
                let in_epoch = batch_starts(&bytes)
                    .iter()
                    .any(|start| (start + 12..start + 16).contains(&byte));
                prop_assume!(!in_epoch);
                bytes[byte] ^= 1 << bit;
                fs::write(&path, &bytes).unwrap();
                match open_with(dir.path(), RecoveryMode::Refuse) {
                    Err(error) => prop_assert!(error.to_string().contains(&format!("{base:020}.log")), "{}", error),
                    Ok(log) => {
                        for from in [model.log_start, base.max(model.log_start)] {
                            let suffix: Vec<_> = expected.iter().filter(|(offset, _)| *offset >= from).cloned().collect();
                            if let Ok(records) = read_all_checked(&log, from) {
                                prop_assert_eq!(records, suffix, "from {}", from);
                            }
                        }
                    }
                }
            }
        }
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

/// A log of 200 batches of 2 records in segments of about 2 KiB, closed cleanly;
/// returns the base offsets of its segments and every record.
fn write_segmented_log(dir: &Path) -> (Vec<i64>, Vec<(i64, String)>) {
    let clock = ManualClock::new(1);
    let log = open(dir, small_config(), &clock);
    for tag in 0..200 {
        log.append(&[batch(tag, 2, 1)], 0).unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let records = read_all(&log, 0);
    log.close().unwrap();
    (segment_bases(dir), records)
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log").map(|stem| stem.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn log_path(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn open_with(
    dir: &Path,
    mode: RecoveryMode,
) -> Result<Arc<PartitionLog>, fjord_broker::storage::StorageError> {
    PartitionLog::open_with(dir, small_config(), Arc::new(ManualClock::new(1)), mode)
        .map(|(log, _)| log)
}

/// A sealed segment file removed below the recovery point (after a clean shutdown, and
/// after a crash): opening refuses the log with an error naming the file and deletes
/// nothing; `skip_gap` then keeps every other record and the log end, and the hole
/// stays accepted across restarts; `truncate` keeps exactly the records before it.
#[test]
fn a_missing_segment_below_the_recovery_point_deletes_nothing() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (bases, records) = write_segmented_log(dir.path());
        assert!(bases.len() >= 6, "{bases:?}");
        if crash {
            // Everything durable, but the checkpoint is not clean: recovery scans.
            let log = open(dir.path(), small_config(), &ManualClock::new(1));
            log.flush().unwrap();
            log.checkpoint().unwrap();
            drop(log);
        }
        let (gone_from, gone_to) = (bases[2], bases[3]);
        fs::remove_file(log_path(dir.path(), gone_from)).unwrap();
        let error = open_with(dir.path(), RecoveryMode::Refuse).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("{gone_from:020}.log")),
            "{message}"
        );
        assert!(message.contains("missing"), "{message}");
        assert_eq!(
            segment_bases(dir.path()).len(),
            bases.len() - 1,
            "nothing deleted"
        );
        // The same refusal again: refusing changed nothing.
        assert!(open_with(dir.path(), RecoveryMode::Refuse).is_err());

        let copy = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }

        let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
        let kept: Vec<_> = records
            .iter()
            .filter(|(offset, _)| *offset < gone_from || *offset >= gone_to)
            .cloned()
            .collect();
        assert_eq!(read_all(&log, 0), kept, "crash {crash}");
        assert_eq!(log.log_end_offset(), records.len() as i64);
        assert_eq!(read_all(&log, gone_from + 1), kept[gone_from as usize..]);
        log.close().unwrap();
        drop(log);
        let log = open_with(dir.path(), RecoveryMode::Refuse).unwrap();
        assert_eq!(read_all(&log, 0), kept, "the hole stays accepted");
        assert_eq!(
            log.append(&[batch(99, 1, 1)], 0).unwrap().base_offset,
            records.len() as i64
        );

        let log = open_with(copy.path(), RecoveryMode::Truncate).unwrap();
        assert_eq!(read_all(&log, 0), records[..gone_from as usize]);
        assert_eq!(log.log_end_offset(), gone_from);
        drop(log);
        assert!(open_with(copy.path(), RecoveryMode::Refuse).is_ok());
    }
}

/// The segment files after the recovery point's segment all removed, and the first
/// segment removed: both are lost durable data, refused until skip_gap (which keeps
/// the log end, or moves the log start).
#[test]
fn missing_first_and_last_segments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bases, records) = write_segmented_log(dir.path());
    let last = *bases.last().unwrap();
    fs::remove_file(log_path(dir.path(), last)).unwrap();
    let message = open_with(dir.path(), RecoveryMode::Refuse)
        .unwrap_err()
        .to_string();
    assert!(message.contains(&format!("{last:020}.log")), "{message}");
    let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
    assert_eq!(log.log_end_offset(), records.len() as i64);
    assert_eq!(read_all(&log, 0), records[..last as usize]);
    log.close().unwrap();
    drop(log);

    fs::remove_file(log_path(dir.path(), 0)).unwrap();
    let message = open_with(dir.path(), RecoveryMode::Refuse)
        .unwrap_err()
        .to_string();
    assert!(message.contains("start of the log"), "{message}");
    let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
    assert_eq!(log.log_start_offset(), bases[1]);
    assert_eq!(
        read_all(&log, bases[1]),
        records[bases[1] as usize..last as usize]
    );
}

/// Byte positions where each batch of a segment file starts.
fn batch_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut position = 24;
    while position < bytes.len() {
        starts.push(position);
        position += 12
            + u32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap()) as usize;
    }
    starts
}

/// A damaged batch in a sealed segment below the recovery point (the last batch's
/// length field changed, which a clean open notices) is refused, not cut; skip_gap
/// keeps the later segments, truncate cuts there. Damage a clean open does not walk
/// over (a middle batch) fails the read that reaches it, never serving other data.
#[test]
fn a_damaged_segment_below_the_recovery_point_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bases, records) = write_segmented_log(dir.path());
    let path = log_path(dir.path(), bases[1]);
    let original = fs::read(&path).unwrap();
    let starts = batch_starts(&original);
    let mut bytes = original.clone();
    bytes[starts[starts.len() - 1] + 8] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let message = open_with(dir.path(), RecoveryMode::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("{:020}.log", bases[1])),
        "{message}"
    );
    assert!(message.contains("recovery point"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing cut");
    assert_eq!(segment_bases(dir.path()), bases);

    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let damaged_at = bases[2] - 2; // the last batch of the segment, 2 records
    let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
    let kept: Vec<_> = records
        .iter()
        .filter(|(offset, _)| *offset < damaged_at || *offset >= bases[2])
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), kept);
    assert_eq!(log.log_end_offset(), records.len() as i64);
    let log = open_with(copy.path(), RecoveryMode::Truncate).unwrap();
    assert_eq!(read_all(&log, 0), records[..damaged_at as usize]);

    // A middle batch's length: the clean open trusts the segment, the read refuses.
    let dir = tempfile::tempdir().unwrap();
    let (bases, _) = write_segmented_log(dir.path());
    let path = log_path(dir.path(), bases[1]);
    let mut bytes = fs::read(&path).unwrap();
    let second = batch_starts(&bytes)[1];
    bytes[second + 8] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let log = open_with(dir.path(), RecoveryMode::Refuse).unwrap();
    let error = log.read(bases[1], 1 << 20, i64::MAX).unwrap_err();
    assert!(
        error.to_string().contains(&format!("{:020}.log", bases[1])),
        "{error}"
    );
}

/// A flipped bit in a segment's file header refuses only that log's open, with the
/// file named; skip_gap rewrites the header and keeps every batch that verifies.
#[test]
fn a_damaged_segment_header_is_refused_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (bases, records) = write_segmented_log(dir.path());
    let path = log_path(dir.path(), bases[2]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[5] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let message = open_with(dir.path(), RecoveryMode::Refuse)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("{:020}.log", bases[2])),
        "{message}"
    );
    let log = open_with(dir.path(), RecoveryMode::SkipGap).unwrap();
    assert_eq!(read_all(&log, 0), records);
}

/// An offset index entry pointing at a later batch (header intact) must not make a
/// read skip records: the lookup checks the batch it lands on and walks from an
/// earlier point. The damaged index is rebuilt at the next start.
#[test]
fn a_damaged_index_entry_never_serves_wrong_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let mut config = small_config();
    config.segment_bytes = 1 << 20;
    let log = open(dir.path(), config.clone(), &clock);
    for tag in 0..100 {
        log.append(&[batch(tag, 4, 1)], 0).unwrap();
    }
    log.set_high_watermark(400);
    let records = read_all(&log, 0);
    log.close().unwrap();
    drop(log);
    let index_path = dir.path().join(format!("{:020}.index", 0));
    let mut index = fs::read(&index_path).unwrap();
    let entries = (index.len() - 24) / 16;
    assert!(entries > 8, "{entries}");
    // Entry 3 keeps its key but takes entry 6's position.
    let position_of = |entry: usize| 24 + entry * 16 + 8;
    let later: [u8; 8] = index[position_of(6)..position_of(6) + 8]
        .try_into()
        .unwrap();
    let key = i64::from_be_bytes(index[24 + 3 * 16..24 + 3 * 16 + 8].try_into().unwrap());
    index[position_of(3)..position_of(3) + 8].copy_from_slice(&later);
    fs::write(&index_path, &index).unwrap();

    let log = open(dir.path(), config.clone(), &clock);
    for from in [key, key + 1, key + 3, 0, 399] {
        assert_eq!(
            read_all(&log, from),
            records[from as usize..],
            "from {from}"
        );
    }
    log.close().unwrap();
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), config, Arc::new(clock)).unwrap();
    assert_eq!(report.segments_scanned, 1, "the damaged index was rebuilt");
    assert_eq!(read_all(&log, key), records[key as usize..]);
}

/// A stored batch with timestamp i64::MAX, or a negative one, does not decide its
/// segment's age: the file's modification time does, so later segments still expire
/// and a segment with a negative timestamp is not deleted the moment it is sealed.
#[test]
fn time_retention_survives_absurd_timestamps() {
    let now = fjord_broker::storage::Clock::now_ms(&fjord_broker::storage::SystemClock);
    for absurd in [i64::MAX, -5] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(now);
        let mut config = small_config();
        config.retention_ms = Some(3_600_000);
        let log = open(dir.path(), config, &clock);
        log.append(&[batch(0, 4, absurd)], 0).unwrap();
        for tag in 1..100 {
            log.append(&[batch(tag, 4, now)], 0).unwrap();
        }
        log.set_high_watermark(log.log_end_offset());
        let segments = log.segment_count();
        assert!(segments > 4);
        assert_eq!(
            log.apply_retention().unwrap(),
            0,
            "nothing is an hour old yet"
        );
        clock.advance_ms(2 * 3_600_000 + 60_000);
        assert_eq!(
            log.apply_retention().unwrap(),
            segments - 1,
            "every sealed segment expired despite timestamp {absurd}"
        );
    }
}

/// A follower whose whole log lies below its leader's log start starts over there:
/// empty from that offset, it takes the leader's batches at their offsets, and a crash
/// after that keeps them. An offset at or below the log end changes nothing.
#[test]
fn a_log_restarts_empty_at_a_later_offset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1);
    let follower = open(&dir.path().join("follower"), small_config(), &clock);
    for tag in 0..120 {
        follower.append(&[batch(tag, 3, 1)], 1).unwrap();
    }
    follower.flush().unwrap();
    assert!(follower.segment_count() > 2);
    follower.restart_at(100).unwrap();
    assert_eq!(
        follower.log_end_offset(),
        360,
        "not past the end: nothing changes"
    );

    follower.restart_at(500).unwrap();
    assert_eq!(
        (
            follower.log_start_offset(),
            follower.log_end_offset(),
            follower.high_watermark()
        ),
        (500, 500, 500)
    );
    assert_eq!(follower.segment_count(), 1);
    assert!(read_all(&follower, 500).is_empty());
    assert_eq!(follower.latest_epoch(), None);

    // The leader's log, starting at 500 too, gives the batch to copy.
    let leader = open(&dir.path().join("leader"), small_config(), &clock);
    leader.restart_at(500).unwrap();
    leader.append(&[batch(77, 3, 1)], 3).unwrap();
    let bytes = leader.read(500, 1 << 20, i64::MAX).unwrap().records;
    let copied: Vec<RecordBatch> = RecordBatches::new(bytes).map(Result::unwrap).collect();
    follower.append_replicated(&copied).unwrap();
    follower.flush().unwrap();
    drop(follower); // a crash
    let follower = open(&dir.path().join("follower"), small_config(), &clock);
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (500, 503)
    );
    assert_eq!(
        read_all(&follower, 500),
        vec![
            (500, "77:0".to_owned()),
            (501, "77:1".to_owned()),
            (502, "77:2".to_owned())
        ]
    );
    assert_eq!(follower.latest_epoch(), Some(3));
}
