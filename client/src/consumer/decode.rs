//! Turning a partition's fetched bytes into records.
//!
//! A fetch response holds whole batches, and the first may start before the fetch
//! offset (a batch is never split), so records below the offset are skipped. Every
//! batch's CRC is checked before its records are read.

use std::collections::VecDeque;

use bytes::Bytes;
use fjord_protocol::batch::{Compression, RecordBatchError, RecordBatches, TimestampType};

use super::record::ConsumerRecord;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// Appends the records at or after `fetch_offset` to `out` and returns the offset to
/// fetch next.
pub(crate) fn decode_records(
    topic_partition: &TopicPartition,
    records: Bytes,
    fetch_offset: i64,
    out: &mut VecDeque<ConsumerRecord>,
) -> Result<i64> {
    let corrupt = |source| Error::CorruptBatch {
        topic: topic_partition.topic.clone(),
        partition: topic_partition.partition,
        source,
    };
    let mut next_offset = fetch_offset;
    for (index, batch) in RecordBatches::new(records).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            // A short tail after complete batches is fetched again from next_offset;
            // a first batch that is cut short is broken.
            Err(RecordBatchError::Truncated { .. }) if index > 0 => break,
            Err(error) => return Err(corrupt(error)),
        };
        batch.verify_crc().map_err(corrupt)?;
        if batch.next_offset() <= next_offset {
            continue;
        }
        if batch.compression() != Compression::None {
            return Err(corrupt(RecordBatchError::UnsupportedCompression(
                batch.compression(),
            )));
        }
        if !batch.is_control() {
            let append_time = (batch.timestamp_type() == TimestampType::LogAppendTime)
                .then(|| batch.max_timestamp());
            for record in batch.records() {
                let record = record.map_err(corrupt)?;
                if record.offset < next_offset {
                    continue;
                }
                next_offset = record.offset + 1;
                out.push_back(ConsumerRecord {
                    topic: topic_partition.topic.clone(),
                    partition: topic_partition.partition,
                    offset: record.offset,
                    timestamp_ms: append_time.unwrap_or(record.timestamp_ms),
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                });
            }
        }
        next_offset = next_offset.max(batch.next_offset());
    }
    Ok(next_offset)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use fjord_protocol::batch::{BatchBuilder, RecordInput, set_base_offset};

    use super::*;

    fn batch(base_offset: i64, values: &[&str]) -> Bytes {
        let mut builder = BatchBuilder::new();
        for (index, value) in values.iter().enumerate() {
            builder.push(&RecordInput {
                key: Some(b"k"),
                value: Some(value.as_bytes()),
                headers: &[],
                timestamp_ms: 1_000 + index as i64,
            });
        }
        let mut bytes = BytesMut::from(&builder.finish()[..]);
        set_base_offset(&mut bytes, base_offset);
        bytes.freeze()
    }

    fn values(records: &VecDeque<ConsumerRecord>) -> Vec<String> {
        records
            .iter()
            .map(|record| String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    /// Records before the fetch offset are skipped, offsets and timestamps come from
    /// the batch, and the next fetch offset follows the last batch.
    #[test]
    fn skips_records_before_the_fetch_offset() {
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&batch(10, &["a", "b", "c"]));
        bytes.extend_from_slice(&batch(13, &["d"]));
        let partition = TopicPartition::new("t", 0);
        let mut out = VecDeque::new();
        let next = decode_records(&partition, bytes.freeze(), 11, &mut out).unwrap();
        assert_eq!(values(&out), ["b", "c", "d"]);
        assert_eq!(out[0].offset, 11);
        assert_eq!(out[0].timestamp_ms, 1_001);
        assert_eq!(next, 14);
    }

    /// A truncated trailing batch is left for the next fetch; a corrupted one is an
    /// error.
    #[test]
    fn truncated_tail_and_corruption() {
        let whole = batch(0, &["a"]);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&whole);
        bytes.extend_from_slice(&batch(1, &["b"])[..20]);
        let partition = TopicPartition::new("t", 0);
        let mut out = VecDeque::new();
        assert_eq!(
            decode_records(&partition, bytes.freeze(), 0, &mut out).unwrap(),
            1
        );
        assert_eq!(values(&out), ["a"]);

        let mut corrupted = BytesMut::from(&whole[..]);
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0xff;
        let error =
            decode_records(&partition, corrupted.freeze(), 0, &mut VecDeque::new()).unwrap_err();
        assert!(matches!(error, Error::CorruptBatch { .. }), "{error}");
    }
}
