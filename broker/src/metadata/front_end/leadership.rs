//! Partition leadership as brokers leave and return: which partitions get a new
//! leader, and which in-sync sets shrink, when a broker is fenced (its session expired,
//! it shuts down, or a new process of it registered); and which partitions it leads
//! again when it is unfenced. Pure functions from the image to `PartitionChanged`
//! records.
//!
//! The rule is Kafka's clean election: a leader is chosen only among the replicas
//! known to hold every acknowledged record. Those are, first, the in-sync replicas,
//! the first of them in replica order that is not fenced; then the eligible leader
//! replicas (ELR, after Kafka's KIP-966): replicas that left the in-sync set while it
//! had fewer than `min.insync.replicas` members. No acks=all write is acknowledged
//! while the set is that small, so a replica that left it then holds every record that
//! was; the ELR is emptied as soon as the set is large enough again. When none of them
//! is alive the partition is left leaderless (leader -1) with its in-sync set
//! unchanged, because that set is the record of who holds every acknowledged record;
//! it gets a leader again when one of them returns. Every change of leader bumps the
//! leader epoch.
//!
//! A replica whose data is gone (its broker registered without the partition's
//! directory: a replaced disk, a deleted directory) leaves the in-sync set and the ELR
//! even when it was the last member: with an empty log it must neither lead nor count
//! as in sync until it has copied the log again from a leader.
//!
//! A topic with `unclean.leader.election.enable` gives a partition none of whose
//! in-sync or eligible replicas can lead the first live replica instead, alone in a new
//! set: available again, without the acknowledged records that replica lacks.

#[cfg(test)]
mod tests;

use super::super::image::{MetadataImage, PartitionImage, TopicImage};
use super::super::records::MetadataRecord;
use super::super::topic_config::{MIN_INSYNC_KEY, UNCLEAN_LEADER_ELECTION};

/// No leader: every in-sync replica is fenced.
pub const NO_LEADER: i32 = -1;

/// What elections need besides the image.
#[derive(Clone, Copy)]
pub struct Electorate<'a> {
    /// Whether a broker may lead (it is not fenced).
    pub is_eligible: &'a dyn Fn(i32) -> bool,
    /// The broker's `min_insync_replicas`, for topics that do not set their own.
    pub default_min_insync: i16,
}

impl Electorate<'_> {
    /// In-sync replicas an acks=all write to `partition` needs: the topic's
    /// `min.insync.replicas` or the broker's, capped to the replication factor (as
    /// [`super::super::topic_config::TopicConfig::min_insync_for`] does).
    fn min_insync(&self, topic: &TopicImage, partition: &PartitionImage) -> usize {
        let setting = topic
            .config
            .get(MIN_INSYNC_KEY)
            .and_then(|value| value.trim().parse::<usize>().ok())
            .unwrap_or(self.default_min_insync.max(1) as usize);
        setting.max(1).min(partition.replicas.len().max(1))
    }
}

impl std::fmt::Debug for Electorate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Electorate")
            .field("default_min_insync", &self.default_min_insync)
            .finish_non_exhaustive()
    }
}

/// A partition's new leadership: leader, leader epoch, in-sync set and eligible leader
/// replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub elr: Vec<i32>,
}

/// The eligible leader replicas once `partition`'s in-sync set becomes `isr`: empty
/// when the set has `min_insync` members (acks=all writes may be acknowledged without
/// the others from then on); else the ones before, and every replica that leaves the
/// set now, except members of the set and `lost` (a replica whose data is gone). In
/// replica order.
pub fn next_elr(
    partition: &PartitionImage,
    isr: &[i32],
    min_insync: usize,
    lost: Option<i32>,
) -> Vec<i32> {
    if isr.len() >= min_insync {
        return Vec::new();
    }
    partition
        .replicas
        .iter()
        .copied()
        .filter(|replica| partition.elr.contains(replica) || partition.isr.contains(replica))
        .filter(|replica| !isr.contains(replica) && Some(*replica) != lost)
        .collect()
}

/// The changes that take `leaving` out of leadership: each partition it leads gets a
/// new leader (see [`elect`]) or none, with a bumped epoch; and `leaving` leaves the
/// in-sync set of every partition that has a leader, unless it is the set's only
/// member (a set is never empty). Where `lost` says its data of a partition is gone,
/// it also leaves the ELR, and the in-sync set even as its last member, and a
/// leaderless partition may then get a leader from the others.
/// `is_eligible` must be false for `leaving`.
pub fn move_away(
    image: &MetadataImage,
    leaving: i32,
    lost: &dyn Fn(&TopicImage, &PartitionImage) -> bool,
    electorate: Electorate<'_>,
) -> Vec<MetadataRecord> {
    changes(image, |topic, partition| {
        let lost = lost(topic, partition);
        let in_isr = partition.isr.contains(&leaving);
        let in_elr = partition.elr.contains(&leaving);
        if !in_isr && partition.leader != leaving && !(lost && in_elr) {
            return None;
        }
        let min_insync = electorate.min_insync(topic, partition);
        let lost_replica = lost.then_some(leaving);
        let shrunk: Vec<i32> = partition
            .isr
            .iter()
            .copied()
            .filter(|&replica| replica != leaving)
            .collect();
        if partition.leader != leaving && partition.leader != NO_LEADER {
            // A follower leaves the in-sync set (it keeps the leader, so it is not
            // empty), or a lost one leaves the ELR.
            return Some(Decision {
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
                elr: next_elr(partition, &shrunk, min_insync, lost_replica),
                isr: shrunk,
            });
        }
        if partition.leader == NO_LEADER && !lost {
            // A leaderless partition's set stays whole: it records who holds
            // every acknowledged record.
            return None;
        }
        let elected = elect(
            topic,
            partition,
            &shrunk,
            lost_replica,
            min_insync,
            electorate,
        );
        // Whatever the electorate says: the replica that leaves, or lost its data,
        // never leads (checked in tests and debug builds).
        debug_assert!(
            elected
                .as_ref()
                .is_none_or(|decision| decision.leader != leaving),
            "broker {leaving} was elected while it leaves"
        );
        Some(elected.unwrap_or_else(|| {
            // Nobody can lead. The set stays whole, unless `leaving` lost its data:
            // then it may even be empty, and only the ELR (or an unclean election)
            // can give the partition a leader again.
            let (isr, elr) = if lost {
                let elr = partition.elr.iter().copied().filter(|&r| r != leaving);
                (shrunk, elr.collect())
            } else {
                (partition.isr.clone(), partition.elr.clone())
            };
            Decision {
                leader: NO_LEADER,
                leader_epoch: partition.leader_epoch + i32::from(partition.leader == leaving),
                isr,
                elr,
            }
        }))
    })
}

/// The changes when `returning` is unfenced: a leaderless partition gets a leader
/// again when one is eligible now (see [`elect`]); and, with `restore_preferred`, a
/// partition whose preferred (first) replica is `returning`, and which it is in sync
/// for, gets it back as leader. `is_eligible` must be true for `returning`.
pub fn bring_back(
    image: &MetadataImage,
    returning: i32,
    restore_preferred: bool,
    electorate: Electorate<'_>,
) -> Vec<MetadataRecord> {
    changes(image, |topic, partition| {
        if !partition.replicas.contains(&returning) {
            return None;
        }
        if partition.leader == NO_LEADER {
            let min_insync = electorate.min_insync(topic, partition);
            return elect(
                topic,
                partition,
                &partition.isr,
                None,
                min_insync,
                electorate,
            );
        }
        let preferred = partition.replicas.first() == Some(&returning);
        (restore_preferred
            && preferred
            && partition.leader != returning
            && partition.isr.contains(&returning))
        .then(|| Decision {
            leader: returning,
            leader_epoch: partition.leader_epoch + 1,
            isr: partition.isr.clone(),
            elr: partition.elr.clone(),
        })
    })
}

/// A new leader for `partition`, whose in-sync set without the departing leader is
/// `isr`: the first eligible member of `isr` in replica order; else the first eligible
/// ELR member, alone in the new set (the members of the old set, which hold every
/// acknowledged record too, join the ELR); else, when the topic allows unclean
/// elections, the first eligible replica, alone, with no ELR. `None` when nobody can
/// lead. `lost` is a replica whose data is gone, never eligible.
fn elect(
    topic: &TopicImage,
    partition: &PartitionImage,
    isr: &[i32],
    lost: Option<i32>,
    min_insync: usize,
    electorate: Electorate<'_>,
) -> Option<Decision> {
    let eligible = |replica: &i32| Some(*replica) != lost && (electorate.is_eligible)(*replica);
    let first_of = |set: &[i32]| {
        partition
            .replicas
            .iter()
            .copied()
            .find(|replica| set.contains(replica) && eligible(replica))
    };
    let leader_epoch = partition.leader_epoch + 1;
    if let Some(leader) = first_of(isr) {
        return Some(Decision {
            leader,
            leader_epoch,
            isr: isr.to_vec(),
            elr: next_elr(partition, isr, min_insync, lost),
        });
    }
    if let Some(leader) = first_of(&partition.elr) {
        return Some(Decision {
            leader,
            leader_epoch,
            isr: vec![leader],
            elr: next_elr(partition, &[leader], min_insync, lost),
        });
    }
    if !allows_unclean(topic) {
        return None;
    }
    let leader = partition.replicas.iter().copied().find(eligible)?;
    Some(Decision {
        leader,
        leader_epoch,
        isr: vec![leader],
        elr: Vec::new(),
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

/// How many of `records`, decided against `image`, are unclean elections: a leader
/// taken from outside the partition's in-sync set and ELR, alone in its new set. (A
/// preferred replica that a leader's in-sync set change brings back leads a set that
/// also holds the old leader, so it does not count.)
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
                && before.is_some_and(|before| {
                    !before.isr.contains(leader) && !before.elr.contains(leader)
                })
        })
        .count()
}

/// A `PartitionChanged` for every partition to which `decide` gives a new leadership
/// (one that differs from the partition's), in topic name and partition order.
fn changes(
    image: &MetadataImage,
    decide: impl Fn(&TopicImage, &PartitionImage) -> Option<Decision>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            let Some(decision) = decide(topic, partition) else {
                continue;
            };
            if decision.leader == partition.leader
                && decision.leader_epoch == partition.leader_epoch
                && decision.isr == partition.isr
                && decision.elr == partition.elr
            {
                continue;
            }
            records.push(partition_changed(topic, partition, decision));
        }
    }
    records
}

/// The record that gives `partition` of `topic` the leadership `decision`, at the next
/// partition epoch.
pub fn partition_changed(
    topic: &TopicImage,
    partition: &PartitionImage,
    decision: Decision,
) -> MetadataRecord {
    MetadataRecord::PartitionChanged {
        topic_id: topic.topic_id.to_string(),
        partition: partition.partition,
        leader: decision.leader,
        leader_epoch: decision.leader_epoch,
        isr: decision.isr,
        elr: decision.elr,
        partition_epoch: Some(partition.partition_epoch + 1),
    }
}
