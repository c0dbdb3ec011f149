//! A list of partitions per topic, the shape shared by the group APIs: the partitions
//! a member owns, its assignment, and the partitions an offset fetch asks for.
//!
//! ```text
//! topic_partitions := array[topic:string  partitions:array[int32]]
//! ```

use bytes::{BufMut, BytesMut};

use crate::limits::{PARTITIONS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX};
use crate::wire::{DecodeError, Reader, put_array, put_string};

/// The partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

impl TopicPartitions {
    pub fn new(topic: impl Into<String>, partitions: impl IntoIterator<Item = i32>) -> Self {
        Self {
            topic: topic.into(),
            partitions: partitions.into_iter().collect(),
        }
    }
}

/// Writes the entries of a `topic_partitions` array (its count first).
pub(super) fn put_topic_partitions(out: &mut BytesMut, topics: &[TopicPartitions]) {
    put_array(out, topics, |out, entry| {
        put_string(out, &entry.topic);
        put_array(out, &entry.partitions, |out, partition| {
            out.put_i32(*partition)
        });
    });
}

/// Reads one `topic_partitions` entry (after the array count).
pub(super) fn read_topic_partitions_entry(
    reader: &mut Reader,
) -> Result<TopicPartitions, DecodeError> {
    Ok(TopicPartitions {
        topic: reader.bounded_string("topic", TOPIC_NAME_BYTES_MAX)?,
        partitions: reader.array("partitions", PARTITIONS_MAX, 4, |reader| {
            reader.i32("partition")
        })?,
    })
}

/// Reads a whole `topic_partitions` array; `field` names it in errors.
pub(super) fn read_topic_partitions(
    reader: &mut Reader,
    field: &'static str,
) -> Result<Vec<TopicPartitions>, DecodeError> {
    // An entry is at least an empty name (2 bytes) and an empty array (4 bytes).
    reader.array(field, TOPICS_MAX, 6, read_topic_partitions_entry)
}
