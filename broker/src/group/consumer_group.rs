//! One consumer group: members, epochs, the target assignment, incremental
//! reconciliation, and committed offsets.
//!
//! Reconciliation moves each member from what it owns towards its target without ever
//! letting two members own a partition at once:
//!
//! ```text
//!   target(m)      the partitions the assignor gives m at the target epoch
//!   assigned(m)    what m may own now         (sent to m in every response)
//!   revoking(m)    what m must give up, but still reports owning
//!
//! on a heartbeat of m reporting `owned`:
//!   revoking(m) := (assigned(m) ∪ revoking(m)) \ target(m)  ∩ owned
//!   assigned(m) := assigned(m) ∩ target(m)
//!                  ∪ { p ∈ target(m) | no other member has p in assigned ∪ revoking }
//!   epoch(m)    := target epoch, once revoking(m) is empty
//! ```
//!
//! A revoked partition that the member no longer reports is released at once: the
//! member reports every partition it consumes or may still start consuming, and
//! handles responses in order, so a partition it does not report is one it will not
//! touch. A released partition goes to its new owner in that owner's next heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::{AssignmentSpec, Assignor, MemberSpec, PartitionSet, TargetAssignment};
use super::effect::{Effect, RebalanceReason, RemovalReason};
use super::member::Member;
use super::offsets::GroupOffsets;
use crate::storage::TopicPartition;

/// A group's state, as ListGroups and DescribeGroups report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; committed offsets only.
    Empty,
    /// Some member does not own exactly its target yet.
    Reconciling,
    /// Every member owns its target at the target epoch.
    Stable,
}

impl GroupState {
    pub const ALL: [GroupState; 3] = [Self::Empty, Self::Reconciling, Self::Stable];

    /// The wire name (Kafka's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Reconciling => "Reconciling",
            Self::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    pub group_id: String,
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub target_epoch: i32,
    pub members: BTreeMap<String, Member>,
    pub target: TargetAssignment,
    /// Partition counts of the subscribed topics the target was computed with.
    pub partition_counts: BTreeMap<String, i32>,
    pub offsets: GroupOffsets,
}

impl ConsumerGroup {
    pub fn new(group_id: String) -> Self {
        Self {
            group_id,
            group_epoch: 0,
            target_epoch: 0,
            members: BTreeMap::new(),
            target: TargetAssignment::new(),
            partition_counts: BTreeMap::new(),
            offsets: GroupOffsets::default(),
        }
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let reconciled = self.members.values().all(|member| {
            member.member_epoch == self.target_epoch
                && member.revoking.is_empty()
                && self.target.get(&member.member_id) == Some(&member.assigned)
        });
        if reconciled {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// A group with neither members nor offsets is forgotten.
    pub fn is_dead(&self) -> bool {
        self.members.is_empty() && self.offsets.is_empty()
    }

    /// The partition counts, in `topics`, of every topic a member subscribes to.
    pub fn subscribed_partition_counts(
        &self,
        topics: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, i32> {
        self.members
            .values()
            .flat_map(|member| &member.subscribed_topics)
            .filter_map(|topic| Some((topic.clone(), *topics.get(topic)?)))
            .collect()
    }

    /// Bumps the group epoch and computes a new target assignment.
    pub fn rebalance(
        &mut self,
        assignor: &dyn Assignor,
        topics: &BTreeMap<String, i32>,
        reason: RebalanceReason,
    ) -> Effect {
        self.group_epoch += 1;
        let empty = PartitionSet::new();
        let spec = AssignmentSpec {
            members: self
                .members
                .values()
                .map(|member| {
                    let current = self.target.get(&member.member_id).unwrap_or(&empty);
                    (
                        member.member_id.as_str(),
                        MemberSpec {
                            subscribed_topics: &member.subscribed_topics,
                            current,
                        },
                    )
                })
                .collect(),
            topic_partitions: topics,
        };
        self.target = assignor.assign(&spec);
        self.target_epoch = self.group_epoch;
        self.partition_counts = self.subscribed_partition_counts(topics);
        Effect::Rebalanced {
            group_id: self.group_id.clone(),
            group_epoch: self.group_epoch,
            reason,
        }
    }

    /// Removes a member, releasing everything it held, and rebalances the rest.
    pub fn remove_member(
        &mut self,
        member_id: &str,
        reason: RemovalReason,
        assignor: &dyn Assignor,
        topics: &BTreeMap<String, i32>,
        effects: &mut Vec<Effect>,
    ) {
        if self.members.remove(member_id).is_none() {
            return;
        }
        effects.push(Effect::MemberRemoved {
            group_id: self.group_id.clone(),
            member_id: member_id.to_owned(),
            reason,
        });
        effects.push(self.rebalance(assignor, topics, RebalanceReason::MemberRemoved(reason)));
    }

    /// Whether a member other than `except` holds `partition`.
    fn held_by_other(&self, partition: &TopicPartition, except: &str) -> bool {
        self.members
            .values()
            .any(|member| member.member_id != except && member.holds(partition))
    }

    /// Moves a member towards its target after a heartbeat in which it reported
    /// `owned` (see the module documentation).
    pub fn reconcile(&mut self, member_id: &str, owned: &PartitionSet, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        let revoking: PartitionSet = member
            .assigned
            .union(&member.revoking)
            .filter(|partition| !target.contains(partition) && owned.contains(*partition))
            .cloned()
            .collect();
        let mut assigned: PartitionSet = member.assigned.intersection(&target).cloned().collect();
        let free: Vec<TopicPartition> = target
            .iter()
            .filter(|partition| !assigned.contains(*partition))
            .filter(|partition| !self.held_by_other(partition, member_id))
            .cloned()
            .collect();
        assigned.extend(free);
        let target_epoch = self.target_epoch;
        let member = self.members.get_mut(member_id).expect("checked above");
        member.assigned = assigned;
        member.revoking = revoking;
        if member.revoking.is_empty() {
            member.revocation_deadline_ms = None;
            member.advance_epoch(target_epoch);
        } else if member.revocation_deadline_ms.is_none() {
            member.revocation_deadline_ms =
                Some(now_ms.saturating_add(i64::from(member.rebalance_timeout_ms)));
        }
        self.check_invariants();
    }

    /// No partition is held by two members. An invariant violation is a bug that could
    /// make two consumers process the same records, so it stops the broker.
    fn check_invariants(&self) {
        let mut held = BTreeSet::new();
        for member in self.members.values() {
            assert!(
                member.assigned.is_disjoint(&member.revoking),
                "group {}: member {} both owns and revokes a partition",
                self.group_id,
                member.member_id
            );
            for partition in member.assigned.iter().chain(&member.revoking) {
                assert!(
                    held.insert(partition),
                    "group {}: {partition} is held by two members",
                    self.group_id
                );
            }
        }
    }
}
