//! Metadata (key 3): brokers, topics and partition leadership.
//!
//! ```text
//! request  := topics:nullable array[name:string]          null = every topic
//! response := cluster_id:string  controller_id:int32
//!             brokers:array[node_id:int32  host:string  port:int32]
//!             topics:array[error_code:int16  name:string  topic_id:uuid  is_internal:bool
//!                          partitions:array[error_code:int16  partition:int32
//!                                           leader:int32  leader_epoch:int32
//!                                           replicas:array[int32]  isr:array[int32]]]
//! ```
//! A leader of -1 means the partition has no leader right now.

use bytes::{BufMut, BytesMut};

use super::Message;
use crate::error::ErrorCode;
use crate::limits::{BROKERS_MAX, PARTITIONS_MAX, REPLICAS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_bool, put_count, put_string};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataRequest {
    /// `None` asks for every topic.
    pub topics: Option<Vec<String>>,
}

impl Message for MetadataRequest {
    fn encode(&self, out: &mut BytesMut) {
        match &self.topics {
            Some(topics) => put_array(out, topics, |out, name| put_string(out, name)),
            None => out.put_i32(-1),
        }
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let topics = match reader.nullable_count("topics", TOPICS_MAX, 2)? {
            None => None,
            Some(count) => {
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(reader.bounded_string("topic", TOPIC_NAME_BYTES_MAX)?);
                }
                Some(topics)
            }
        };
        Ok(Self { topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub error_code: ErrorCode,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub error_code: ErrorCode,
    pub name: String,
    pub topic_id: [u8; 16],
    pub is_internal: bool,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMetadata>,
    pub topics: Vec<TopicMetadata>,
}

fn put_ids(out: &mut BytesMut, ids: &[i32]) {
    put_count(out, ids.len());
    for id in ids {
        out.put_i32(*id);
    }
}

fn read_ids(reader: &mut Reader, field: &'static str) -> Result<Vec<i32>, DecodeError> {
    reader.array(field, REPLICAS_MAX, 4, |reader| reader.i32(field))
}

impl Message for MetadataResponse {
    fn encode(&self, out: &mut BytesMut) {
        put_string(out, &self.cluster_id);
        out.put_i32(self.controller_id);
        put_array(out, &self.brokers, |out, broker| {
            out.put_i32(broker.node_id);
            put_string(out, &broker.host);
            out.put_i32(broker.port);
        });
        put_array(out, &self.topics, |out, topic| {
            out.put_i16(topic.error_code.code());
            put_string(out, &topic.name);
            out.put_slice(&topic.topic_id);
            put_bool(out, topic.is_internal);
            put_array(out, &topic.partitions, |out, partition| {
                out.put_i16(partition.error_code.code());
                out.put_i32(partition.partition);
                out.put_i32(partition.leader);
                out.put_i32(partition.leader_epoch);
                put_ids(out, &partition.replicas);
                put_ids(out, &partition.isr);
            });
        });
    }

    fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let cluster_id = reader.string("cluster_id")?;
        let controller_id = reader.i32("controller_id")?;
        let brokers = reader.array("brokers", BROKERS_MAX, 10, |reader| {
            Ok(BrokerMetadata {
                node_id: reader.i32("node_id")?,
                host: reader.string("host")?,
                port: reader.i32("port")?,
            })
        })?;
        let topics = reader.array("topics", TOPICS_MAX, 25, |reader| {
            Ok(TopicMetadata {
                error_code: ErrorCode::from_code(reader.i16("error_code")?),
                name: reader.bounded_string("name", TOPIC_NAME_BYTES_MAX)?,
                topic_id: reader.uuid("topic_id")?,
                is_internal: reader.bool("is_internal")?,
                partitions: reader.array("partitions", PARTITIONS_MAX, 22, |reader| {
                    Ok(PartitionMetadata {
                        error_code: ErrorCode::from_code(reader.i16("error_code")?),
                        partition: reader.i32("partition")?,
                        leader: reader.i32("leader")?,
                        leader_epoch: reader.i32("leader_epoch")?,
                        replicas: read_ids(reader, "replicas")?,
                        isr: read_ids(reader, "isr")?,
                    })
                })?,
            })
        })?;
        Ok(Self {
            cluster_id,
            controller_id,
            brokers,
            topics,
        })
    }
}
