//! What a group consumer tells the application about partitions coming and going.

use crate::topic_partition::TopicPartition;

/// A change of the partitions a [`GroupConsumer`](super::GroupConsumer) owns, reported
/// to its rebalance listener during `poll`, before any record of the new assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions are now this member's; consumption starts at the group's
    /// committed offsets (or per `auto_offset_reset` where there is none).
    Assigned(Vec<TopicPartition>),
    /// These partitions were taken away, in an orderly way: with auto-commit on, their
    /// positions were committed first; with it off, the offsets marked processed
    /// ([`GroupConsumer::mark_processed`](super::GroupConsumer::mark_processed)). No
    /// record of them is returned any more.
    Revoked(Vec<TopicPartition>),
    /// The membership was lost (the coordinator removed this member: its session
    /// timed out, or it was fenced): these partitions were dropped without committing,
    /// as another member may own them already. The consumer joins again by itself.
    Lost(Vec<TopicPartition>),
}
