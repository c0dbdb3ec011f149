//! Partition log: append throughput under both durability policies, sequential reads
//! and offset lookups, on the disk that holds the work tree.
//!
//! Appends use 1 KiB records in batches of 100 (~100 KiB) and 1000 (~1 MiB). Every
//! measured run of an append benchmark starts from a new, empty log, so that runs do not
//! depend on one another and the page cache does not fill with earlier runs' data.
//!
//! `storage/baseline` does the same writes to a plain file with no log around them, in
//! the same process and conditions: the figure each append benchmark is compared with.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use fjord_bench::fixtures::{
    NEVER_FLUSH, evict_from_page_cache, log_config, open_log, record_batch, scratch_dir,
};
use fjord_broker::storage::{Durability, PartitionLog};
use fjord_protocol::RecordBatch;
use fjord_protocol::batch::RecordBatches;

const RECORD_BYTES: usize = 1024;
const BATCH_RECORD_COUNTS: [usize; 2] = [100, 1000];
/// Larger than anything one measured run writes, so that no segment rolls in it.
const SEGMENT_BYTES_NO_ROLL: u64 = 4 << 30;
/// The size the roll benchmark uses: a roll (and its fsync) every 128 MiB.
const SEGMENT_BYTES_ROLLING: u64 = 128 << 20;
const READ_BUDGET_BYTES: u64 = 1 << 20;
const READ_LOG_BYTES: u64 = 256 << 20;
const LOOKUP_LOG_BATCHES: usize = 100_000;
const LEADER_EPOCH: i32 = 0;

/// Appends `iterations` copies of `batch` to a new log, one batch per append, without
/// committing: under `interval` with unreachable limits `commit` does nothing.
fn timed_appends(batch: &RecordBatch, segment_bytes: u64, iterations: u64) -> Duration {
    let dir = scratch_dir("append").expect("scratch directory");
    let log = open_log(dir.path(), log_config(NEVER_FLUSH, segment_bytes));
    let batches = std::slice::from_ref(batch);
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(log.append(batches, LEADER_EPOCH).expect("append"));
    }
    let elapsed = started.elapsed();
    drop(log);
    elapsed
}

fn append_interval(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/append_interval");
    group.sampling_mode(SamplingMode::Flat);
    for record_count in BATCH_RECORD_COUNTS {
        let batch = record_batch(record_count, RECORD_BYTES);
        group.throughput(Throughput::Bytes(batch.size_bytes() as u64));
        let name = format!("{record_count}x1KiB");
        group.bench_function(BenchmarkId::new("no_roll", &name), |b| {
            b.iter_custom(|iterations| timed_appends(&batch, SEGMENT_BYTES_NO_ROLL, iterations))
        });
        group.bench_function(BenchmarkId::new("roll_128MiB", &name), |b| {
            b.iter_custom(|iterations| timed_appends(&batch, SEGMENT_BYTES_ROLLING, iterations))
        });
    }
    group.finish();
}

/// How often the baseline fdatasyncs: never, after every write, or after every eighth
/// (what group commit of eight producers achieves at best).
#[derive(Debug, Clone, Copy)]
enum SyncEvery {
    Never,
    Writes(u64),
}

/// `iterations` positional writes of `bytes` to a new file, appending, with fdatasyncs.
fn timed_plain_writes(bytes: &[u8], sync: SyncEvery, iterations: u64) -> Duration {
    let dir = scratch_dir("baseline").expect("scratch directory");
    let path = dir.path().join("plain");
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .expect("create file");
    let started = Instant::now();
    for iteration in 0..iterations {
        file.write_all_at(bytes, iteration * bytes.len() as u64)
            .expect("write");
        if let SyncEvery::Writes(every) = sync
            && (iteration + 1) % every == 0
        {
            file.sync_data().expect("fdatasync");
        }
    }
    if let SyncEvery::Writes(_) = sync {
        file.sync_data().expect("fdatasync");
    }
    started.elapsed()
}

fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/baseline");
    group.sampling_mode(SamplingMode::Flat);
    for record_count in BATCH_RECORD_COUNTS {
        let batch = record_batch(record_count, RECORD_BYTES);
        let bytes = batch.as_bytes();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let name = format!("{record_count}x1KiB");
        for (label, sync) in [
            ("pwrite", SyncEvery::Never),
            ("pwrite_fdatasync_each", SyncEvery::Writes(1)),
            ("pwrite_fdatasync_every_8", SyncEvery::Writes(8)),
        ] {
            group.bench_function(BenchmarkId::new(label, &name), |b| {
                b.iter_custom(|iterations| timed_plain_writes(bytes, sync, iterations))
            });
        }
    }
    group.finish();
}

/// One producer: append, then wait for the fsync that covers it, `count` times.
async fn append_and_commit(log: Arc<PartitionLog>, batch: RecordBatch, count: u64) {
    let batches = std::slice::from_ref(&batch);
    for _ in 0..count {
        let info = log.append(batches, LEADER_EPOCH).expect("append");
        log.commit(&info).await.expect("commit");
    }
}

/// `appenders` concurrent producers share `iterations` appends on a new log under the
/// `fsync` policy; the wall time of all of them.
fn timed_committed_appends(
    runtime: &tokio::runtime::Runtime,
    batch: &RecordBatch,
    appenders: u64,
    iterations: u64,
) -> Duration {
    let dir = scratch_dir("fsync").expect("scratch directory");
    let log = open_log(dir.path(), log_config(Durability::Fsync, 1 << 30));
    let elapsed = runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|appender| {
                let share = iterations / appenders + u64::from(appender < iterations % appenders);
                tokio::spawn(append_and_commit(log.clone(), batch.clone(), share))
            })
            .collect();
        for task in tasks {
            task.await.expect("appender task");
        }
        started.elapsed()
    });
    drop(log);
    elapsed
}

fn append_fsync(c: &mut Criterion) {
    // Two workers: one per core of the machine the figures come from.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("storage/append_fsync");
    group.sampling_mode(SamplingMode::Flat);
    for record_count in BATCH_RECORD_COUNTS {
        let batch = record_batch(record_count, RECORD_BYTES);
        group.throughput(Throughput::Bytes(batch.size_bytes() as u64));
        for appenders in [1, 8] {
            let id = BenchmarkId::new(
                format!("{record_count}x1KiB"),
                format!("{appenders}_appenders"),
            );
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| {
                    timed_committed_appends(&runtime, &batch, appenders, iterations)
                })
            });
        }
    }
    group.finish();
}

/// Reads the whole log from its start in `READ_BUDGET_BYTES` reads; the bytes read.
fn read_whole_log(log: &PartitionLog) -> u64 {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut bytes = 0;
    while offset < end {
        let result = log.read(offset, READ_BUDGET_BYTES, i64::MAX).expect("read");
        let last = RecordBatches::new(result.records.clone())
            .last()
            .expect("a read below the log end returns a batch")
            .expect("stored batches are well framed");
        offset = last.next_offset();
        bytes += result.records.len() as u64;
    }
    bytes
}

/// Fills a new log in `dir` with `count`-batch appends of `batch` until it holds
/// `bytes`, and makes it durable.
fn filled_log(
    dir: &Path,
    segment_bytes: u64,
    batch: &RecordBatch,
    count: usize,
    bytes: u64,
) -> Arc<PartitionLog> {
    let log = open_log(dir, log_config(NEVER_FLUSH, segment_bytes));
    let batches = vec![batch.clone(); count];
    while log.size_bytes() < bytes {
        log.append(&batches, LEADER_EPOCH).expect("append");
    }
    log.flush().expect("flush");
    log
}

fn read_sequential(c: &mut Criterion) {
    let dir = scratch_dir("read").expect("scratch directory");
    // 100-record batches (~100 KiB): a 1 MiB budget returns nine or ten of them.
    let batch = record_batch(100, RECORD_BYTES);
    let log = filled_log(dir.path(), 64 << 20, &batch, 10, READ_LOG_BYTES);
    let log_bytes = read_whole_log(&log);
    let mut group = c.benchmark_group("storage/read_sequential_1MiB");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(log_bytes));
    group.bench_function("page_cache", |b| b.iter(|| read_whole_log(&log)));
    group.bench_function("disk", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                evict_from_page_cache(dir.path()).expect("evict");
                let started = Instant::now();
                black_box(read_whole_log(&log));
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
    drop(log);
}

/// xorshift64: deterministic offsets without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn lookup(c: &mut Criterion) {
    let dir = scratch_dir("lookup").expect("scratch directory");
    // 10 records of 100 bytes (~1.2 KiB) per batch, 100 batches per append.
    let batch = record_batch(10, 100);
    let bytes = LOOKUP_LOG_BATCHES as u64 * batch.size_bytes() as u64;
    let log = filled_log(dir.path(), 32 << 20, &batch, 100, bytes);
    let end = log.log_end_offset() as u64;
    let mut group = c.benchmark_group("storage/lookup");
    group.throughput(Throughput::Elements(1));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    group.bench_function("read_random_offset_1B_budget", |b| {
        b.iter(|| {
            let offset = (next_random(&mut state) % end) as i64;
            black_box(log.read(offset, 1, i64::MAX).expect("read"))
        })
    });
    group.finish();
    drop(log);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = baseline, append_interval, append_fsync, read_sequential, lookup
}
criterion_main!(benches);
