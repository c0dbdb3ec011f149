//! OffsetCommit (key 102): store the offsets a group has consumed up to.
//!
//! ```text
//! request  := group_id:string  member_id:string  member_epoch:int32
//!             topics:array[name:string
//!                          partitions:array[partition:int32  committed_offset:int64
//!                                           committed_metadata:nullable string]]
//! response := topics:array[name:string  partitions:array[partition:int32  error_code:int16]]
//! ```
//! A member commits with its id and current epoch, and only for partitions it owns. A
//! tool commits with an empty member id and epoch -1; that is accepted only while the
//! group has no members (`NON_EMPTY_GROUP` otherwise). The committed offset is the next
//! offset to consume. Errors are per partition, request-wide ones included.

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{
    GROUP_ID_BYTES_MAX, MEMBER_ID_BYTES_MAX, PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX,
};
use crate::wire::{DecodeError, Reader, put_array, put_nullable_string, put_string};

/// The member epoch of a commit made outside the group (by a tool, with an empty
/// member id).
pub const ADMIN_MEMBER_EPOCH: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: i32,
    /// The next offset to consume.
    pub committed_offset: i64,
    pub committed_metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub topics: Vec<OffsetCommitTopic>,
}

impl Message for OffsetCommitRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i64(partition.committed_offset);
                put_nullable_string(out, partition.committed_metadata.as_deref());
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?,
            member_id: reader.bounded_string("member_id", MEMBER_ID_BYTES_MAX)?,
            member_epoch: reader.i32("member_epoch")?,
            topics: reader.array("topics", TOPICS_MAX, 6, |reader| {
                Ok(OffsetCommitTopic {
                    name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                    partitions: reader.array("partitions", PARTITIONS_MAX, 14, |reader| {
                        Ok(OffsetCommitPartition {
                            partition: reader.i32("partition")?,
                            committed_offset: reader.i64("committed_offset")?,
                            committed_metadata: reader.nullable_string("committed_metadata")?,
                        })
                    })?,
                })
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartitionResponse {
    pub partition: i32,
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    pub topics: Vec<OffsetCommitTopicResponse>,
}

impl OffsetCommitResponse {
    /// The same error for every partition of `request`.
    pub fn all(request: &OffsetCommitRequest, error_code: ErrorCode) -> Self {
        Self {
            topics: request
                .topics
                .iter()
                .map(|topic| OffsetCommitTopicResponse {
                    name: topic.name.clone(),
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|partition| OffsetCommitPartitionResponse {
                            partition: partition.partition,
                            error_code,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl Message for OffsetCommitResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i32(partition.partition);
                out.put_i16(partition.error_code.code());
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: reader.array("topics", TOPICS_MAX, 6, |reader| {
                Ok(OffsetCommitTopicResponse {
                    name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                    partitions: reader.array("partitions", PARTITIONS_MAX, 6, |reader| {
                        Ok(OffsetCommitPartitionResponse {
                            partition: reader.i32("partition")?,
                            error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        })
                    })?,
                })
            })?,
        })
    }
}
