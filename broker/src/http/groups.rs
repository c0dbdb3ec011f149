//! Consumer groups: `GET /v1/groups` and `GET /v1/groups/{id}`, read from this broker's
//! group coordinator (the groups whose `__consumer_offsets` partition it leads).
//!
//! A group's description adds, to what DescribeGroups tells a client, its committed
//! offsets with each partition's high watermark and the lag between them, read from
//! the partition logs this broker holds.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{PathParameters, Ready};
use crate::group::GroupCoordinator;
use crate::group::assignor::PartitionSet;
use crate::group::consumer_group::ConsumerGroup;
use crate::storage::TopicPartition;

/// A group in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupSummary {
    pub group_id: String,
    /// `Empty` (no members, committed offsets only), `Reconciling` (partitions are
    /// moving to a new target assignment) or `Stable`.
    pub state: String,
    /// Members now.
    pub member_count: usize,
    /// Bumped whenever membership, subscriptions or subscribed partition counts change.
    pub group_epoch: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupList {
    /// By group id.
    pub groups: Vec<GroupSummary>,
}

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// A member of a group.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GroupMember {
    pub member_id: String,
    /// The client id of its requests.
    pub client_id: String,
    /// The address its heartbeats come from.
    pub client_host: String,
    /// The target epoch it has caught up with.
    pub member_epoch: i32,
    pub subscribed_topics: Vec<String>,
    /// What it owns now.
    pub assignment: Vec<TopicPartitions>,
    /// What it will own once the partitions moving to it are released.
    pub target_assignment: Vec<TopicPartitions>,
}

/// A committed offset and how far behind it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group consumes.
    pub committed_offset: i64,
    pub metadata: Option<String>,
    /// When it was committed, ms since the Unix epoch.
    pub commit_timestamp_ms: i64,
    /// The partition's high watermark; null when this broker holds no log of it.
    pub high_watermark: Option<i64>,
    /// Records between the committed offset and the high watermark (0 when the
    /// committed offset is at or past it); null with the high watermark.
    pub lag: Option<i64>,
}

/// A group in detail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    pub group_id: String,
    pub state: String,
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// The server-side assignor (`uniform` or `range`).
    pub assignor: String,
    /// By member id.
    pub members: Vec<GroupMember>,
    /// By topic and partition.
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The group's id.
    pub id: String,
}

fn by_topic(partitions: &PartitionSet) -> Vec<TopicPartitions> {
    let mut topics: Vec<TopicPartitions> = Vec::new();
    for partition in partitions {
        match topics.last_mut() {
            Some(last) if last.topic == partition.topic => {
                last.partitions.push(partition.partition)
            }
            _ => topics.push(TopicPartitions {
                topic: partition.topic.clone(),
                partitions: vec![partition.partition],
            }),
        }
    }
    topics
}

fn summary(group: &ConsumerGroup) -> GroupSummary {
    GroupSummary {
        group_id: group.group_id.clone(),
        state: group.state().name().to_owned(),
        member_count: group.members.len(),
        group_epoch: group.group_epoch,
    }
}

/// The group as the coordinator has it, offsets without their high watermarks (those
/// are read after the coordinator's lock is released).
fn describe(coordinator: &GroupCoordinator, group: &ConsumerGroup) -> Group {
    let empty = PartitionSet::new();
    Group {
        group_id: group.group_id.clone(),
        state: group.state().name().to_owned(),
        group_epoch: group.group_epoch,
        assignment_epoch: group.target_epoch,
        assignor: coordinator.assignor_name().to_owned(),
        members: group
            .members
            .values()
            .map(|member| GroupMember {
                member_id: member.member_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                member_epoch: member.member_epoch,
                subscribed_topics: member.subscribed_topics.iter().cloned().collect(),
                assignment: by_topic(&member.assigned),
                target_assignment: by_topic(group.target.get(&member.member_id).unwrap_or(&empty)),
            })
            .collect(),
        offsets: group
            .offsets
            .iter()
            .map(|(partition, value)| CommittedOffset {
                topic: partition.topic.clone(),
                partition: partition.partition,
                committed_offset: value.committed_offset,
                metadata: value.metadata.clone(),
                commit_timestamp_ms: value.commit_timestamp_ms,
                high_watermark: None,
                lag: None,
            })
            .collect(),
    }
}

/// Every group this broker coordinates.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "groups",
    responses((status = OK, body = GroupList))
)]
pub async fn list_groups(Ready(api): Ready) -> Json<GroupList> {
    let groups = api
        .groups
        .with_coordinator(|coordinator| coordinator.groups().map(summary).collect());
    Json(GroupList { groups })
}

/// A group's members, assignments, committed offsets and lag.
#[utoipa::path(
    get,
    path = "/v1/groups/{id}",
    tag = "groups",
    params(GroupPath),
    responses(
        (status = OK, body = Group),
        (status = NOT_FOUND, description = "This broker coordinates no group of that id \
            (none with members or committed offsets).", body = ErrorBody),
    )
)]
pub async fn get_group(
    Ready(api): Ready,
    PathParameters(path): PathParameters<GroupPath>,
) -> Result<Json<Group>, ApiError> {
    let group = api.groups.with_coordinator(|coordinator| {
        coordinator
            .group(&path.id)
            .map(|group| describe(coordinator, group))
    });
    let mut group = group.ok_or_else(|| {
        ApiError::new(
            ErrorCode::GroupNotFound,
            format!("group '{}' does not exist", path.id),
        )
    })?;
    for offset in &mut group.offsets {
        let log = api
            .partitions
            .logs()
            .get(&TopicPartition::new(offset.topic.clone(), offset.partition));
        offset.high_watermark = log.map(|log| log.high_watermark());
        offset.lag = offset
            .high_watermark
            .map(|high_watermark| (high_watermark - offset.committed_offset).max(0));
    }
    Ok(Json(group))
}
