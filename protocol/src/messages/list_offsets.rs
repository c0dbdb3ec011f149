//! ListOffsets (key 2): earliest, latest, or first offset at or after a timestamp.
//!
//! ```text
//! request  := replica_id:int32
//!             topics:array[name:string
//!                          partitions:array[partition:int32  current_leader_epoch:int32
//!                                           timestamp:int64]]
//! response := topics:array[name:string
//!                          partitions:array[partition:int32  error_code:int16
//!                                           timestamp:int64  offset:int64  leader_epoch:int32]]
//! ```
//! `timestamp` -2 asks for the earliest offset (log start), -1 for the latest (the
//! high watermark for consumers), and a value >= 0 for the first offset whose record
//! timestamp is at or after it (offset -1 when there is none).

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_string};

/// What a ListOffsets partition entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    Timestamp(i64),
}

impl OffsetSpec {
    pub fn to_timestamp(self) -> i64 {
        match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::Timestamp(timestamp) => timestamp,
        }
    }

    /// `None` for negative values other than -1 and -2.
    pub fn from_timestamp(timestamp: i64) -> Option<Self> {
        match timestamp {
            -2 => Some(Self::Earliest),
            -1 => Some(Self::Latest),
            timestamp if timestamp >= 0 => Some(Self::Timestamp(timestamp)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: i32,
    pub current_leader_epoch: i32,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub replica_id: i32,
    pub topics: Vec<ListOffsetsTopic>,
}

impl Message for ListOffsetsRequest {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i32(self.replica_id);
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i32(partition.current_leader_epoch);
                out.put_i64(partition.timestamp);
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            replica_id: reader.i32("replica_id")?,
            topics: reader.array("topics", TOPICS_MAX, 6, |reader| {
                Ok(ListOffsetsTopic {
                    name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                    partitions: reader.array("partitions", PARTITIONS_MAX, 16, |reader| {
                        Ok(ListOffsetsPartition {
                            partition: reader.i32("partition")?,
                            current_leader_epoch: reader.i32("current_leader_epoch")?,
                            timestamp: reader.i64("timestamp")?,
                        })
                    })?,
                })
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition: i32,
    pub error_code: ErrorCode,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResponse {
    pub topics: Vec<ListOffsetsTopicResponse>,
}

impl Message for ListOffsetsResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i16(partition.error_code.code());
                out.put_i64(partition.timestamp);
                out.put_i64(partition.offset);
                out.put_i32(partition.leader_epoch);
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 6, |reader| {
            Ok(ListOffsetsTopicResponse {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                partitions: reader.array("partitions", PARTITIONS_MAX, 26, |reader| {
                    Ok(ListOffsetsPartitionResponse {
                        partition: reader.i32("partition")?,
                        error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        timestamp: reader.i64("timestamp")?,
                        offset: reader.i64("offset")?,
                        leader_epoch: reader.i32("leader_epoch")?,
                    })
                })?,
            })
        })?;
        Ok(Self { topics })
    }
}
