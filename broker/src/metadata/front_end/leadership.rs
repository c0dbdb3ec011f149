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
//!
//! A topic with `unclean.leader.election.enable` gives a partition none of whose
//! in-sync replicas can lead the first live replica outside the set instead, alone in
//! a new set: available again, without the acknowledged records that replica lacks.

#[cfg(test)]
mod tests;

use super::super::image::{MetadataImage, PartitionImage, TopicImage};
use super::super::records::MetadataRecord;
use super::super::topic_config::UNCLEAN_LEADER_ELECTION;

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
    changes(image, |topic, partition| {
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
            None => match unclean_candidate(topic, partition, is_eligible) {
                Some(leader) => Some((leader, partition.leader_epoch + 1, vec![leader])),
                None => Some((NO_LEADER, partition.leader_epoch + 1, partition.isr.clone())),
            },
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
    changes(image, |topic, partition| {
        if !partition.isr.contains(&returning) {
            // Unclean: a leaderless partition none of whose in-sync replicas can lead
            // takes the returning replica, if its topic allows it.
            let leaderless = partition.leader == NO_LEADER
                && partition.replicas.contains(&returning)
                && first_eligible(partition, is_eligible).is_none();
            return (leaderless && allows_unclean(topic))
                .then(|| (returning, partition.leader_epoch + 1, vec![returning]));
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

/// Whether `topic` lets a replica outside the in-sync set lead when no in-sync one can
/// (`unclean.leader.election.enable`, off unless the topic sets it): the partition is
/// available again, at the price of the acknowledged records that replica lacks.
fn allows_unclean(topic: &TopicImage) -> bool {
    topic
        .config
        .get(UNCLEAN_LEADER_ELECTION)
        .is_some_and(|value| value.trim() == "true")
}

/// The first replica, in replica order, that may lead though it is not in sync, when
/// the topic allows unclean elections.
fn unclean_candidate(
    topic: &TopicImage,
    partition: &PartitionImage,
    is_eligible: &dyn Fn(i32) -> bool,
) -> Option<i32> {
    if !allows_unclean(topic) {
        return None;
    }
    partition
        .replicas
        .iter()
        .copied()
        .find(|&replica| is_eligible(replica))
}

/// How many of `records`, decided against `image`, are unclean elections: a leader
/// taken from outside the partition's in-sync set, alone in its new set. (A preferred
/// replica that a leader's in-sync set change brings back leads a set that also holds
/// the old leader, so it does not count.)
pub fn unclean_elections(image: &MetadataImage, records: &[MetadataRecord]) -> usize {
    records
        .iter()
        .filter(|record| {
            let MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                leader,
                isr,
                ..
            } = record
            else {
                return false;
            };
            let before = image
                .topics
                .values()
                .find(|topic| topic.topic_id.to_string() == *topic_id)
                .and_then(|topic| topic.partition(*partition));
            *leader != NO_LEADER
                && isr.as_slice() == [*leader]
                && before.is_some_and(|before| !before.isr.contains(leader))
        })
        .count()
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
    decide: impl Fn(&TopicImage, &PartitionImage) -> Option<(i32, i32, Vec<i32>)>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            if let Some((leader, leader_epoch, isr)) = decide(topic, partition) {
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
