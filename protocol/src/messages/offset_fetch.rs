//! OffsetFetch (key 103): the offsets a group has committed.
//!
//! ```text
//! request  := group_id:string
//!             topics:nullable array[name:string  partitions:array[int32]]   null = all
//! response := error_code:int16
//!             topics:array[name:string
//!                          partitions:array[partition:int32  committed_offset:int64
//!                                           committed_metadata:nullable string
//!                                           error_code:int16]]
//! ```
//! A partition without a committed offset has `committed_offset` -1 and null metadata.
//! With `topics` null the response lists every partition the group has an offset for.
//! The top-level `error_code` reports failures of the whole request (`NOT_COORDINATOR`,
//! `COORDINATOR_NOT_AVAILABLE`, `INVALID_GROUP_ID`); `topics` is empty then.

use bytes::{BufMut, BytesMut};

use super::Message;
use super::topic_partitions::{TopicPartitions, put_topic_partitions, read_topic_partitions_entry};
use crate::error::ErrorCode;
use crate::limits::{GROUP_ID_BYTES_MAX, PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_nullable_string, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// `None` asks for every committed partition of the group.
    pub topics: Option<Vec<TopicPartitions>>,
}

impl Message for OffsetFetchRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        match &self.topics {
            Some(topics) => put_topic_partitions(out, topics),
            None => out.put_i32(-1),
        }
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let group_id = reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?;
        let topics = match reader.nullable_count("topics", TOPICS_MAX, 6)? {
            None => None,
            Some(count) => {
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(read_topic_partitions_entry(reader)?);
                }
                Some(topics)
            }
        };
        Ok(Self { group_id, topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartitionResponse {
    pub partition: i32,
    /// -1 when the group has committed nothing for the partition.
    pub committed_offset: i64,
    pub committed_metadata: Option<String>,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetFetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    pub error_code: ErrorCode,
    pub topics: Vec<OffsetFetchTopicResponse>,
}

impl Message for OffsetFetchResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.error_code.code());
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i64(partition.committed_offset);
                put_nullable_string(out, partition.committed_metadata.as_deref());
                out.put_i16(partition.error_code.code());
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error_code: ErrorCode::from_code(reader.i16("error_code")?),
            topics: reader.array("topics", TOPICS_MAX, 6, |reader| {
                Ok(OffsetFetchTopicResponse {
                    name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                    partitions: reader.array("partitions", PARTITIONS_MAX, 16, |reader| {
                        Ok(OffsetFetchPartitionResponse {
                            partition: reader.i32("partition")?,
                            committed_offset: reader.i64("committed_offset")?,
                            committed_metadata: reader.nullable_string("committed_metadata")?,
                            error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        })
                    })?,
                })
            })?,
        })
    }
}
