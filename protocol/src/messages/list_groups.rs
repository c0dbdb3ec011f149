//! ListGroups (key 104): the consumer groups a broker coordinates.
//!
//! ```text
//! request  := states_filter:array[string]                 empty = every state
//! response := error_code:int16
//!             groups:array[group_id:string  group_state:string  member_count:int32]
//! ```
//! Each broker lists the groups it coordinates; a tool asks every broker. Group states
//! are `Empty` (no members, committed offsets only), `Reconciling` (members are still
//! moving partitions to a new target assignment) and `Stable`.

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{GROUP_ID_BYTES_MAX, GROUP_STATE_BYTES_MAX, GROUPS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_string};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest {
    /// Only groups in one of these states; empty for every group.
    pub states_filter: Vec<String>,
}

impl Message for ListGroupsRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.states_filter, |out, state| {
            put_string(out, state)
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            states_filter: reader.array("states_filter", GROUPS_MAX, 2, |reader| {
                reader.bounded_string("state", GROUP_STATE_BYTES_MAX)
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub group_state: String,
    pub member_count: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListGroupsResponse {
    pub error_code: ErrorCode,
    pub groups: Vec<ListedGroup>,
}

impl Message for ListGroupsResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.error_code.code());
        put_array(out, &self.groups, |out, group| {
            put_string(out, &group.group_id);
            put_string(out, &group.group_state);
            out.put_i32(group.member_count);
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error_code: ErrorCode::from_code(reader.i16("error_code")?),
            groups: reader.array("groups", GROUPS_MAX, 8, |reader| {
                Ok(ListedGroup {
                    group_id: reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?,
                    group_state: reader.bounded_string("group_state", GROUP_STATE_BYTES_MAX)?,
                    member_count: reader.i32("member_count")?,
                })
            })?,
        })
    }
}
