//! Per-log configuration: segment sizes, retention and the durability policy.

use std::time::Duration;

/// When appended data is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync (fdatasync) before acknowledging. Concurrent appends share one fsync
    /// (group commit), so the cost is latency, not throughput. The default.
    Fsync,
    /// fsync in the background every `interval_ms` or every `interval_bytes`, whichever
    /// comes first; acknowledged data may be lost if the machine (not just the process)
    /// fails in between.
    Interval {
        interval_ms: u64,
        interval_bytes: u64,
    },
}

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment once it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment once its first batch is this old.
    pub segment_ms: u64,
    /// Delete the oldest sealed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    pub durability: Durability,
    /// Add an index entry every this many bytes of log.
    pub index_interval_bytes: u64,
    /// Largest index file; the segment rolls when its index is full.
    pub index_bytes_max: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            durability: Durability::Fsync,
            index_interval_bytes: 4096,
            index_bytes_max: 10 << 20,
        }
    }
}

impl LogConfig {
    pub fn flush_interval(&self) -> Option<Duration> {
        match self.durability {
            Durability::Fsync => None,
            Durability::Interval { interval_ms, .. } => Some(Duration::from_millis(interval_ms)),
        }
    }
}
