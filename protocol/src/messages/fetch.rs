//! Fetch (key 1): read record batches from partitions, long-polling for new data.
//!
//! ```text
//! request  := replica_id:int32  max_wait_ms:int32  min_bytes:int32  max_bytes:int32
//!             topics:array[name:string
//!                          partitions:array[partition:int32  current_leader_epoch:int32
//!                                           fetch_offset:int64  partition_max_bytes:int32]]
//! response := topics:array[name:string
//!                          partitions:array[partition:int32  error_code:int16
//!                                           high_watermark:int64  log_start_offset:int64
//!                                           records:bytes]]
//! ```
//! `replica_id` is -1 for consumers and the follower's node id for replicas (which may
//! read past the high watermark). `current_leader_epoch` -1 skips the epoch check.
//! The broker waits up to `max_wait_ms` for `min_bytes` to be available. `records` holds
//! whole batches only; the first batch is returned even when it exceeds the byte
//! budgets, so that a consumer always makes progress.

use bytes::{BufMut, Bytes, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{FRAME_BYTES_MAX, PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_string};

/// The `replica_id` of an ordinary consumer.
pub const CONSUMER_REPLICA_ID: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub topics: Vec<FetchTopic>,
}

impl Message for FetchRequest {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.replica_id);
        out.put_i32(self.max_wait_ms);
        out.put_i32(self.min_bytes);
        out.put_i32(self.max_bytes);
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i32(partition.current_leader_epoch);
                out.put_i64(partition.fetch_offset);
                out.put_i32(partition.partition_max_bytes);
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            replica_id: reader.i32("replica_id")?,
            max_wait_ms: reader.u31("max_wait_ms")?,
            min_bytes: reader.u31("min_bytes")?,
            max_bytes: reader.u31("max_bytes")?,
            topics: reader.array("topics", TOPICS_MAX, 6, |reader| {
                Ok(FetchTopic {
                    name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                    partitions: reader.array("partitions", PARTITIONS_MAX, 20, |reader| {
                        Ok(FetchPartition {
                            partition: reader.i32("partition")?,
                            current_leader_epoch: reader.i32("current_leader_epoch")?,
                            fetch_offset: reader.i64("fetch_offset")?,
                            partition_max_bytes: reader.u31("partition_max_bytes")?,
                        })
                    })?,
                })
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub partition: i32,
    pub error_code: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole batches back to back; empty when there is nothing (or on error).
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    pub name: String,
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub topics: Vec<FetchTopicResponse>,
}

impl FetchResponse {
    /// Encodes everything but the record bytes, and returns the records in the order
    /// they belong, so that a server can write them to the socket without copying them
    /// into the response buffer. The record bytes of each partition follow its
    /// 4-byte length, which `encode_head` writes.
    pub fn encode_head(
        &self,
        out: &mut BytesMut,
        mut on_records: impl FnMut(&mut BytesMut, &Bytes),
    ) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i16(partition.error_code.code());
                out.put_i64(partition.high_watermark);
                out.put_i64(partition.log_start_offset);
                out.put_i32(i32::try_from(partition.records.len()).expect("records too large"));
                on_records(out, &partition.records);
            });
        });
    }
}

impl Message for FetchResponse {
    fn encode(&self, out: &mut BytesMut) {
        self.encode_head(out, |out, records| out.put_slice(records));
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 6, |reader| {
            Ok(FetchTopicResponse {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                partitions: reader.array("partitions", PARTITIONS_MAX, 26, |reader| {
                    Ok(FetchPartitionResponse {
                        partition: reader.i32("partition")?,
                        error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        high_watermark: reader.i64("high_watermark")?,
                        log_start_offset: reader.i64("log_start_offset")?,
                        records: reader
                            .nullable_bytes("records", FRAME_BYTES_MAX)?
                            .unwrap_or_default(),
                    })
                })?,
            })
        })?;
        Ok(Self { topics })
    }
}
