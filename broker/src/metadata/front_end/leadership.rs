//! Partition leadership as brokers leave and return: which partitions get a new
//! leader, and which in-sync sets shrink, when a broker is fenced (its session expired,
//! it shuts down, or a new process of it registered); and which partitions it leads
//! again when it is unfenced. Pure functions from the image to `PartitionChanged`
//! records.
//!
//! The rule is Kafka's clean election: a leader is chosen only among the in-sync
//! replicas, the first of them in replica order that is not fenced. When none is
//! alive the partition is left leaderless (leader -1) with its in-sync set unchanged,
//! because that set is the record of who holds every acknowledged record; it gets a
//! leader again when one of them returns. Every change of leader bumps the leader
//! epoch. (The replication issue refines who is eligible, as KIP-966's "eligible
//! leader replicas" do; the eligibility test is one closure here so that it can.)

#[cfg(test)]
mod tests;

use super::super::image::{MetadataImage, PartitionImage};
use super::super::records::MetadataRecord;

/// No leader: every in-sync replica is fenced.
pub const NO_LEADER: i32 = -1;

/// The changes that take `leaving` out of leadership: each partition it leads gets
/// the first in-sync replica (in replica order) that `is_eligible`, or no leader, with
/// a bumped epoch; and `leaving` leaves the in-sync set of every partition that has a
/// leader, unless it is the set's only member (a set is never empty).
/// `is_eligible` must be false for `leaving`.
pub fn move_away(
    image: &MetadataImage,
    leaving: i32,
    is_eligible: &dyn Fn(i32) -> bool,
) -> Vec<MetadataRecord> {
    changes(image, |partition| {
        if !partition.isr.contains(&leaving) && partition.leader != leaving {
            return None;
        }
        // It keeps the leader, or the new leader, so it is not empty.
        let shrunk: Vec<i32> = partition
            .isr
            .iter()
            .copied()
            .filter(|&replica| replica != leaving)
            .collect();
        if partition.leader != leaving {
            // A follower leaves the in-sync set of a partition that has a leader; a
            // leaderless partition's set stays whole. (An in-sync set without its
            // leader cannot come from the front end; even then it is never emptied.)
            if partition.leader == NO_LEADER || shrunk.is_empty() {
                return None;
            }
            return Some((partition.leader, partition.leader_epoch, shrunk));
        }
        match first_eligible(partition, is_eligible) {
            Some(leader) => Some((leader, partition.leader_epoch + 1, shrunk)),
            None => Some((NO_LEADER, partition.leader_epoch + 1, partition.isr.clone())),
        }
    })
}

/// The changes when `returning` is unfenced: a leaderless partition with an eligible
/// in-sync replica gets a leader again; and, with `restore_preferred`, a partition
/// whose preferred (first) replica is `returning`, and which it is in sync for, gets
/// it back as leader. `is_eligible` must be true for `returning`.
pub fn bring_back(
    image: &MetadataImage,
    returning: i32,
    restore_preferred: bool,
    is_eligible: &dyn Fn(i32) -> bool,
) -> Vec<MetadataRecord> {
    changes(image, |partition| {
        if !partition.isr.contains(&returning) {
            return None;
        }
        let preferred = partition.replicas.first() == Some(&returning);
        let leader = if partition.leader == NO_LEADER {
            first_eligible(partition, is_eligible)?
        } else if restore_preferred && preferred && partition.leader != returning {
            returning
        } else {
            return None;
        };
        Some((leader, partition.leader_epoch + 1, partition.isr.clone()))
    })
}

/// The first in-sync replica, in replica order, that may lead.
fn first_eligible(partition: &PartitionImage, is_eligible: &dyn Fn(i32) -> bool) -> Option<i32> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|&replica| partition.isr.contains(&replica) && is_eligible(replica))
}

/// A `PartitionChanged` for every partition to which `decide` gives a new leader,
/// leader epoch and in-sync set, in topic name and partition order.
fn changes(
    image: &MetadataImage,
    decide: impl Fn(&PartitionImage) -> Option<(i32, i32, Vec<i32>)>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            if let Some((leader, leader_epoch, isr)) = decide(partition) {
                records.push(MetadataRecord::PartitionChanged {
                    topic_id: topic.topic_id.to_string(),
                    partition: partition.partition,
                    leader,
                    leader_epoch,
                    isr,
                    partition_epoch: Some(partition.partition_epoch + 1),
                });
            }
        }
    }
    records
}
