//! FindCoordinator (key 100): which broker coordinates a consumer group.
//!
//! ```text
//! request  := group_id:string
//! response := error_code:int16  error_message:nullable string
//!             node_id:int32  host:string  port:int32
//! ```
//! The coordinator of a group is the leader of the group's partition of the internal
//! `__consumer_offsets` topic. On an error the node id and port are -1 and the host is
//! empty.

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::GROUP_ID_BYTES_MAX;
use crate::wire::{DecodeError, Reader, put_nullable_string, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    pub group_id: String,
}

impl Message for FindCoordinatorRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.group_id);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            group_id: reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindCoordinatorResponse {
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl FindCoordinatorResponse {
    /// A response that names no coordinator.
    pub fn error(error_code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error_code,
            error_message: Some(message.into()),
            node_id: -1,
            host: String::new(),
            port: -1,
        }
    }
}

impl Message for FindCoordinatorResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_i16(self.error_code.code());
        put_nullable_string(out, self.error_message.as_deref());
        out.put_i32(self.node_id);
        put_string(out, &self.host);
        out.put_i32(self.port);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            error_code: ErrorCode::from_code(reader.i16("error_code")?),
            error_message: reader.nullable_string("error_message")?,
            node_id: reader.i32("node_id")?,
            host: reader.string("host")?,
            port: reader.i32("port")?,
        })
    }
}
