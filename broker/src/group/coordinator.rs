//! The group coordinator: every group this broker coordinates, as a pure state machine.
//!
//! Events come in as method calls: a heartbeat, an offset commit, a durable record of
//! the offsets topic, new topic metadata, the passing of time ([`GroupCoordinator::tick`]).
//! Each returns its answer and the [`Effect`]s the runtime must carry out (persist
//! records, count rebalances). Nothing here does I/O or reads a clock: time arrives as
//! `now_ms` (monotonic milliseconds, for session and rebalance timeouts) and new member
//! ids are chosen by the caller, so every test is deterministic.
//!
//! Read-only questions (committed offsets, listings, descriptions) are plain methods.
//! This file holds membership, timeouts and topic changes; [`super::commits`] and
//! [`super::listing`] add the offset and listing methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, JOIN_MEMBER_EPOCH,
    LEAVE_MEMBER_EPOCH, TopicPartitions,
};

use super::assignor::{Assignor, PartitionSet};
use super::consumer_group::ConsumerGroup;
use super::effect::{Effect, RebalanceReason, RemovalReason};
use super::member::Member;
use super::records::{OffsetKey, OffsetRecord};
use crate::storage::TopicPartition;

/// The coordinator's settings (from the broker's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    pub members_max: usize,
}

/// A topic as the coordinator needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// Tells a deleted and re-created topic from the old one.
    pub topic_id: u128,
    pub partitions: i32,
}

/// Who sent a heartbeat, and what the runtime provides for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatContext {
    pub now_ms: i64,
    pub client_id: String,
    pub client_host: String,
    /// The id a member joining without one gets (a fresh UUID in the broker).
    pub new_member_id: String,
}

#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) config: CoordinatorConfig,
    pub(super) assignor: Arc<dyn Assignor>,
    pub(super) groups: BTreeMap<String, ConsumerGroup>,
    pub(super) topics: BTreeMap<String, TopicInfo>,
    /// `topics` as topic → partition count, the assignors' input.
    pub(super) partition_counts: BTreeMap<String, i32>,
}

fn heartbeat_error(code: ErrorCode, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::error(code, message)
}

/// Groups partitions by topic for the wire.
pub fn to_wire(partitions: &PartitionSet) -> Vec<TopicPartitions> {
    TopicPartitions::group(
        partitions
            .iter()
            .map(|partition| (partition.topic.as_str(), partition.partition)),
    )
}

pub fn from_wire(topics: &[TopicPartitions]) -> PartitionSet {
    TopicPartitions::pairs(topics)
        .map(|(topic, partition)| TopicPartition::new(topic, partition))
        .collect()
}

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig, assignor: Arc<dyn Assignor>) -> Self {
        Self {
            config,
            assignor,
            groups: BTreeMap::new(),
            topics: BTreeMap::new(),
            partition_counts: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The name of the server-side assignor.
    pub fn assignor_name(&self) -> &'static str {
        self.assignor.name()
    }

    pub fn group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values()
    }

    /// Forgets every group `owned` selects, members and offsets: another broker now
    /// coordinates them (it leads their partition of the offsets topic), or this one
    /// is about to replay them from that partition. Returns how many were forgotten.
    pub fn unload_groups(&mut self, owned: impl Fn(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups.retain(|group_id, _| !owned(group_id));
        before - self.groups.len()
    }

    pub(super) fn forget_if_dead(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(ConsumerGroup::is_dead)
        {
            self.groups.remove(group_id);
        }
    }

    // ----- membership -------------------------------------------------------------

    /// A ConsumerGroupHeartbeat: join, stay, leave.
    pub fn heartbeat(
        &mut self,
        context: &HeartbeatContext,
        request: &ConsumerGroupHeartbeatRequest,
    ) -> (ConsumerGroupHeartbeatResponse, Vec<Effect>) {
        let mut effects = Vec::new();
        if request.group_id.is_empty() {
            return (
                heartbeat_error(ErrorCode::InvalidGroupId, "the group id is empty"),
                effects,
            );
        }
        let member_id = match request.member_epoch {
            LEAVE_MEMBER_EPOCH => {
                let response = self.leave(request, &mut effects);
                return (response, effects);
            }
            JOIN_MEMBER_EPOCH => match self.join(context, request, &mut effects) {
                Ok(member_id) => member_id,
                Err(response) => return (response, effects),
            },
            epoch if epoch < 0 => {
                let message = format!("member epoch {epoch} is neither -1, 0 nor an epoch");
                return (
                    heartbeat_error(ErrorCode::InvalidRequest, &message),
                    effects,
                );
            }
            _ => match self.check_member(request, &mut effects) {
                Ok(()) => request.member_id.clone(),
                Err(response) => return (response, effects),
            },
        };
        let owned = from_wire(&request.owned_partitions);
        let group = self
            .groups
            .get_mut(&request.group_id)
            .expect("the member's group exists");
        let member = group
            .members
            .get_mut(&member_id)
            .expect("the member exists");
        member.last_heartbeat_ms = context.now_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id.clone_from(&context.client_id);
        group.reconcile(&member_id, &owned, context.now_ms);
        let member = &group.members[&member_id];
        let response = ConsumerGroupHeartbeatResponse {
            error_code: ErrorCode::None,
            error_message: None,
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: to_wire(&member.assigned),
        };
        (response, effects)
    }

    fn leave(
        &mut self,
        request: &ConsumerGroupHeartbeatRequest,
        effects: &mut Vec<Effect>,
    ) -> ConsumerGroupHeartbeatResponse {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return heartbeat_error(ErrorCode::UnknownMemberId, "the group has no members");
        };
        if !group.members.contains_key(&request.member_id) {
            return heartbeat_error(ErrorCode::UnknownMemberId, "not a member of the group");
        }
        group.remove_member(
            &request.member_id,
            RemovalReason::Left,
            self.assignor.as_ref(),
            &self.partition_counts,
            effects,
        );
        self.forget_if_dead(&request.group_id);
        ConsumerGroupHeartbeatResponse {
            error_code: ErrorCode::None,
            error_message: None,
            member_id: request.member_id.clone(),
            member_epoch: LEAVE_MEMBER_EPOCH,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: Vec::new(),
        }
    }

    /// Adds a member (or replaces its old self) and rebalances; returns its id.
    fn join(
        &mut self,
        context: &HeartbeatContext,
        request: &ConsumerGroupHeartbeatRequest,
        effects: &mut Vec<Effect>,
    ) -> Result<String, ConsumerGroupHeartbeatResponse> {
        let Some(subscribed) = &request.subscribed_topic_names else {
            return Err(heartbeat_error(
                ErrorCode::InvalidRequest,
                "a member joining must name the topics it subscribes to",
            ));
        };
        let member_id = if request.member_id.is_empty() {
            context.new_member_id.clone()
        } else {
            request.member_id.clone()
        };
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(request.group_id.clone()));
        if group.members.contains_key(&member_id) {
            group.remove_member(
                &member_id,
                RemovalReason::Rejoined,
                self.assignor.as_ref(),
                &self.partition_counts,
                effects,
            );
        }
        if group.members.len() >= self.config.members_max {
            self.forget_if_dead(&request.group_id);
            return Err(heartbeat_error(
                ErrorCode::GroupMaxSizeReached,
                &format!(
                    "the group has {} members, the most allowed",
                    self.config.members_max
                ),
            ));
        }
        let member = Member::new(
            member_id.clone(),
            context.client_id.clone(),
            context.client_host.clone(),
            subscribed.iter().cloned().collect(),
            request.rebalance_timeout_ms,
            context.now_ms,
        );
        group.members.insert(member_id.clone(), member);
        effects.push(group.rebalance(
            self.assignor.as_ref(),
            &self.partition_counts,
            RebalanceReason::MemberJoined,
        ));
        Ok(member_id)
    }

    /// Checks the member and its epoch, and applies a new subscription.
    fn check_member(
        &mut self,
        request: &ConsumerGroupHeartbeatRequest,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ConsumerGroupHeartbeatResponse> {
        let unknown = || heartbeat_error(ErrorCode::UnknownMemberId, "not a member of the group");
        let group = self.groups.get_mut(&request.group_id).ok_or_else(unknown)?;
        let member = group.members.get(&request.member_id).ok_or_else(unknown)?;
        let current = request.member_epoch == member.member_epoch;
        // After a lost response the member still sends the epoch before; that is fine
        // as long as it owns nothing it was not given.
        let lost_response = request.member_epoch == member.previous_member_epoch
            && from_wire(&request.owned_partitions).is_subset(&member.assigned);
        if !current && !lost_response {
            let message = format!(
                "member epoch {} is not the member's epoch {}",
                request.member_epoch, member.member_epoch
            );
            group.remove_member(
                &request.member_id,
                RemovalReason::Fenced,
                self.assignor.as_ref(),
                &self.partition_counts,
                effects,
            );
            self.forget_if_dead(&request.group_id);
            return Err(heartbeat_error(ErrorCode::FencedMemberEpoch, &message));
        }
        if let Some(subscribed) = &request.subscribed_topic_names {
            let subscribed: BTreeSet<String> = subscribed.iter().cloned().collect();
            if subscribed != member.subscribed_topics {
                group
                    .members
                    .get_mut(&request.member_id)
                    .expect("checked above")
                    .subscribed_topics = subscribed;
                effects.push(group.rebalance(
                    self.assignor.as_ref(),
                    &self.partition_counts,
                    RebalanceReason::SubscriptionChanged,
                ));
            }
        }
        Ok(())
    }

    /// Removes members whose session or rebalance timeout has passed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let session_timeout_ms = self.config.session_timeout_ms;
        let mut expired: Vec<(String, String, RemovalReason)> = Vec::new();
        for group in self.groups.values() {
            for member in group.members.values() {
                if now_ms >= member.last_heartbeat_ms.saturating_add(session_timeout_ms) {
                    expired.push((
                        group.group_id.clone(),
                        member.member_id.clone(),
                        RemovalReason::SessionTimeout,
                    ));
                } else if member
                    .revocation_deadline_ms
                    .is_some_and(|deadline| now_ms >= deadline)
                {
                    expired.push((
                        group.group_id.clone(),
                        member.member_id.clone(),
                        RemovalReason::RebalanceTimeout,
                    ));
                }
            }
        }
        for (group_id, member_id, reason) in expired {
            if let Some(group) = self.groups.get_mut(&group_id) {
                group.remove_member(
                    &member_id,
                    reason,
                    self.assignor.as_ref(),
                    &self.partition_counts,
                    &mut effects,
                );
            }
            self.forget_if_dead(&group_id);
        }
        effects
    }

    /// When [`GroupCoordinator::tick`] next has something to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| group.members.values())
            .map(|member| member.deadline_ms(self.config.session_timeout_ms))
            .min()
    }

    // ----- topics -----------------------------------------------------------------

    /// New topic metadata: groups whose subscribed topics changed partition count (or
    /// appeared, or disappeared) rebalance, and the offsets of deleted topics are
    /// deleted, so that a topic created again under the same name starts afresh.
    pub fn set_topics(&mut self, topics: BTreeMap<String, TopicInfo>) -> Vec<Effect> {
        let deleted: BTreeSet<String> = self
            .topics
            .iter()
            .filter(|(name, info)| {
                topics
                    .get(*name)
                    .is_none_or(|now| now.topic_id != info.topic_id)
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.partition_counts = topics
            .iter()
            .map(|(name, info)| (name.clone(), info.partitions))
            .collect();
        self.topics = topics;
        let mut effects = Vec::new();
        for group in self.groups.values_mut() {
            if !group.members.is_empty()
                && group.subscribed_partition_counts(&self.partition_counts)
                    != group.partition_counts
            {
                effects.push(group.rebalance(
                    self.assignor.as_ref(),
                    &self.partition_counts,
                    RebalanceReason::PartitionsChanged,
                ));
            }
            let tombstones: Vec<OffsetRecord> = group
                .offsets
                .iter()
                .filter(|(partition, _)| deleted.contains(&partition.topic))
                .map(|(partition, _)| OffsetRecord {
                    key: OffsetKey {
                        group_id: group.group_id.clone(),
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                    },
                    value: None,
                })
                .collect();
            if !tombstones.is_empty() {
                effects.push(Effect::PersistRecords {
                    group_id: group.group_id.clone(),
                    records: tombstones,
                });
            }
        }
        effects
    }
}
