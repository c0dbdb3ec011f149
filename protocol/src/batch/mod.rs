//! Record batches in the Kafka RecordBatch v2 layout (magic 2).
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset             int64   stamped by the broker
//!      8     4  batch_length            int32   bytes after this field
//!     12     4  partition_leader_epoch  int32   stamped by the broker
//!     16     1  magic                   int8    = 2
//!     17     4  crc                     uint32  CRC-32C of bytes 21..end
//!     21     2  attributes              int16   bits 0-2 compression, bit 3 timestamp type,
//!                                               bit 4 transactional, bit 5 control
//!     23     4  last_offset_delta       int32
//!     27     8  base_timestamp          int64   ms since the Unix epoch
//!     35     8  max_timestamp           int64
//!     43     8  producer_id             int64   -1 when not idempotent
//!     51     2  producer_epoch          int16
//!     53     4  base_sequence           int32
//!     57     4  record_count            int32
//!     61        records
//!
//! record := length:varint  attributes:int8  timestamp_delta:varlong  offset_delta:varint
//!           key_length:varint (-1 = null)  key  value_length:varint (-1 = null)  value
//!           header_count:varint  [header_key_length:varint  header_key
//!                                 header_value_length:varint (-1 = null)  header_value]
//! ```
//!
//! Varints are zig-zag encoded base-128 (as in Protocol Buffers' `sint32`/`sint64`).
//! The CRC does not cover the base offset and the leader epoch, so the broker stamps
//! them in place without recomputing it.

mod builder;
mod varint;
mod view;

pub use builder::{BatchBuilder, HeaderInput, RecordInput};
pub use view::{
    Compression, Header, Record, RecordBatch, RecordBatchError, RecordBatches, TimestampBounds,
    TimestampType, set_base_offset, set_log_append_time, set_partition_leader_epoch,
};

/// Bytes of the batch header, before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s count starts (base offset + the length field itself).
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// The only record batch format version Fjord reads and writes.
pub const MAGIC: i8 = 2;

pub(crate) mod layout {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
    pub const RECORDS: usize = 61;
}

const _: () = assert!(layout::RECORDS == BATCH_HEADER_BYTES);
