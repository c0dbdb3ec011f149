//! Consumer settings.

use crate::error::{Error, Result};

/// Where a partition without a valid position starts: right after assignment, or
/// when its position fell outside the log (`OFFSET_OUT_OF_RANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest record still in the log.
    Earliest,
    /// The end of the log: only records produced from now on.
    #[default]
    Latest,
    /// No automatic choice: `poll` fails with
    /// [`Error::NoPosition`](crate::Error::NoPosition) or
    /// [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange).
    Error,
}

/// How the consumer fetches and buffers.
///
/// ```
/// use fjord_client::{ConsumerConfig, OffsetReset};
///
/// let config = ConsumerConfig {
///     auto_offset_reset: OffsetReset::Earliest,
///     ..ConsumerConfig::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Where a partition without a valid position starts.
    pub auto_offset_reset: OffsetReset,
    /// How long the broker may hold a fetch waiting for `fetch_bytes_min` bytes.
    pub fetch_wait_ms: u64,
    /// The broker answers a fetch as soon as this many bytes are available.
    pub fetch_bytes_min: i32,
    /// The byte budget of one fetch response.
    pub fetch_bytes_max: i32,
    /// The byte budget of one partition in a fetch response.
    pub partition_fetch_bytes_max: i32,
    /// Most records one `poll` returns.
    pub poll_records_max: usize,
    /// Fetched records held for the application; no new fetch starts beyond this.
    pub buffered_records_max: usize,
    /// The first wait before fetching again from a partition or broker that failed;
    /// doubled per consecutive failure up to `retry_backoff_max_ms`.
    pub retry_backoff_ms: u64,
    /// The longest wait between such retries.
    pub retry_backoff_max_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            auto_offset_reset: OffsetReset::Latest,
            fetch_wait_ms: 500,
            fetch_bytes_min: 1,
            fetch_bytes_max: 16 * 1024 * 1024,
            partition_fetch_bytes_max: 1024 * 1024,
            poll_records_max: 500,
            buffered_records_max: 10_000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1_000,
        }
    }
}

impl ConsumerConfig {
    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: &str| Err(Error::Config(message.to_owned()));
        if self.fetch_wait_ms > i32::MAX as u64 {
            return invalid("fetch_wait_ms must fit in an i32");
        }
        if self.fetch_bytes_min < 0 {
            return invalid("fetch_bytes_min must not be negative");
        }
        if self.fetch_bytes_max <= 0 || self.partition_fetch_bytes_max <= 0 {
            return invalid("fetch_bytes_max and partition_fetch_bytes_max must be positive");
        }
        if self.poll_records_max == 0 {
            return invalid("poll_records_max must be positive");
        }
        if self.buffered_records_max < self.poll_records_max {
            return invalid("buffered_records_max must be at least poll_records_max");
        }
        if self.retry_backoff_ms == 0 || self.retry_backoff_max_ms < self.retry_backoff_ms {
            return invalid("retry_backoff_ms must be positive and not above retry_backoff_max_ms");
        }
        Ok(())
    }
}
