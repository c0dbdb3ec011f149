//! How long opening a partition log takes: after a clean shutdown, after a crash with a
//! recent checkpoint, and after a crash with no usable checkpoint (full scan).
//!
//! ```text
//! cargo run --release -p fjord-bench --example recovery -- [--log-mib 1024] [--runs 3]
//! ```
//!
//! It writes `--log-mib` MiB of sealed 128 MiB segments plus a 32 MiB active segment
//! (1000-record batches of 1 KiB records) under `target/bench-data` (or
//! `$FJORD_BENCH_DIR`), times `PartitionLog::open` in each situation, once with the
//! files dropped from the page cache ("disk") and once with them cached ("page cache"),
//! and deletes everything at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_bench::fixtures::{
    NEVER_FLUSH, dir_bytes, evict_from_page_cache, log_config, record_batch, scratch_dir,
};
use fjord_broker::storage::{LogConfig, PartitionLog, RecoveryReport, SystemClock};

const SEGMENT_BYTES: u64 = 128 << 20;
const TAIL_BYTES: u64 = 32 << 20;
const CHECKPOINT_FILE: &str = "checkpoint";

#[derive(Debug, Clone, Copy)]
enum Cache {
    Disk,
    PageCache,
}

#[derive(Debug, Clone, Copy)]
struct Options {
    log_bytes: u64,
    runs: usize,
}

fn parse_options() -> Options {
    let mut options = Options {
        log_bytes: 1 << 30,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--log-mib" => options.log_bytes = value() << 20,
            "--runs" => options.runs = value() as usize,
            "--bench" => {} // passed by `cargo bench --examples`; nothing to do
            other => panic!("unknown argument {other}; see the module documentation"),
        }
    }
    options
}

/// Fills a new log with `sealed_bytes` of sealed segments and a tail, then closes it.
fn write_log(dir: &Path, config: &LogConfig, sealed_bytes: u64) -> Duration {
    let (log, _) = PartitionLog::open(dir, config.clone(), Arc::new(SystemClock)).expect("open");
    let batches = vec![record_batch(1000, 1024)];
    let started = Instant::now();
    while log.size_bytes() < sealed_bytes + TAIL_BYTES {
        log.append(&batches, 0).expect("append");
    }
    log.close().expect("close");
    started.elapsed()
}

/// Times one open; `before` prepares the directory (outside the timing). Closes the log
/// cleanly afterwards when `close` is set, else drops it as a crash would.
fn timed_open(
    dir: &Path,
    config: &LogConfig,
    cache: Cache,
    close: bool,
    before: impl Fn(&Path),
) -> (Duration, RecoveryReport) {
    before(dir);
    if let Cache::Disk = cache {
        evict_from_page_cache(dir).expect("evict");
    }
    let started = Instant::now();
    let (log, report) =
        PartitionLog::open(dir, config.clone(), Arc::new(SystemClock)).expect("open");
    let elapsed = started.elapsed();
    if close {
        log.close().expect("close");
    }
    (elapsed, report)
}

fn print_runs(scenario: &str, cache: Cache, runs: &[(Duration, RecoveryReport)], bytes: u64) {
    let millis: Vec<String> = runs
        .iter()
        .map(|(elapsed, _)| format!("{:.1}", elapsed.as_secs_f64() * 1e3))
        .collect();
    let best = runs
        .iter()
        .map(|(elapsed, _)| *elapsed)
        .min()
        .expect("runs");
    let report = runs[0].1;
    // Over the bytes the scenario scans (the whole log, or the active segment).
    let scanned_mib_per_second = if report.segments_scanned > 0 {
        format!(
            "{:.0}",
            bytes as f64 / (1 << 20) as f64 / best.as_secs_f64()
        )
    } else {
        "-".into()
    };
    println!(
        "{scenario:<44} {cache:<10?} runs_ms=[{}] best_ms={:.1} segments={} scanned={} clean={} scanned_MiB/s={scanned_mib_per_second}",
        millis.join(", "),
        best.as_secs_f64() * 1e3,
        report.segments,
        report.segments_scanned,
        report.clean_shutdown,
    );
}

fn main() {
    let options = parse_options();
    let dir = scratch_dir("recovery").expect("scratch directory");
    let config = log_config(NEVER_FLUSH, SEGMENT_BYTES);
    let sealed_bytes = options.log_bytes.div_ceil(SEGMENT_BYTES) * SEGMENT_BYTES;
    let write_time = write_log(dir.path(), &config, sealed_bytes);
    let log_bytes = dir_bytes(dir.path()).expect("size");
    println!(
        "log: {} MiB in {}, written and closed in {:.2} s",
        log_bytes >> 20,
        dir.path().display(),
        write_time.as_secs_f64()
    );
    let nothing = |_: &Path| {};
    let remove_checkpoint = |dir: &Path| {
        std::fs::remove_file(dir.join(CHECKPOINT_FILE)).expect("remove checkpoint");
    };
    let run = |cache, close, before: &dyn Fn(&Path)| -> Vec<_> {
        (0..options.runs)
            .map(|_| timed_open(dir.path(), &config, cache, close, before))
            .collect()
    };
    for cache in [Cache::Disk, Cache::PageCache] {
        // Clean shutdown: every open is closed again, so every open follows a close.
        let runs = run(cache, true, &nothing);
        print_runs("clean shutdown", cache, &runs, log_bytes);
    }
    for cache in [Cache::Disk, Cache::PageCache] {
        // Each open writes a checkpoint whose recovery point is the log end, then the
        // log is dropped without closing: the next open scans only the active segment.
        timed_open(dir.path(), &config, Cache::PageCache, false, nothing);
        let runs = run(cache, false, &nothing);
        print_runs(
            "crash, recovery point at the log end",
            cache,
            &runs,
            TAIL_BYTES,
        );
    }
    for cache in [Cache::Disk, Cache::PageCache] {
        // No checkpoint: everything is scanned, as after a crash before any checkpoint.
        let runs = run(cache, false, &remove_checkpoint);
        print_runs("crash, no checkpoint (full scan)", cache, &runs, log_bytes);
    }
    // Close cleanly after the full-scan recovery, then reopen: does the clean open still
    // scan?
    timed_open(dir.path(), &config, Cache::PageCache, true, nothing);
    for cache in [Cache::Disk, Cache::PageCache] {
        let runs = run(cache, true, &nothing);
        print_runs(
            "clean shutdown after a full-scan recovery",
            cache,
            &runs,
            log_bytes,
        );
    }
}
