//! DescribeGroups (key 105): a consumer group's members and assignments.
//!
//! ```text
//! request  := group_ids:array[string]
//! response := groups:array[error_code:int16  group_id:string  group_state:string
//!                          group_epoch:int32  assignment_epoch:int32  assignor_name:string
//!                          members:array[member_id:string  client_id:string
//!                                        client_host:string  member_epoch:int32
//!                                        subscribed_topic_names:array[string]
//!                                        assignment:array[topic:string
//!                                                         partitions:array[int32]]
//!                                        target_assignment:array[topic:string
//!                                                                partitions:array[int32]]]]
//! ```
//! `assignment` is what a member owns now; `target_assignment` what it will own once
//! the partitions moving to it have been released. A group this broker does not know
//! has `GROUP_ID_NOT_FOUND`; one it does not coordinate `NOT_COORDINATOR`.

use bytes::{BufMut, BytesMut};

use super::Message;
use super::topic_partitions::{TopicPartitions, put_topic_partitions, read_topic_partitions};
use crate::error::ErrorCode;
use crate::limits::{
    GROUP_ID_BYTES_MAX, GROUP_MEMBERS_MAX, GROUP_STATE_BYTES_MAX, GROUPS_MAX, MEMBER_ID_BYTES_MAX,
    TOPIC_NAME_BYTES_MAX, TOPICS_MAX,
};
use crate::wire::{DecodeError, Reader, put_array, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsRequest {
    pub group_ids: Vec<String>,
}

impl Message for DescribeGroupsRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.group_ids, |out, group_id| {
            put_string(out, group_id)
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_ids: reader.array("group_ids", GROUPS_MAX, 2, |reader| {
                reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub subscribed_topic_names: Vec<String>,
    /// The partitions the member owns now.
    pub assignment: Vec<TopicPartitions>,
    /// The partitions the member will own once the group has reconciled.
    pub target_assignment: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error_code: ErrorCode,
    pub group_id: String,
    pub group_state: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<DescribedMember>,
}

impl DescribedGroup {
    /// The entry of a group that could not be described.
    pub fn error(group_id: impl Into<String>, error_code: ErrorCode) -> Self {
        Self {
            error_code,
            group_id: group_id.into(),
            group_state: String::new(),
            group_epoch: -1,
            assignment_epoch: -1,
            assignor_name: String::new(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupsResponse {
    pub groups: Vec<DescribedGroup>,
}

impl Message for DescribeGroupsResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.groups, |out, group| {
            out.put_i16(group.error_code.code());
            put_string(out, &group.group_id);
            put_string(out, &group.group_state);
            out.put_i32(group.group_epoch);
            out.put_i32(group.assignment_epoch);
            put_string(out, &group.assignor_name);
            put_array(out, &group.members, |out, member| {
                put_string(out, &member.member_id);
                put_string(out, &member.client_id);
                put_string(out, &member.client_host);
                out.put_i32(member.member_epoch);
                put_array(out, &member.subscribed_topic_names, |out, name| {
                    put_string(out, name)
                });
                put_topic_partitions(out, &member.assignment);
                put_topic_partitions(out, &member.target_assignment);
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            groups: reader.array("groups", GROUPS_MAX, 20, |reader| {
                Ok(DescribedGroup {
                    error_code: ErrorCode::from_code(reader.i16("error_code")?),
                    group_id: reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?,
                    group_state: reader.bounded_string("group_state", GROUP_STATE_BYTES_MAX)?,
                    group_epoch: reader.i32("group_epoch")?,
                    assignment_epoch: reader.i32("assignment_epoch")?,
                    assignor_name: reader.string("assignor_name")?,
                    members: reader.array("members", GROUP_MEMBERS_MAX, 22, read_member)?,
                })
            })?,
        })
    }
}

fn read_member(reader: &mut Reader) -> Result<DescribedMember, DecodeError> {
    Ok(DescribedMember {
        member_id: reader.bounded_string("member_id", MEMBER_ID_BYTES_MAX)?,
        client_id: reader.string("client_id")?,
        client_host: reader.string("client_host")?,
        member_epoch: reader.i32("member_epoch")?,
        subscribed_topic_names: reader.array(
            "subscribed_topic_names",
            TOPICS_MAX,
            2,
            |reader| reader.bounded_string("topic", TOPIC_NAME_BYTES_MAX),
        )?,
        assignment: read_topic_partitions(reader, "assignment")?,
        target_assignment: read_topic_partitions(reader, "target_assignment")?,
    })
}
