//! What a well-formed batch from a producer may carry, beyond its structure (which
//! [`RecordBatch::validate_records`] checks), and the broker's log-append-time stamp.
//!
//! - Attributes: a producer may set bits 0–2 (compression, and only 0 is accepted);
//!   the timestamp-type bit is the broker's to set, and transactions and control
//!   batches do not exist in Fjord, so bits 3–15 are refused with `INVALID_RECORD`.
//!   A client therefore cannot inject what consumers would take for a control batch.
//! - Topics with `message.timestamp.type=CreateTime` (the default) keep the producer's
//!   timestamps, which must be sound, else `INVALID_TIMESTAMP`: no record timestamp is
//!   negative, `max_timestamp` is the largest record timestamp, and every record
//!   timestamp lies within `message.timestamp.before.max.ms` before and
//!   `message.timestamp.after.max.ms` after the broker's clock.
//! - Topics with `LogAppendTime` get the broker's clock: the batch is stamped (bit 3
//!   set, `max_timestamp` = append time, CRC recomputed); the producer's timestamps are
//!   kept in the records but readers take the append time for every record.

use bytes::BytesMut;
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::{RecordBatch, TimestampBounds, TimestampType, set_log_append_time};

use crate::metadata::topic_config::TopicConfig;

/// The attribute bits a producer may set: compression (bits 0–2).
pub const PRODUCER_ATTRIBUTES_MASK: i16 = 0x0007;

/// A refused batch: the partition's error code and a message naming the rule.
pub type Refusal = (ErrorCode, String);

/// Checks `batch` (already validated, with the record timestamp `bounds` its walk
/// found) against the topic's rules, and returns it as it is to be stored.
pub fn admit(
    batch: RecordBatch,
    bounds: TimestampBounds,
    config: &TopicConfig,
    now_ms: i64,
) -> Result<RecordBatch, Refusal> {
    let refused_bits = batch.attributes() & !PRODUCER_ATTRIBUTES_MASK;
    if refused_bits != 0 {
        return Err((
            ErrorCode::InvalidRecord,
            format!(
                "attributes {:#06x}: a producer may set only bits 0-2 (compression); bits {:#06x} \
                 (timestamp type, transactional, control or unused) are refused",
                batch.attributes(),
                refused_bits
            ),
        ));
    }
    match config.timestamp_type {
        TimestampType::CreateTime => {
            check_create_time(&batch, bounds, config, now_ms)?;
            Ok(batch)
        }
        TimestampType::LogAppendTime => {
            let mut bytes = BytesMut::from(&batch.as_bytes()[..]);
            set_log_append_time(&mut bytes, now_ms);
            Ok(RecordBatch::new(bytes.freeze()).expect("stamping keeps the batch's length"))
        }
    }
}

fn check_create_time(
    batch: &RecordBatch,
    bounds: TimestampBounds,
    config: &TopicConfig,
    now_ms: i64,
) -> Result<(), Refusal> {
    let invalid = |message: String| Err((ErrorCode::InvalidTimestamp, message));
    if bounds.min_ms < 0 {
        return invalid(format!(
            "record timestamp {} is negative; timestamps are ms since the Unix epoch",
            bounds.min_ms
        ));
    }
    if batch.max_timestamp() != bounds.max_ms {
        return invalid(format!(
            "max_timestamp {} is not the largest record timestamp, {}",
            batch.max_timestamp(),
            bounds.max_ms
        ));
    }
    // i128: the bounds may be i64::MAX and the timestamps anything non-negative.
    let behind_ms = i128::from(now_ms) - i128::from(bounds.min_ms);
    if behind_ms > i128::from(config.timestamp_before_max_ms) {
        return invalid(format!(
            "record timestamp {} is {behind_ms} ms before the broker's clock ({now_ms}); \
             message.timestamp.before.max.ms is {}",
            bounds.min_ms, config.timestamp_before_max_ms
        ));
    }
    let ahead_ms = i128::from(bounds.max_ms) - i128::from(now_ms);
    if ahead_ms > i128::from(config.timestamp_after_max_ms) {
        return invalid(format!(
            "record timestamp {} is {ahead_ms} ms after the broker's clock ({now_ms}); \
             message.timestamp.after.max.ms is {}",
            bounds.max_ms, config.timestamp_after_max_ms
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fjord_protocol::batch::{BatchBuilder, RecordInput};

    use super::*;
    use crate::config::BrokerConfig;
    use crate::metadata::topic_config::resolve;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn config(overrides: &[(&str, &str)]) -> TopicConfig {
        let overrides = overrides
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        resolve(&BrokerConfig::default(), &overrides).unwrap()
    }

    fn batch(timestamps: &[i64]) -> RecordBatch {
        let mut builder = BatchBuilder::new();
        for timestamp_ms in timestamps {
            builder.push(&RecordInput {
                value: Some(b"v"),
                timestamp_ms: *timestamp_ms,
                ..Default::default()
            });
        }
        RecordBatch::new(builder.finish()).unwrap()
    }

    fn check(batch: RecordBatch, config: &TopicConfig) -> Result<RecordBatch, Refusal> {
        let bounds = batch.validate_records().unwrap();
        admit(batch, bounds, config, NOW_MS)
    }

    /// Rewrites bytes `at..` of the batch and fixes its CRC, as a producer could.
    fn patched(batch: &RecordBatch, at: usize, bytes: &[u8]) -> RecordBatch {
        let mut raw = BytesMut::from(&batch.as_bytes()[..]);
        raw[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c::crc32c(&raw[21..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        RecordBatch::new(raw.freeze()).unwrap()
    }

    /// Only the compression bits pass; the timestamp-type, transactional, control and
    /// unused bits are refused with INVALID_RECORD.
    #[test]
    fn attribute_bits() {
        let topic = config(&[]);
        let good = batch(&[NOW_MS]);
        assert!(check(good.clone(), &topic).is_ok());
        for bit in 3..16 {
            let attributes = (1u16 << bit) as i16;
            let refused = check(patched(&good, 21, &attributes.to_be_bytes()), &topic);
            let (code, message) = refused.unwrap_err();
            assert_eq!(code, ErrorCode::InvalidRecord, "bit {bit}");
            assert!(message.contains("bits 0-2"), "{message}");
        }
    }

    /// Create time: negative timestamps, a wrong max_timestamp and timestamps beyond
    /// the bounds around the broker's clock are INVALID_TIMESTAMP; the bounds are
    /// inclusive.
    #[test]
    fn create_time_rules() {
        let topic = config(&[
            ("message.timestamp.before.max.ms", "1000"),
            ("message.timestamp.after.max.ms", "500"),
        ]);
        let code = |batch: RecordBatch| check(batch, &topic).map(drop).map_err(|(code, _)| code);
        assert_eq!(code(batch(&[NOW_MS - 1000, NOW_MS + 500])), Ok(()));
        assert_eq!(
            code(batch(&[NOW_MS - 1001])),
            Err(ErrorCode::InvalidTimestamp)
        );
        assert_eq!(
            code(batch(&[NOW_MS, NOW_MS + 501])),
            Err(ErrorCode::InvalidTimestamp)
        );
        let unbounded = config(&[]);
        assert!(check(batch(&[0, 1]), &unbounded).is_ok());
        let (code, message) = check(batch(&[5, -1]), &unbounded).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidTimestamp);
        assert!(message.contains("negative"), "{message}");
        // max_timestamp (bytes 35..43) one above the largest record timestamp.
        let wrong_max = patched(&batch(&[7, 9]), 35, &10i64.to_be_bytes());
        let (code, message) = check(wrong_max, &unbounded).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidTimestamp);
        assert!(message.contains("max_timestamp 10"), "{message}");
        // The default bound ahead of the clock is an hour.
        assert!(check(batch(&[NOW_MS + 3_600_000]), &unbounded).is_ok());
        assert!(check(batch(&[NOW_MS + 3_600_001]), &unbounded).is_err());
    }

    /// Log-append time: the batch comes back stamped, with a valid CRC, whatever the
    /// producer's timestamps were.
    #[test]
    fn log_append_time_is_stamped() {
        let topic = config(&[("message.timestamp.type", "LogAppendTime")]);
        let stored = check(batch(&[-5, 3]), &topic).unwrap();
        assert_eq!(stored.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(stored.max_timestamp(), NOW_MS);
        stored.validate().unwrap();
    }
}
