//! The committed offsets of one group, as rebuilt from the offsets topic.
//!
//! Every change comes from a record of the group's `__consumer_offsets` partition,
//! applied with its position in that log. Commits of different requests become durable
//! together (group commit) and may be applied in any order, so a record only takes
//! effect when it is newer, by log position, than the one that set the current value;
//! deletions are remembered with their position for the same reason.

use std::collections::BTreeMap;

use super::records::OffsetValue;
use crate::storage::TopicPartition;

/// A committed offset, with where in the offsets topic it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub value: OffsetValue,
    pub record_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None` once deleted.
    value: Option<OffsetValue>,
    record_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupOffsets {
    entries: BTreeMap<TopicPartition, Entry>,
}

impl GroupOffsets {
    /// Applies a commit (`Some`) or deletion (`None`) recorded at `record_offset`,
    /// unless a newer record of the same partition was applied already.
    pub fn apply(
        &mut self,
        partition: TopicPartition,
        value: Option<OffsetValue>,
        record_offset: i64,
    ) {
        match self.entries.get(&partition) {
            Some(entry) if entry.record_offset >= record_offset => {}
            _ => {
                self.entries.insert(
                    partition,
                    Entry {
                        value,
                        record_offset,
                    },
                );
            }
        }
    }

    pub fn get(&self, partition: &TopicPartition) -> Option<&OffsetValue> {
        self.entries.get(partition)?.value.as_ref()
    }

    /// Every committed (not deleted) offset, in partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &OffsetValue)> {
        self.entries
            .iter()
            .filter_map(|(partition, entry)| Some((partition, entry.value.as_ref()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(committed_offset: i64) -> Option<OffsetValue> {
        Some(OffsetValue {
            committed_offset,
            metadata: None,
            commit_timestamp_ms: 0,
        })
    }

    /// Records applied out of log order end in the state of log order, deletions
    /// included.
    #[test]
    fn newest_record_wins_whatever_the_order_of_application() {
        let partition = TopicPartition::new("orders", 0);
        let mut offsets = GroupOffsets::default();
        offsets.apply(partition.clone(), value(20), 11);
        offsets.apply(partition.clone(), value(10), 10);
        assert_eq!(offsets.get(&partition).unwrap().committed_offset, 20);
        offsets.apply(partition.clone(), None, 13);
        offsets.apply(partition.clone(), value(30), 12);
        assert_eq!(offsets.get(&partition), None);
        assert!(offsets.is_empty());
        offsets.apply(partition.clone(), value(40), 14);
        assert_eq!(offsets.iter().count(), 1);
    }
}
