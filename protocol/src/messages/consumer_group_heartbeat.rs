//! ConsumerGroupHeartbeat (key 101): join, stay in and leave a consumer group, and
//! learn the partitions to own.
//!
//! ```text
//! request  := group_id:string  member_id:string  member_epoch:int32
//!             rebalance_timeout_ms:int32
//!             subscribed_topic_names:nullable array[string]      null = unchanged
//!             owned_partitions:array[topic:string  partitions:array[int32]]
//! response := error_code:int16  error_message:nullable string
//!             member_id:string  member_epoch:int32  heartbeat_interval_ms:int32
//!             assignment:array[topic:string  partitions:array[int32]]
//! ```
//! A member joins with an empty member id and epoch 0 (the response carries the id the
//! coordinator gave it), heartbeats with its id and latest epoch every
//! `heartbeat_interval_ms`, and leaves with epoch -1. Subscriptions are sent when
//! joining and when they change. `owned_partitions` is every partition the member
//! consumes or may still consume; the coordinator releases a revoked partition to its
//! next owner only once the member stops reporting it. `assignment` is every partition
//! the member may own now.

use bytes::{BufMut, BytesMut};

use super::Message;
use super::topic_partitions::{TopicPartitions, put_topic_partitions, read_topic_partitions};
use crate::error::ErrorCode;
use crate::limits::{GROUP_ID_BYTES_MAX, MEMBER_ID_BYTES_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_nullable_string, put_string};

/// The member epoch that asks to join.
pub const JOIN_MEMBER_EPOCH: i32 = 0;
/// The member epoch that asks to leave.
pub const LEAVE_MEMBER_EPOCH: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupHeartbeatRequest {
    pub group_id: String,
    /// Empty when joining.
    pub member_id: String,
    /// 0 joins, -1 leaves, otherwise the epoch of the latest response.
    pub member_epoch: i32,
    /// How long the member may take to give up revoked partitions.
    pub rebalance_timeout_ms: i32,
    /// `None` when unchanged since the previous heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub owned_partitions: Vec<TopicPartitions>,
}

impl Message for ConsumerGroupHeartbeatRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.group_id);
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        out.put_i32(self.rebalance_timeout_ms);
        match &self.subscribed_topic_names {
            Some(names) => put_array(out, names, |out, name| put_string(out, name)),
            None => out.put_i32(-1),
        }
        put_topic_partitions(out, &self.owned_partitions);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let group_id = reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?;
        let member_id = reader.bounded_string("member_id", MEMBER_ID_BYTES_MAX)?;
        let member_epoch = reader.i32("member_epoch")?;
        let rebalance_timeout_ms = reader.u31("rebalance_timeout_ms")?;
        let subscribed_topic_names =
            match reader.nullable_count("subscribed_topic_names", TOPICS_MAX, 2)? {
                None => None,
                Some(count) => {
                    let mut names = Vec::with_capacity(count);
                    for _ in 0..count {
                        names.push(reader.bounded_string("topic", TOPIC_NAME_BYTES_MAX)?);
                    }
                    Some(names)
                }
            };
        Ok(Self {
            group_id,
            member_id,
            member_epoch,
            rebalance_timeout_ms,
            subscribed_topic_names,
            owned_partitions: read_topic_partitions(reader, "owned_partitions")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupHeartbeatResponse {
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Every partition the member may own now.
    pub assignment: Vec<TopicPartitions>,
}

impl ConsumerGroupHeartbeatResponse {
    /// A response carrying only an error.
    pub fn error(error_code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error_code,
            error_message: Some(message.into()),
            member_id: String::new(),
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: Vec::new(),
        }
    }
}

impl Message for ConsumerGroupHeartbeatResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.error_code.code());
        put_nullable_string(out, self.error_message.as_deref());
        put_string(out, &self.member_id);
        out.put_i32(self.member_epoch);
        out.put_i32(self.heartbeat_interval_ms);
        put_topic_partitions(out, &self.assignment);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error_code: ErrorCode::from_code(reader.i16("error_code")?),
            error_message: reader.nullable_string("error_message")?,
            member_id: reader.bounded_string("member_id", MEMBER_ID_BYTES_MAX)?,
            member_epoch: reader.i32("member_epoch")?,
            heartbeat_interval_ms: reader.i32("heartbeat_interval_ms")?,
            assignment: read_topic_partitions(reader, "assignment")?,
        })
    }
}
