//! Consumer group administration on [`Admin`]: list, describe, read committed offsets
//! and reset them.
//!
//! Each broker lists the groups it coordinates, so a listing asks every known broker.
//! Descriptions and offsets come from the group's coordinator. Resetting commits from
//! outside the group (empty member id, epoch -1), which the coordinator accepts only
//! while the group has no members: the check and the commit are one step there, so a
//! member joining in between cannot have its offsets changed under it.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::messages::{
    ADMIN_MEMBER_EPOCH, DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopic, OffsetSpec,
};
use fjord_protocol::{ApiKey, ErrorCode};

use super::commit::{self, Offsets};
use super::coordinator::{CoordinatorLink, code_invalidates_coordinator};
use super::membership::from_wire;
use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::offsets::list_offsets;
use crate::topic_partition::TopicPartition;

/// One line of a group listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `Empty`, `Reconciling` or `Stable`.
    pub state: String,
    pub members: usize,
}

/// A group in detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The coordinator's assignor (`uniform` or `range`).
    pub assignor: String,
    pub members: Vec<GroupMember>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub subscribed_topics: Vec<String>,
    /// What it owns now.
    pub assignment: Vec<TopicPartition>,
    /// What it will own once the group has reconciled.
    pub target_assignment: Vec<TopicPartition>,
}

/// Where to move a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The oldest record of each partition.
    Earliest,
    /// The end of each partition (skip everything there now).
    Latest,
    /// The first record at or after this time (ms since the Unix epoch); the end
    /// where there is none.
    Timestamp(i64),
}

impl Admin {
    /// Every group of every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let client = self.client();
        client.refresh_metadata(Vec::new()).await?;
        let addresses: BTreeSet<String> = client.snapshot().brokers.values().cloned().collect();
        let mut groups = BTreeMap::new();
        for address in addresses {
            let response: ListGroupsResponse = client
                .request(
                    &address,
                    ApiKey::ListGroups,
                    &ListGroupsRequest::default(),
                    client.config().request_timeout(),
                )
                .await?;
            if !response.error_code.is_ok() {
                return Err(Error::broker(
                    format!("list groups of {address}"),
                    response.error_code,
                ));
            }
            for group in response.groups {
                groups.insert(
                    group.group_id.clone(),
                    GroupListing {
                        group_id: group.group_id,
                        state: group.group_state,
                        members: usize::try_from(group.member_count).unwrap_or(0),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members and assignments.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let link = CoordinatorLink::new(self.client(), group_id);
        let request = DescribeGroupsRequest {
            group_ids: vec![group_id.to_owned()],
        };
        let mut attempts = 0;
        let group = loop {
            let response: DescribeGroupsResponse =
                link.request(ApiKey::DescribeGroups, &request).await?;
            let group = response
                .groups
                .into_iter()
                .find(|group| group.group_id == group_id)
                .ok_or_else(|| Error::UnexpectedResponse {
                    address: format!("coordinator of group '{group_id}'"),
                    reason: "the group is missing from the response".into(),
                })?;
            attempts += 1;
            match group.error_code {
                ErrorCode::None => break group,
                ErrorCode::GroupIdNotFound => {
                    return Err(Error::GroupNotFound {
                        group_id: group_id.to_owned(),
                    });
                }
                code if code_invalidates_coordinator(code) && attempts < 3 => link.invalidate(),
                code => return Err(Error::broker(format!("describe group '{group_id}'"), code)),
            }
        };
        Ok(GroupDescription {
            group_id: group.group_id,
            state: group.group_state,
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: group.assignor_name,
            members: group
                .members
                .into_iter()
                .map(|member| GroupMember {
                    member_id: member.member_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    member_epoch: member.member_epoch,
                    subscribed_topics: member.subscribed_topic_names,
                    assignment: from_wire(&member.assignment).into_iter().collect(),
                    target_assignment: from_wire(&member.target_assignment).into_iter().collect(),
                })
                .collect(),
        })
    }

    /// Every committed offset of a group: partition → the next offset to consume.
    pub async fn group_offsets(&self, group_id: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        commit::all_committed(&CoordinatorLink::new(self.client(), group_id)).await
    }

    /// Moves a group's committed offsets of every partition of `topic` to `to`, and
    /// returns the new offsets. Fails with [`Error::GroupNotEmpty`] while the group has
    /// members.
    pub async fn reset_group_offsets(
        &self,
        group_id: &str,
        topic: &str,
        to: OffsetReset,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let partitions: Vec<TopicPartition> = self
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .map(|partition| TopicPartition::new(topic, partition.partition))
            .collect();
        let spec = match to {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::Timestamp(timestamp_ms) => OffsetSpec::Timestamp(timestamp_ms),
        };
        let queries: Vec<(TopicPartition, OffsetSpec)> = partitions
            .iter()
            .map(|partition| (partition.clone(), spec))
            .collect();
        let mut offsets: Offsets = list_offsets(self.client(), &queries)
            .await?
            .into_iter()
            .map(|(partition, listed)| (partition, listed.offset))
            .collect();
        let past_end: Vec<(TopicPartition, OffsetSpec)> = offsets
            .iter()
            .filter(|(_, offset)| **offset < 0)
            .map(|(partition, _)| (partition.clone(), OffsetSpec::Latest))
            .collect();
        if !past_end.is_empty() {
            for (partition, listed) in list_offsets(self.client(), &past_end).await? {
                offsets.insert(partition, listed.offset);
            }
        }
        self.commit_from_outside(group_id, &offsets).await?;
        Ok(offsets)
    }

    async fn commit_from_outside(&self, group_id: &str, offsets: &Offsets) -> Result<()> {
        let link = CoordinatorLink::new(self.client(), group_id);
        let mut topics: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
        for (partition, offset) in offsets {
            topics
                .entry(&partition.topic)
                .or_default()
                .push(OffsetCommitPartition {
                    partition: partition.partition,
                    committed_offset: *offset,
                    committed_metadata: None,
                });
        }
        let request = OffsetCommitRequest {
            group_id: group_id.to_owned(),
            member_id: String::new(),
            member_epoch: ADMIN_MEMBER_EPOCH,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| OffsetCommitTopic {
                    name: name.to_owned(),
                    partitions,
                })
                .collect(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let response: OffsetCommitResponse =
                link.request(ApiKey::OffsetCommit, &request).await?;
            let failed = response
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(move |partition| (topic, partition))
                })
                .find(|(_, partition)| !partition.error_code.is_ok());
            let Some((topic, partition)) = failed else {
                return Ok(());
            };
            match partition.error_code {
                ErrorCode::NonEmptyGroup => {
                    return Err(Error::GroupNotEmpty {
                        group_id: group_id.to_owned(),
                    });
                }
                code if code_invalidates_coordinator(code) && attempts < 3 => link.invalidate(),
                code => {
                    return Err(Error::broker(
                        format!(
                            "reset the offset of {}-{} for group '{group_id}'",
                            topic.name, partition.partition
                        ),
                        code,
                    ));
                }
            }
        }
    }
}
