//! Workloads and scratch space shared by the benchmarks and the examples.
//!
//! Scratch logs live on the same filesystem as the work tree (`target/bench-data`, or
//! `$FJORD_BENCH_DIR`), never on a tmpfs, so that the figures are those of the disk.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_broker::storage::{Durability, LogConfig, PartitionLog, SystemClock};
use fjord_protocol::RecordBatch;
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use rustix::fs::{Advice, fadvise};
use tempfile::TempDir;

/// The environment variable that overrides where scratch logs are created.
pub const BENCH_DIR_VARIABLE: &str = "FJORD_BENCH_DIR";

/// Timestamp of the first record of every generated batch (2023-11-14, ms).
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A batch of `record_count` records without key or headers, each with a value of
/// `value_bytes` bytes of a repeating pattern (the codec does not compress, so the
/// content does not matter) and timestamps one millisecond apart.
pub fn record_batch(record_count: usize, value_bytes: usize) -> RecordBatch {
    let value: Vec<u8> = (0..value_bytes).map(|index| (index % 251) as u8).collect();
    let mut builder = BatchBuilder::with_capacity(record_count * (value_bytes + 16));
    for index in 0..record_count {
        builder.push(&RecordInput {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp_ms: BASE_TIMESTAMP_MS + index as i64,
        });
    }
    RecordBatch::new(builder.finish()).expect("the builder makes exactly one batch")
}

/// Where scratch directories are created: `$FJORD_BENCH_DIR`, else the workspace's
/// `target/bench-data`.
pub fn bench_root() -> PathBuf {
    std::env::var_os(BENCH_DIR_VARIABLE).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data"),
        PathBuf::from,
    )
}

/// A fresh directory under [`bench_root`], deleted when dropped.
pub fn scratch_dir(label: &str) -> io::Result<TempDir> {
    let root = bench_root();
    std::fs::create_dir_all(&root)?;
    tempfile::Builder::new()
        .prefix(&format!("fjord-{label}-"))
        .tempdir_in(root)
}

/// A log configuration with the given policy and segment size; everything else default
/// except retention, which is off so that nothing is deleted under the benchmark.
pub fn log_config(durability: Durability, segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        retention_ms: None,
        durability,
        ..LogConfig::default()
    }
}

/// The `interval` policy with limits no benchmark reaches (an hour, no byte limit): no
/// fsync runs in a measured loop, segment rolls aside, which fsync the sealed segment.
pub const NEVER_FLUSH: Durability = Durability::Interval {
    interval_ms: 3_600_000,
    interval_bytes: u64::MAX,
};

/// Opens (or creates) the partition log in `dir` with the system clock.
pub fn open_log(dir: &Path, config: LogConfig) -> Arc<PartitionLog> {
    let (log, _report) = PartitionLog::open(dir, config, Arc::new(SystemClock)).expect("open log");
    log
}

/// Writes every file of `dir` back to the disk and drops it from the page cache, so
/// that the next reads come from the device (or whatever cache the hypervisor keeps).
pub fn evict_from_page_cache(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let file = File::open(entry.path())?;
        // DONTNEED skips dirty pages: write them first.
        file.sync_data()?;
        fadvise(&file, 0, None, Advice::DontNeed)?;
    }
    Ok(())
}

/// Total size of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            total += metadata.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated batches are valid and have the requested shape.
    #[test]
    fn record_batch_is_valid() {
        let batch = record_batch(100, 1024);
        batch.validate().unwrap();
        assert_eq!(batch.record_count(), 100);
        assert!(batch.size_bytes() > 100 * 1024);
    }
}
