//! Consumer group gauges, sampled from the coordinator when `/metrics` is scraped
//! (see [`crate::metrics`]): members per group, and the lag of every committed offset.
//!
//! Sampled rather than kept up to date on every heartbeat and commit, so that the
//! group paths do no metrics work, and so that a group that is gone (or a partition
//! whose offsets were deleted) disappears from the next scrape.

use super::GroupService;
use crate::storage::{LogManager, TopicPartition};

/// Records the gauges of `groups` into the current (scrape-local) recorder; the lag is
/// measured against the partitions' logs in `logs`.
pub fn record(groups: &GroupService, logs: &LogManager) {
    let (members, committed) = groups.with_coordinator(|coordinator| {
        let mut members = Vec::new();
        let mut committed = Vec::new();
        for group in coordinator.groups() {
            members.push((group.group_id.clone(), group.members.len()));
            for (partition, value) in group.offsets.iter() {
                committed.push((
                    group.group_id.clone(),
                    partition.clone(),
                    value.committed_offset,
                ));
            }
        }
        (members, committed)
    });
    for (group, count) in members {
        metrics::gauge!("fjord_group_members", "group" => group).set(count as f64);
    }
    // The logs are read after the coordinator's lock is released.
    for (group, partition, committed_offset) in committed {
        let Some(log) = logs.get(&partition) else {
            continue;
        };
        let lag = (log.high_watermark() - committed_offset).max(0);
        let TopicPartition { topic, partition } = partition;
        let partition = partition.to_string();
        metrics::gauge!("fjord_group_lag", "group" => group, "topic" => topic, "partition" => partition).set(lag as f64);
    }
}
