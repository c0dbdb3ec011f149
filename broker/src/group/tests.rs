//! The coordinator state machine, step by step: events in, responses and effects out,
//! time moved by hand.

use std::collections::BTreeMap;

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{
    ADMIN_MEMBER_EPOCH, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    JOIN_MEMBER_EPOCH, LEAVE_MEMBER_EPOCH, OffsetCommitPartition, OffsetCommitRequest,
    OffsetCommitTopic, OffsetFetchRequest,
};

use super::assignor::{AssignorName, PartitionSet};
use super::consumer_group::GroupState;
use super::coordinator::{from_wire, to_wire};
use super::records::OffsetRecord;
use super::{
    CoordinatorConfig, Effect, GroupCoordinator, HeartbeatContext, RebalanceReason, RemovalReason,
    TopicInfo,
};
use crate::storage::TopicPartition;

const SESSION_TIMEOUT_MS: i64 = 1_000;
const REBALANCE_TIMEOUT_MS: i32 = 3_000;
const GROUP: &str = "shipping";

/// A coordinator, a clock, and a source of member ids.
struct Harness {
    coordinator: GroupCoordinator,
    now_ms: i64,
    joined: usize,
    /// The offset the next applied record gets in the offsets topic.
    next_record_offset: i64,
}

/// A member as the test drives it: what it was told and what it reports.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: PartitionSet,
}

fn orders(partitions: &[i32]) -> PartitionSet {
    partitions
        .iter()
        .map(|partition| TopicPartition::new("orders", *partition))
        .collect()
}

fn topics(entries: &[(&str, u128, i32)]) -> BTreeMap<String, TopicInfo> {
    entries
        .iter()
        .map(|(name, topic_id, partitions)| {
            (
                (*name).to_owned(),
                TopicInfo {
                    topic_id: *topic_id,
                    partitions: *partitions,
                },
            )
        })
        .collect()
}

impl Harness {
    fn new(members_max: usize) -> Self {
        let mut coordinator = GroupCoordinator::new(
            CoordinatorConfig {
                session_timeout_ms: SESSION_TIMEOUT_MS,
                heartbeat_interval_ms: 100,
                members_max,
            },
            AssignorName::Uniform.build(),
        );
        assert!(
            coordinator
                .set_topics(topics(&[("orders", 1, 6)]))
                .is_empty()
        );
        Self {
            coordinator,
            now_ms: 0,
            joined: 0,
            next_record_offset: 0,
        }
    }

    fn send(
        &mut self,
        request: ConsumerGroupHeartbeatRequest,
    ) -> (ConsumerGroupHeartbeatResponse, Vec<Effect>) {
        self.joined += 1;
        let context = HeartbeatContext {
            now_ms: self.now_ms,
            client_id: "test".into(),
            client_host: "127.0.0.1".into(),
            new_member_id: format!("m{}", self.joined),
        };
        self.coordinator.heartbeat(&context, &request)
    }

    fn join(&mut self, subscribed: &[&str]) -> (Client, Vec<Effect>) {
        let (response, effects) = self.send(ConsumerGroupHeartbeatRequest {
            group_id: GROUP.into(),
            member_id: String::new(),
            member_epoch: JOIN_MEMBER_EPOCH,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            subscribed_topic_names: Some(subscribed.iter().map(|t| (*t).to_owned()).collect()),
            owned_partitions: Vec::new(),
        });
        assert_eq!(response.error_code, ErrorCode::None, "{response:?}");
        let client = Client {
            member_id: response.member_id.clone(),
            epoch: response.member_epoch,
            owned: from_wire(&response.assignment),
        };
        (client, effects)
    }

    /// A heartbeat reporting `client.owned`; the client then owns what it was given,
    /// minus nothing (it has not acted on revocations yet).
    fn heartbeat(&mut self, client: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let (response, _) = self.send(ConsumerGroupHeartbeatRequest {
            group_id: GROUP.into(),
            member_id: client.member_id.clone(),
            member_epoch: client.epoch,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            subscribed_topic_names: None,
            owned_partitions: to_wire(&client.owned),
        });
        if response.error_code.is_ok() {
            client.epoch = response.member_epoch;
        }
        response
    }

    /// Heartbeats until the client owns exactly what it is given (it gives up revoked
    /// partitions at once), at most a few rounds; returns what it owns.
    fn settle(&mut self, client: &mut Client) -> PartitionSet {
        let response = self.heartbeat(client);
        client.owned = from_wire(&response.assignment);
        client.owned.clone()
    }

    fn commit(
        &self,
        client: &Client,
        partitions: &[i32],
        offset: i64,
    ) -> (Vec<ErrorCode>, Vec<Effect>) {
        let request = OffsetCommitRequest {
            group_id: GROUP.into(),
            member_id: client.member_id.clone(),
            member_epoch: client.epoch,
            topics: vec![OffsetCommitTopic {
                name: "orders".into(),
                partitions: partitions
                    .iter()
                    .map(|partition| OffsetCommitPartition {
                        partition: *partition,
                        committed_offset: offset,
                        committed_metadata: None,
                    })
                    .collect(),
            }],
        };
        let (response, effects) = self.coordinator.commit(&request, 1_700_000_000_000);
        let codes = response.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        (codes, effects)
    }

    /// Applies the records of every persist effect, as the runtime does once durable.
    fn apply(&mut self, effects: &[Effect]) {
        for effect in effects {
            if let Effect::PersistRecords { records, .. } = effect {
                for record in records {
                    self.coordinator
                        .apply_record(record, self.next_record_offset);
                    self.next_record_offset += 1;
                }
            }
        }
    }

    fn committed(&self, partition: i32) -> i64 {
        let response = self.coordinator.fetch_offsets(&OffsetFetchRequest {
            group_id: GROUP.into(),
            topics: Some(to_wire(&orders(&[partition]))),
        });
        response.topics[0].partitions[0].committed_offset
    }

    fn state(&self) -> GroupState {
        self.coordinator
            .group_state(GROUP)
            .expect("the group exists")
    }
}

fn rebalances(effects: &[Effect]) -> Vec<RebalanceReason> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Rebalanced { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// The first member gets every partition; a second member bumps the group epoch, but
/// gets the partitions moving to it only after the first has stopped reporting them,
/// while the first keeps the rest throughout. Then both are at the new epoch and the
/// group is stable.
#[test]
fn a_partition_moves_only_after_its_owner_released_it() {
    let mut harness = Harness::new(10);
    let (mut first, effects) = harness.join(&["orders"]);
    assert_eq!(rebalances(&effects), [RebalanceReason::MemberJoined]);
    assert_eq!(first.owned, orders(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(first.epoch, 1);
    assert_eq!(harness.state(), GroupState::Stable);

    let (mut second, _) = harness.join(&["orders"]);
    assert!(
        second.owned.is_empty(),
        "nothing is free yet: {:?}",
        second.owned
    );
    assert_eq!(second.epoch, 2);
    assert_eq!(harness.state(), GroupState::Reconciling);

    // The first member learns its new assignment but still owns all six.
    let response = harness.heartbeat(&mut first);
    let kept = from_wire(&response.assignment);
    assert_eq!(kept.len(), 3);
    assert_eq!(
        response.member_epoch, 1,
        "the epoch waits for the revocation"
    );
    let moving: PartitionSet = orders(&[0, 1, 2, 3, 4, 5])
        .difference(&kept)
        .cloned()
        .collect();

    // Until it stops reporting them, the second member gets none of them.
    assert!(from_wire(&harness.heartbeat(&mut second).assignment).is_empty());

    // It stops consuming them (and keeps the three it kept, uninterrupted).
    first.owned = kept.clone();
    let response = harness.heartbeat(&mut first);
    assert_eq!(from_wire(&response.assignment), kept);
    assert_eq!(response.member_epoch, 2);

    assert_eq!(harness.settle(&mut second), moving);
    assert_eq!(second.epoch, 2);
    assert_eq!(harness.state(), GroupState::Stable);
}

/// A member that keeps reporting a revoked partition blocks its move until its
/// rebalance timeout; then it is removed and the partition moves.
#[test]
fn a_member_that_does_not_revoke_is_removed_after_its_rebalance_timeout() {
    let mut harness = Harness::new(10);
    let (mut first, _) = harness.join(&["orders"]);
    let (mut second, _) = harness.join(&["orders"]);
    harness.heartbeat(&mut first); // told to revoke three; keeps reporting all six
    while harness.now_ms + 500 < i64::from(REBALANCE_TIMEOUT_MS) {
        harness.now_ms += 500;
        harness.heartbeat(&mut first);
        let response = harness.heartbeat(&mut second);
        assert!(response.assignment.is_empty(), "{response:?}");
        assert!(harness.coordinator.tick(harness.now_ms).is_empty());
    }
    assert_eq!(
        harness.coordinator.next_deadline_ms(),
        Some(i64::from(REBALANCE_TIMEOUT_MS))
    );
    harness.now_ms = i64::from(REBALANCE_TIMEOUT_MS);
    let effects = harness.coordinator.tick(harness.now_ms);
    assert!(effects.contains(&Effect::MemberRemoved {
        group_id: GROUP.into(),
        member_id: first.member_id.clone(),
        reason: RemovalReason::RebalanceTimeout,
    }));
    assert_eq!(harness.settle(&mut second), orders(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(
        harness.heartbeat(&mut first).error_code,
        ErrorCode::UnknownMemberId
    );
}

/// A member that stops heartbeating is removed once its session times out, and its
/// partitions go to the members left.
#[test]
fn a_silent_member_expires_and_its_partitions_are_reassigned() {
    let mut harness = Harness::new(10);
    let (mut first, _) = harness.join(&["orders"]);
    let (mut second, _) = harness.join(&["orders"]);
    first.owned = from_wire(&harness.heartbeat(&mut first).assignment);
    harness.heartbeat(&mut first);
    assert_eq!(harness.settle(&mut second).len(), 3);

    harness.now_ms = 900;
    harness.heartbeat(&mut first);
    assert!(harness.coordinator.tick(harness.now_ms).is_empty());
    // The second member fell silent at time 0: its session ends at 1000.
    harness.now_ms = SESSION_TIMEOUT_MS;
    let effects = harness.coordinator.tick(harness.now_ms);
    assert_eq!(
        rebalances(&effects),
        [RebalanceReason::MemberRemoved(
            RemovalReason::SessionTimeout
        )]
    );
    assert_eq!(harness.settle(&mut first), orders(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(
        harness.heartbeat(&mut second).error_code,
        ErrorCode::UnknownMemberId
    );
}

/// Leaving releases a member's partitions at once; the last member leaving leaves an
/// empty group, which is forgotten when it has no offsets.
#[test]
fn leaving_releases_partitions_at_once() {
    let mut harness = Harness::new(10);
    let (mut first, _) = harness.join(&["orders"]);
    let (mut second, _) = harness.join(&["orders"]);
    first.owned = from_wire(&harness.heartbeat(&mut first).assignment);
    harness.heartbeat(&mut first);
    harness.settle(&mut second);

    let (response, effects) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: second.member_id.clone(),
        member_epoch: LEAVE_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: None,
        owned_partitions: Vec::new(),
    });
    assert_eq!(response.error_code, ErrorCode::None);
    assert_eq!(response.member_epoch, LEAVE_MEMBER_EPOCH);
    assert_eq!(
        rebalances(&effects),
        [RebalanceReason::MemberRemoved(RemovalReason::Left)]
    );
    assert_eq!(harness.settle(&mut first).len(), 6);

    let (response, _) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: first.member_id.clone(),
        member_epoch: LEAVE_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: None,
        owned_partitions: Vec::new(),
    });
    assert_eq!(response.error_code, ErrorCode::None);
    assert_eq!(harness.coordinator.group_state(GROUP), None);
}

/// The epoch before the current one is accepted once (its response was lost) when the
/// member owns nothing it was not given; any other epoch fences and removes the member.
#[test]
fn lost_responses_are_tolerated_and_wrong_epochs_fenced() {
    let mut harness = Harness::new(10);
    let (mut first, _) = harness.join(&["orders"]);
    let (_second, _) = harness.join(&["orders"]);
    first.owned = from_wire(&harness.heartbeat(&mut first).assignment);
    // This response (epoch 2) is lost: the member heartbeats again with epoch 1.
    let lost = harness.heartbeat(&mut first.clone());
    assert_eq!(lost.member_epoch, 2);
    let response = harness.heartbeat(&mut first);
    assert_eq!(response.error_code, ErrorCode::None);
    assert_eq!(response.member_epoch, 2);

    first.epoch = 7;
    let response = harness.heartbeat(&mut first);
    assert_eq!(response.error_code, ErrorCode::FencedMemberEpoch);
    assert_eq!(
        harness.heartbeat(&mut first).error_code,
        ErrorCode::UnknownMemberId
    );
}

/// More partitions in a subscribed topic start a rebalance that hands them out; a
/// subscription change does too; an unrelated topic does not.
#[test]
fn partition_and_subscription_changes_rebalance() {
    let mut harness = Harness::new(10);
    let (mut member, _) = harness.join(&["orders"]);
    let effects = harness
        .coordinator
        .set_topics(topics(&[("orders", 1, 6), ("other", 2, 3)]));
    assert!(rebalances(&effects).is_empty());
    let effects = harness
        .coordinator
        .set_topics(topics(&[("orders", 1, 8), ("other", 2, 3)]));
    assert_eq!(rebalances(&effects), [RebalanceReason::PartitionsChanged]);
    assert_eq!(harness.settle(&mut member).len(), 8);
    assert_eq!(member.epoch, 2);

    let (response, effects) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: member.member_id.clone(),
        member_epoch: member.epoch,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(vec!["orders".into(), "other".into()]),
        owned_partitions: to_wire(&member.owned),
    });
    assert_eq!(rebalances(&effects), [RebalanceReason::SubscriptionChanged]);
    assert_eq!(from_wire(&response.assignment).len(), 11);
}

/// Commits are checked against the group: a member at its epoch commits what it holds;
/// other partitions, stale epochs, unknown members, oversized metadata and negative
/// offsets are refused per partition; a tool commits only into an empty group.
#[test]
fn commits_are_checked_against_membership_and_ownership() {
    let mut harness = Harness::new(10);
    let (mut first, _) = harness.join(&["orders"]);
    let (second, _) = harness.join(&["orders"]);
    first.owned = from_wire(&harness.heartbeat(&mut first).assignment);
    let owned_by_first: Vec<i32> = first.owned.iter().map(|p| p.partition).collect();
    let (codes, effects) = harness.commit(&first, &owned_by_first[..1], 10);
    assert_eq!(codes, [ErrorCode::None]);
    assert_eq!(effects.len(), 1);

    // Partitions the first member is not given, while the second has nothing yet.
    let other: Vec<i32> = (0..6).filter(|p| !owned_by_first.contains(p)).collect();
    let (codes, _) = harness.commit(&second, &other[..1], 10);
    assert_eq!(codes, [ErrorCode::PartitionNotAssigned]);

    let stale = Client {
        epoch: first.epoch - 1,
        ..first.clone()
    };
    assert_eq!(
        harness.commit(&stale, &owned_by_first[..1], 1).0,
        [ErrorCode::StaleMemberEpoch]
    );
    let unknown = Client {
        member_id: "nobody".into(),
        ..first.clone()
    };
    assert_eq!(
        harness.commit(&unknown, &[0], 1).0,
        [ErrorCode::UnknownMemberId]
    );
    assert_eq!(
        harness.commit(&first, &owned_by_first[..1], -5).0,
        [ErrorCode::InvalidRequest]
    );

    let mut request = OffsetCommitRequest {
        group_id: GROUP.into(),
        member_id: String::new(),
        member_epoch: ADMIN_MEMBER_EPOCH,
        topics: vec![OffsetCommitTopic {
            name: "orders".into(),
            partitions: vec![OffsetCommitPartition {
                partition: 0,
                committed_offset: 0,
                committed_metadata: Some("x".repeat(5_000)),
            }],
        }],
    };
    let (response, _) = harness.coordinator.commit(&request, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::NonEmptyGroup
    );
    request.group_id = "empty".into();
    let (response, _) = harness.coordinator.commit(&request, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::OffsetMetadataTooLarge
    );
    request.topics[0].partitions[0].committed_metadata = None;
    request.topics[0].partitions[0].partition = 6;
    let (response, _) = harness.coordinator.commit(&request, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::UnknownTopicOrPartition
    );
}

/// A commit changes nothing until its records are applied (durable); deleting the
/// topic deletes the group's offsets of it with tombstones.
#[test]
fn offsets_change_when_records_are_applied_and_vanish_with_their_topic() {
    let mut harness = Harness::new(10);
    let (member, _) = harness.join(&["orders"]);
    let (codes, effects) = harness.commit(&member, &[0, 1], 42);
    assert_eq!(codes, [ErrorCode::None, ErrorCode::None]);
    assert_eq!(harness.committed(0), -1, "not durable yet");
    harness.apply(&effects);
    assert_eq!(harness.committed(0), 42);
    assert_eq!(harness.committed(2), -1);

    let effects = harness.coordinator.set_topics(topics(&[]));
    let tombstones: Vec<&OffsetRecord> = effects
        .iter()
        .flat_map(|effect| match effect {
            Effect::PersistRecords { records, .. } => records.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(tombstones.len(), 2);
    assert!(tombstones.iter().all(|record| record.value.is_none()));
    harness.apply(&effects);
    assert_eq!(harness.committed(0), -1);
}

/// ListGroups and DescribeGroups report states, members and both assignments; an empty
/// group with offsets stays listed.
#[test]
fn listing_and_describing() {
    let mut harness = Harness::new(10);
    let (member, _) = harness.join(&["orders"]);
    let (_, effects) = harness.commit(&member, &[0], 1);
    harness.apply(&effects);
    let listed = harness.coordinator.list_groups(&[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group_state, "Stable");
    assert_eq!(listed[0].member_count, 1);
    assert!(
        harness
            .coordinator
            .list_groups(&["Empty".into()])
            .is_empty()
    );

    let described = harness.coordinator.describe_group(GROUP);
    assert_eq!(described.error_code, ErrorCode::None);
    assert_eq!(described.assignor_name, "uniform");
    assert_eq!(described.members[0].member_id, member.member_id);
    assert_eq!(
        described.members[0].assignment,
        described.members[0].target_assignment
    );
    assert_eq!(
        harness.coordinator.describe_group("nothing").error_code,
        ErrorCode::GroupIdNotFound
    );

    harness.now_ms = SESSION_TIMEOUT_MS;
    harness.coordinator.tick(harness.now_ms);
    assert_eq!(harness.coordinator.list_groups(&["Empty".into()]).len(), 1);
}

/// Joins beyond `members_max`, joins without a subscription and empty group ids are
/// refused; none of them leaves a group behind.
#[test]
fn invalid_joins_are_refused() {
    let mut harness = Harness::new(1);
    harness.join(&["orders"]);
    let (response, _) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: String::new(),
        member_epoch: JOIN_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(vec!["orders".into()]),
        owned_partitions: Vec::new(),
    });
    assert_eq!(response.error_code, ErrorCode::GroupMaxSizeReached);

    let (response, _) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: "other".into(),
        member_id: String::new(),
        member_epoch: JOIN_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: None,
        owned_partitions: Vec::new(),
    });
    assert_eq!(response.error_code, ErrorCode::InvalidRequest);
    assert_eq!(harness.coordinator.group_state("other"), None);

    let (response, _) = harness.send(ConsumerGroupHeartbeatRequest {
        group_id: String::new(),
        member_id: String::new(),
        member_epoch: JOIN_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(Vec::new()),
        owned_partitions: Vec::new(),
    });
    assert_eq!(response.error_code, ErrorCode::InvalidGroupId);
}

/// The coordinator partition is the CRC-32C of the group id modulo the partition
/// count; CRC-32C("shipping") = 0x855b0600 was computed with an independent
/// implementation (check value 0xe3069283 for "123456789").
#[test]
fn offsets_partition_is_a_stable_hash() {
    assert_eq!(
        super::offsets_partition(GROUP, 8),
        (0x855b_0600_u32 % 8) as i32
    );
    assert_eq!(
        super::offsets_partition(GROUP, 50),
        (0x855b_0600_u32 % 50) as i32
    );
    assert_eq!(super::offsets_partition(GROUP, 1), 0);
}
