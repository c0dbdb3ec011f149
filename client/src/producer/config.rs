//! Producer settings.

use fjord_protocol::limits::FRAME_BYTES_MAX;
use fjord_protocol::messages::Acks;

use super::buffer::BUFFER_BYTES_LIMIT;
use crate::error::{Error, Result};

/// Largest batch, record or request size accepted: a produce request carries at most
/// `request_bytes_max` plus one batch, and must fit in one frame.
const PRODUCE_BYTES_LIMIT: usize = FRAME_BYTES_MAX / 4;

/// How the producer batches, bounds memory and retries.
///
/// ```
/// use fjord_client::{Acks, ProducerConfig};
///
/// let config = ProducerConfig {
///     acks: Acks::All,
///     linger_ms: 10,
///     ..ProducerConfig::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How many replicas must store a batch before it counts as delivered.
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent as soon as it reaches this size. A single record larger than
    /// this travels alone in its own batch.
    pub batch_bytes_max: usize,
    /// Memory for records not yet acknowledged; `send` waits when it is full.
    pub buffer_bytes_max: usize,
    /// The largest record accepted (key, value and headers with overhead).
    pub record_bytes_max: usize,
    /// Batches for one broker are split into requests of about this size.
    pub request_bytes_max: usize,
    /// How long the broker may wait for replicas to acknowledge (`acks = all`).
    pub produce_timeout_ms: u64,
    /// How long a record may take from `send` to acknowledgement, retries included.
    pub delivery_timeout_ms: u64,
    /// The first wait before retrying a failed batch; doubled per attempt.
    pub retry_backoff_ms: u64,
    /// The longest wait between retries of a batch.
    pub retry_backoff_max_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            linger_ms: 5,
            batch_bytes_max: 64 * 1024,
            buffer_bytes_max: 32 * 1024 * 1024,
            record_bytes_max: 1024 * 1024,
            request_bytes_max: 1024 * 1024,
            produce_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1_000,
        }
    }
}

impl ProducerConfig {
    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::Config(message));
        for (name, value) in [
            ("batch_bytes_max", self.batch_bytes_max),
            ("record_bytes_max", self.record_bytes_max),
            ("request_bytes_max", self.request_bytes_max),
        ] {
            if value == 0 || value > PRODUCE_BYTES_LIMIT {
                return invalid(format!(
                    "{name} must be between 1 and {PRODUCE_BYTES_LIMIT}, not {value}"
                ));
            }
        }
        if self.buffer_bytes_max == 0 || self.buffer_bytes_max > BUFFER_BYTES_LIMIT {
            return invalid(format!(
                "buffer_bytes_max must be between 1 and {BUFFER_BYTES_LIMIT}, not {}",
                self.buffer_bytes_max
            ));
        }
        if self.produce_timeout_ms > i32::MAX as u64 {
            return invalid("produce_timeout_ms must fit in an i32".into());
        }
        if self.delivery_timeout_ms == 0 {
            return invalid("delivery_timeout_ms must be positive".into());
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            return invalid("retry_backoff_max_ms must not be below retry_backoff_ms".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid; sizes beyond one frame and inverted backoffs are not.
    #[test]
    fn validation() {
        ProducerConfig::default().validate().unwrap();
        let too_big = ProducerConfig {
            batch_bytes_max: FRAME_BYTES_MAX,
            ..ProducerConfig::default()
        };
        assert!(too_big.validate().is_err());
        let inverted = ProducerConfig {
            retry_backoff_max_ms: 1,
            ..ProducerConfig::default()
        };
        assert!(inverted.validate().is_err());
    }
}
