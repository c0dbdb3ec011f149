//! Consumer groups: membership, server-side assignment with incremental rebalancing,
//! and committed offsets stored in the internal `__consumer_offsets` topic.
//!
//! The protocol logic is a pure state machine ([`GroupCoordinator`]: events in,
//! effects out, time injected); [`GroupService`] runs it for the broker: it answers
//! the group APIs, persists and replays offset records, feeds it topic metadata and
//! wakes it when a session or rebalance timeout is due.
//!
//! - [`assignor`]: the [`Assignor`](assignor::Assignor) trait, `uniform` and `range`.
//! - [`member`], [`consumer_group`]: a member, a group and its reconciliation.
//! - [`offsets`]: a group's committed offsets, as rebuilt from records.
//! - [`records`]: the record format of `__consumer_offsets`.
//! - [`effect`]: what the coordinator asks the runtime to do.
//! - [`gauges`]: group metrics sampled when `/metrics` is scraped.
//! - [`coordinator`]: [`GroupCoordinator`]: heartbeats, timeouts, topic changes.
//! - [`commits`]: offset commits and fetches of the coordinator.
//! - [`listing`]: ListGroups and DescribeGroups answers of the coordinator.
//! - [`service`]: [`GroupService`], the runtime; [`loading`]: its start-up.
//!
//! Placement. The coordinator of a group is the leader of partition
//! [`offsets_partition`] of `__consumer_offsets`. A single broker leads them all; in a
//! cluster the same code serves the groups of the partitions a broker leads, and
//! loads them by replaying those partitions when it becomes their leader.

pub mod assignor;
pub mod commits;
pub mod consumer_group;
pub mod coordinator;
pub mod effect;
pub mod gauges;
pub mod listing;
pub mod loading;
pub mod member;
pub mod offsets;
pub mod records;
pub mod service;

#[cfg(test)]
mod tests;

pub use coordinator::{CoordinatorConfig, GroupCoordinator, HeartbeatContext, TopicInfo};
pub use effect::{Effect, RebalanceReason, RemovalReason};
pub use service::GroupService;

/// The internal topic that stores committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The partition of `__consumer_offsets` that holds a group's offsets, and whose leader
/// coordinates the group: the CRC-32C of the group id's UTF-8 bytes, modulo the
/// partition count. A CRC rather than `std`'s hasher because it is specified and stable
/// across builds, so every broker and any client computes the same partition.
pub fn offsets_partition(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "the offsets topic has at least one partition"
    );
    (crc32c::crc32c(group_id.as_bytes()) % partitions as u32) as i32
}
