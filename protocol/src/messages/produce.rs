//! Produce (key 0): append record batches to partitions.
//!
//! ```text
//! request  := acks:int16  timeout_ms:int32
//!             topics:array[name:string  partitions:array[partition:int32
//!                                                    current_leader_epoch:int32  (v1+)
//!                                                    records:bytes]]
//! response := topics:array[name:string
//!                          partitions:array[partition:int32  error_code:int16
//!                                           base_offset:int64  log_append_time_ms:int64
//!                                           log_start_offset:int64
//!                                           error_message:nullable string]]
//! ```
//! `records` holds one or more record batches back to back. `acks`: 0 = none (no
//! response is sent at all), 1 = leader, -1 = all in-sync replicas.

use bytes::{BufMut, Bytes, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{FRAME_BYTES_MAX, PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{
    DecodeError, Reader, put_array, put_nullable_bytes, put_nullable_string, put_string,
};

/// How many replicas must have a batch before the produce request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    None,
    /// The leader has appended it (and made it durable under the log's policy).
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    pub fn code(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Leader),
            -1 => Some(Self::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub partition: i32,
    /// The leader epoch the producer knows (from Metadata); -1 (any negative value)
    /// skips the check. Sent from version 1 on; version 0 reads as -1.
    pub current_leader_epoch: i32,
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The raw code, so that an invalid value can be answered with `INVALID_REQUIRED_ACKS`.
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

/// The version [`Message::encode`] and [`Message::decode`] speak: the first.
const PLAIN_VERSION: i16 = 0;

impl Message for ProduceRequest {
    fn encode(&self, out: &mut BytesMut) {
        self.encode_version(PLAIN_VERSION, out);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Self::decode_version(reader, PLAIN_VERSION)
    }

    fn encode_version(&self, version: i16, out: &mut BytesMut) {
        out.put_i16(self.acks);
        out.put_i32(self.timeout_ms);
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                if version >= 1 {
                    out.put_i32(partition.current_leader_epoch);
                }
                put_nullable_bytes(out, Some(&partition.records));
            });
        });
    }

    fn decode_version(reader: &mut Reader, version: i16) -> Result<Self, DecodeError> {
        let acks = reader.i16("acks")?;
        let timeout_ms = reader.u31("timeout_ms")?;
        let topics = reader.array("topics", TOPICS_MAX, 6, |reader| {
            Ok(ProduceTopic {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                partitions: reader.array("partitions", PARTITIONS_MAX, 8, |reader| {
                    Ok(ProducePartition {
                        partition: reader.i32("partition")?,
                        current_leader_epoch: if version >= 1 {
                            reader.i32("current_leader_epoch")?
                        } else {
                            -1
                        },
                        records: reader.nullable_bytes("records", FRAME_BYTES_MAX)?.ok_or(
                            DecodeError::InvalidValue {
                                field: "records",
                                value: -1,
                            },
                        )?,
                    })
                })?,
            })
        })?;
        Ok(Self {
            acks,
            timeout_ms,
            topics,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub partition: i32,
    pub error_code: ErrorCode,
    /// Offset of the first record appended, -1 on error.
    pub base_offset: i64,
    /// -1: the topic keeps the producer's create time.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResponse {
    pub name: String,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
}

impl Message for ProduceResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i16(partition.error_code.code());
                out.put_i64(partition.base_offset);
                out.put_i64(partition.log_append_time_ms);
                out.put_i64(partition.log_start_offset);
                put_nullable_string(out, partition.error_message.as_deref());
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 6, |reader| {
            Ok(ProduceTopicResponse {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                partitions: reader.array("partitions", PARTITIONS_MAX, 32, |reader| {
                    Ok(ProducePartitionResponse {
                        partition: reader.i32("partition")?,
                        error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        base_offset: reader.i64("base_offset")?,
                        log_append_time_ms: reader.i64("log_append_time_ms")?,
                        log_start_offset: reader.i64("log_start_offset")?,
                        error_message: reader.nullable_string("error_message")?,
                    })
                })?,
            })
        })?;
        Ok(Self { topics })
    }
}
