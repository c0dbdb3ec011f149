//! What recovery may do with durable data it finds missing or damaged, and the batches
//! that fill a hole an operator chose to keep.
//!
//! Everything below a log's recovery point was fsynced before the checkpoint said so,
//! so a missing segment file or a damaged batch there is not a torn write: it is lost
//! data. Recovery never cuts it on its own ([`RecoveryMode::Refuse`]); the partition
//! stays offline until an operator picks [`RecoveryMode::Truncate`] or
//! [`RecoveryMode::SkipGap`]. Damage after the recovery point is a torn tail and is cut
//! in every mode.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::batch::{BATCH_HEADER_BYTES, MAGIC};

/// Where a batch's CRC-32C sits, and where the bytes it covers start.
const CRC_POSITION: usize = 17;
const CRC_COVERED_FROM: usize = 21;

/// How [`PartitionLog::open_with`](super::PartitionLog::open_with) treats missing or
/// damaged data below the recovery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open the log: the error names the file and the offsets. The default.
    Refuse,
    /// Keep the data before the first missing or damaged offset, delete everything
    /// from there on. The log end moves back, so later appends reuse those offsets.
    Truncate,
    /// Keep every intact batch. A missing segment, and the part of a damaged segment
    /// after the damage, become a hole of offsets, filled with empty batches
    /// ([`gap_batches`]) so that the log stays contiguous and keeps its end. A hole at
    /// the very start of the log moves the log start instead; a damaged segment header
    /// is rewritten and the batches behind it verified. A segment that overlaps the
    /// one before it cannot be kept beside it: the log is cut there, as by `Truncate`.
    SkipGap,
}

/// What an operator decides for a partition that is offline after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Open the log with [`RecoveryMode::Truncate`].
    Truncate,
    /// Open the log with [`RecoveryMode::SkipGap`].
    SkipGap,
    /// The partition's directory is gone: recreate the log empty, starting at the
    /// offset where it ended, so that no offset is ever reused.
    AcceptLoss,
}

impl RecoveryAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncate => "truncate",
            Self::SkipGap => "skip_gap",
            Self::AcceptLoss => "accept_loss",
        }
    }
}

/// Why an operator's recovery of a partition was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Only offline partitions are recovered.
    #[error("partition {0} is not offline")]
    NotOffline(String),
    /// The action does not fit what is wrong (e.g. `accept_loss` for a damaged
    /// segment, `truncate` for a missing directory).
    #[error("{action} does not apply to partition {partition}: {reason}")]
    NotApplicable {
        partition: String,
        action: &'static str,
        reason: String,
    },
    /// Recovery itself failed; the partition stays offline.
    #[error(transparent)]
    Storage(#[from] super::StorageError),
}

/// Empty record batches (no records, no producer) covering the offsets `from..to`,
/// each as long as `last_offset_delta` allows. Consumers read them like the empty
/// batches Kafka's compaction leaves: no records, and the next offset after them.
pub fn gap_batches(from: i64, to: i64) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut base = from;
    while base < to {
        let count = (to - base).min(i64::from(i32::MAX));
        batches.push(empty_batch(base, count as i32 - 1));
        base += count;
    }
    batches
}

fn empty_batch(base_offset: i64, last_offset_delta: i32) -> Bytes {
    let mut batch = BytesMut::with_capacity(BATCH_HEADER_BYTES);
    batch.put_i64(base_offset);
    batch.put_i32((BATCH_HEADER_BYTES - 12) as i32);
    batch.put_i32(-1); // partition leader epoch: unknown
    batch.put_i8(MAGIC);
    batch.put_u32(0); // CRC, computed below
    batch.put_i16(0); // attributes: no compression, create time, not transactional
    batch.put_i32(last_offset_delta);
    batch.put_i64(-1); // base timestamp: none
    batch.put_i64(-1); // max timestamp: none
    batch.put_i64(-1); // producer id
    batch.put_i16(-1); // producer epoch
    batch.put_i32(-1); // base sequence
    batch.put_i32(0); // record count
    debug_assert_eq!(batch.len(), BATCH_HEADER_BYTES);
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

#[cfg(test)]
mod tests {
    use fjord_protocol::RecordBatch;

    use super::*;

    /// Gap batches cover exactly the hole, carry a valid CRC and hold no records; a
    /// hole longer than one batch can describe is split.
    #[test]
    fn gap_batches_cover_the_hole() {
        let batches = gap_batches(100, 250);
        assert_eq!(batches.len(), 1);
        let batch = RecordBatch::new(batches[0].clone()).unwrap();
        batch.verify_crc().unwrap();
        assert_eq!(batch.base_offset(), 100);
        assert_eq!(batch.next_offset(), 250);
        assert_eq!(batch.records().count(), 0);

        let long = gap_batches(0, 3 * i64::from(i32::MAX) + 5);
        assert_eq!(long.len(), 4);
        let mut next = 0;
        for bytes in long {
            let batch = RecordBatch::new(bytes).unwrap();
            batch.verify_crc().unwrap();
            assert_eq!(batch.base_offset(), next);
            next = batch.next_offset();
        }
        assert_eq!(next, 3 * i64::from(i32::MAX) + 5);
        assert!(gap_batches(7, 7).is_empty());
    }
}
