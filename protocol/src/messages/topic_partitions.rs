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

    /// Groups `(topic, partition)` pairs into one entry per run of the same topic, in
    /// order: pairs sorted by topic give one entry per topic.
    pub fn group<'a>(pairs: impl IntoIterator<Item = (&'a str, i32)>) -> Vec<TopicPartitions> {
        let mut topics: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in pairs {
            match topics.last_mut() {
                Some(last) if last.topic == topic => last.partitions.push(partition),
                _ => topics.push(TopicPartitions::new(topic, [partition])),
            }
        }
        topics
    }

    /// Every `(topic, partition)` pair of `topics`, in order.
    pub fn pairs(topics: &[TopicPartitions]) -> impl Iterator<Item = (&str, i32)> {
        topics.iter().flat_map(|entry| {
            entry
                .partitions
                .iter()
                .map(|partition| (entry.topic.as_str(), *partition))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorted pairs group into one entry per topic, and the entries flatten back.
    #[test]
    fn group_and_pairs_round_trip() {
        let pairs = [("a", 0), ("a", 2), ("b", 1)];
        let grouped = TopicPartitions::group(pairs);
        assert_eq!(
            grouped,
            vec![
                TopicPartitions::new("a", [0, 2]),
                TopicPartitions::new("b", [1])
            ]
        );
        assert_eq!(TopicPartitions::pairs(&grouped).collect::<Vec<_>>(), pairs);
    }
}
