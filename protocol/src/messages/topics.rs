//! CreateTopics (key 20) and DeleteTopics (key 21).
//!
//! ```text
//! create request  := topics:array[name:string  partitions:int32  replication_factor:int16
//!                                 configs:array[key:string  value:string]]
//!                    timeout_ms:int32  validate_only:bool
//! create response := topics:array[name:string  topic_id:uuid  error_code:int16
//!                                 error_message:nullable string]
//! delete request  := names:array[string]  timeout_ms:int32
//! delete response := topics:array[name:string  error_code:int16  error_message:nullable string]
//! ```
//! A partition count or replication factor of -1 asks for the broker's default.

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{CONFIG_ENTRIES_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_bool, put_nullable_string, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<ConfigEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreateTopic>,
    pub timeout_ms: i32,
    /// Check everything, create nothing.
    pub validate_only: bool,
}

impl Message for CreateTopicsRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            out.put_i32(topic.partitions);
            out.put_i16(topic.replication_factor);
            put_array(out, &topic.configs, |out, entry| {
                put_string(out, &entry.key);
                put_string(out, &entry.value);
            });
        });
        out.put_i32(self.timeout_ms);
        put_bool(out, self.validate_only);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 12, |reader| {
            Ok(CreateTopic {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                partitions: reader.i32("partitions")?,
                replication_factor: reader.i16("replication_factor")?,
                configs: reader.array("configs", CONFIG_ENTRIES_MAX, 4, |reader| {
                    Ok(ConfigEntry {
                        key: reader.string("config key")?,
                        value: reader.string("config value")?,
                    })
                })?,
            })
        })?;
        Ok(Self {
            topics,
            timeout_ms: reader.u31("timeout_ms")?,
            validate_only: reader.bool("validate_only")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicResult {
    pub name: String,
    /// All zeroes when the topic was not created.
    pub topic_id: [u8; 16],
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopicsResponse {
    pub topics: Vec<CreateTopicResult>,
}

impl Message for CreateTopicsResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            out.put_slice(&topic.topic_id);
            out.put_i16(topic.error_code.code());
            put_nullable_string(out, topic.error_message.as_deref());
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 22, |reader| {
            Ok(CreateTopicResult {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                topic_id: reader.uuid("topic_id")?,
                error_code: ErrorCode::from_code(reader.i16("error_code")?),
                error_message: reader.nullable_string("error_message")?,
            })
        })?;
        Ok(Self { topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicsRequest {
    pub names: Vec<String>,
    pub timeout_ms: i32,
}

impl Message for DeleteTopicsRequest {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.names, |out, name| put_string(out, name));
        out.put_i32(self.timeout_ms);
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let names = reader.array("names", TOPICS_MAX, 2, |reader| {
            reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)
        })?;
        Ok(Self {
            names,
            timeout_ms: reader.u31("timeout_ms")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicResult {
    pub name: String,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteTopicsResponse {
    pub topics: Vec<DeleteTopicResult>,
}

impl Message for DeleteTopicsResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_array(out, &self.topics, |out, topic| {
            put_string(out, &topic.name);
            out.put_i16(topic.error_code.code());
            put_nullable_string(out, topic.error_message.as_deref());
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = reader.array("topics", TOPICS_MAX, 6, |reader| {
            Ok(DeleteTopicResult {
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                error_code: ErrorCode::from_code(reader.i16("error_code")?),
                error_message: reader.nullable_string("error_message")?,
            })
        })?;
        Ok(Self { topics })
    }
}
