//! The coordinator's offset commits and fetches.
//!
//! A commit is checked against the group's membership (a member at its current epoch,
//! committing partitions it holds; or a tool while the group is empty) and becomes
//! records to persist. Committed offsets change only when those records are durable
//! and applied, exactly as when they are replayed at start-up, so that the state in
//! memory never runs ahead of the log.

use fjord_protocol::ErrorCode;
use fjord_protocol::limits::OFFSET_METADATA_BYTES_MAX;
use fjord_protocol::messages::{
    ADMIN_MEMBER_EPOCH, OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopicResponse, OffsetFetchPartitionResponse, OffsetFetchRequest,
    OffsetFetchResponse, OffsetFetchTopicResponse,
};

use super::assignor::PartitionSet;
use super::consumer_group::ConsumerGroup;
use super::coordinator::{GroupCoordinator, from_wire};
use super::effect::Effect;
use super::records::{OffsetKey, OffsetRecord, OffsetValue};
use crate::storage::TopicPartition;

impl GroupCoordinator {
    /// An OffsetCommit: checks it and returns the records to persist; nothing changes
    /// until they are durable and applied. The response holds an error for each
    /// partition that was refused and `NONE` for the others, which the runtime turns
    /// into an error if persisting fails.
    pub fn commit(
        &self,
        request: &OffsetCommitRequest,
        commit_timestamp_ms: i64,
    ) -> (OffsetCommitResponse, Vec<Effect>) {
        if let Err(code) = self.check_committer(request) {
            return (OffsetCommitResponse::all(request, code), Vec::new());
        }
        let member = self
            .groups
            .get(&request.group_id)
            .and_then(|group| group.members.get(&request.member_id));
        let mut records = Vec::new();
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for entry in &topic.partitions {
                let partition = TopicPartition::new(topic.name.clone(), entry.partition);
                let error_code = if entry.committed_offset < 0 {
                    ErrorCode::InvalidRequest
                } else if entry
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.len() > OFFSET_METADATA_BYTES_MAX)
                {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    match member {
                        Some(member) if !member.holds(&partition) => {
                            ErrorCode::PartitionNotAssigned
                        }
                        Some(_) => ErrorCode::None,
                        None if !self.partition_exists(&partition) => {
                            ErrorCode::UnknownTopicOrPartition
                        }
                        None => ErrorCode::None,
                    }
                };
                if error_code.is_ok() {
                    records.push(OffsetRecord {
                        key: OffsetKey {
                            group_id: request.group_id.clone(),
                            topic: topic.name.clone(),
                            partition: entry.partition,
                        },
                        value: Some(OffsetValue {
                            committed_offset: entry.committed_offset,
                            metadata: entry.committed_metadata.clone(),
                            commit_timestamp_ms,
                        }),
                    });
                }
                partitions.push(OffsetCommitPartitionResponse {
                    partition: entry.partition,
                    error_code,
                });
            }
            topics.push(OffsetCommitTopicResponse {
                name: topic.name.clone(),
                partitions,
            });
        }
        let effects = if records.is_empty() {
            Vec::new()
        } else {
            vec![Effect::PersistRecords {
                group_id: request.group_id.clone(),
                records,
            }]
        };
        (OffsetCommitResponse { topics }, effects)
    }

    /// Whether the committer may commit at all: a member at its current epoch, or a
    /// tool (empty member id, epoch -1) while the group has no members.
    fn check_committer(&self, request: &OffsetCommitRequest) -> Result<(), ErrorCode> {
        if request.group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        let group = self.groups.get(&request.group_id);
        if request.member_id.is_empty() && request.member_epoch == ADMIN_MEMBER_EPOCH {
            return match group {
                Some(group) if !group.members.is_empty() => Err(ErrorCode::NonEmptyGroup),
                _ => Ok(()),
            };
        }
        let member = group
            .and_then(|group| group.members.get(&request.member_id))
            .ok_or(ErrorCode::UnknownMemberId)?;
        match request.member_epoch.cmp(&member.member_epoch) {
            std::cmp::Ordering::Less => Err(ErrorCode::StaleMemberEpoch),
            std::cmp::Ordering::Greater => Err(ErrorCode::FencedMemberEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn partition_exists(&self, partition: &TopicPartition) -> bool {
        self.topics
            .get(&partition.topic)
            .is_some_and(|topic| (0..topic.partitions).contains(&partition.partition))
    }

    /// Applies a durable record of the offsets topic, found at `record_offset` of its
    /// partition: at start-up for every record, later for each persisted one.
    pub fn apply_record(&mut self, record: &OffsetRecord, record_offset: i64) {
        let group_id = &record.key.group_id;
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(group_id.clone()));
        group.offsets.apply(
            TopicPartition::new(record.key.topic.clone(), record.key.partition),
            record.value.clone(),
            record_offset,
        );
        let group_id = group_id.clone();
        self.forget_if_dead(&group_id);
    }

    /// An OffsetFetch.
    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        if request.group_id.is_empty() {
            return OffsetFetchResponse {
                error_code: ErrorCode::InvalidGroupId,
                topics: Vec::new(),
            };
        }
        let group = self.groups.get(&request.group_id);
        let found = |partition: &TopicPartition| {
            let value = group.and_then(|group| group.offsets.get(partition));
            OffsetFetchPartitionResponse {
                partition: partition.partition,
                committed_offset: value.map_or(-1, |value| value.committed_offset),
                committed_metadata: value.and_then(|value| value.metadata.clone()),
                error_code: ErrorCode::None,
            }
        };
        let wanted: PartitionSet = match &request.topics {
            Some(topics) => from_wire(topics),
            None => group
                .map(|group| {
                    group
                        .offsets
                        .iter()
                        .map(|(partition, _)| partition.clone())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut topics: Vec<OffsetFetchTopicResponse> = Vec::new();
        for partition in &wanted {
            let response = found(partition);
            match topics.last_mut() {
                Some(last) if last.name == partition.topic => last.partitions.push(response),
                _ => topics.push(OffsetFetchTopicResponse {
                    name: partition.topic.clone(),
                    partitions: vec![response],
                }),
            }
        }
        OffsetFetchResponse {
            error_code: ErrorCode::None,
            topics,
        }
    }
}
