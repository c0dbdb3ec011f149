//! Committing offsets and reading committed ones, with the retries the group protocol
//! calls for.
//!
//! A commit carries the member's id and current epoch. `STALE_MEMBER_EPOCH` means a
//! heartbeat has moved the epoch on since: the commit waits for the new epoch and goes
//! again. A lost or moved coordinator is found again. Partitions refused for good
//! (`PARTITION_NOT_ASSIGNED`: no longer this member's) are reported after the others
//! are committed. Everything is bounded by the client's request timeout.

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::messages::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopic,
    OffsetFetchRequest, OffsetFetchResponse,
};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::time::Instant;

use super::coordinator::{CoordinatorLink, code_invalidates_coordinator};
use super::membership::{Identity, Membership, to_wire};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

const RETRY_BACKOFF: Backoff = Backoff {
    initial_ms: 50,
    max_ms: 1_000,
};

/// Offsets to commit: partition → the next offset to consume.
pub(crate) type Offsets = BTreeMap<TopicPartition, i64>;

fn request(group_id: &str, identity: &Identity, offsets: &Offsets) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitTopic> = Vec::new();
    for (partition, offset) in offsets {
        let entry = OffsetCommitPartition {
            partition: partition.partition,
            committed_offset: *offset,
            committed_metadata: None,
        };
        match topics.last_mut() {
            Some(last) if last.name == partition.topic => last.partitions.push(entry),
            _ => topics.push(OffsetCommitTopic {
                name: partition.topic.clone(),
                partitions: vec![entry],
            }),
        }
    }
    OffsetCommitRequest {
        group_id: group_id.to_owned(),
        member_id: identity.member_id.clone(),
        member_epoch: identity.member_epoch,
        topics,
    }
}

/// Commits `offsets` as the member, retrying what can be retried.
pub(crate) async fn commit(membership: &Membership, offsets: Offsets) -> Result<()> {
    let link = &membership.link;
    let mut identities = membership.identity.subscribe();
    let deadline = Instant::now() + link.timeout();
    let mut pending = offsets;
    let mut failures = 0u32;
    let mut refused: Option<Error> = None;
    while !pending.is_empty() {
        let identity = identities.borrow_and_update().clone();
        let outcome = link
            .request::<_, OffsetCommitResponse>(
                ApiKey::OffsetCommit,
                &request(link.group_id(), &identity, &pending),
            )
            .await;
        let mut stale = false;
        let mut last_error = None;
        match outcome {
            Ok(response) => {
                for topic in response.topics {
                    for result in topic.partitions {
                        let partition = TopicPartition::new(topic.name.clone(), result.partition);
                        let code = result.error_code;
                        if code.is_ok() {
                            pending.remove(&partition);
                            continue;
                        }
                        let error = Error::broker(
                            format!("commit {partition} for group '{}'", link.group_id()),
                            code,
                        );
                        if code == ErrorCode::StaleMemberEpoch {
                            stale = true;
                        } else if matches!(
                            code,
                            ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch
                        ) {
                            pending.remove(&partition);
                            refused.get_or_insert(Error::CommitFailed {
                                group: link.group_id().to_owned(),
                                code,
                            });
                            // Its next heartbeat finds out and joins again: now.
                            membership.wake.notify_one();
                            continue;
                        } else if code_invalidates_coordinator(code) || code.is_retriable() {
                            link.invalidate();
                        } else {
                            pending.remove(&partition);
                            refused.get_or_insert(error.clone());
                            continue;
                        }
                        last_error = Some(error);
                    }
                }
            }
            Err(error) if error.is_retriable() => last_error = Some(error),
            Err(error) => return Err(error),
        }
        if pending.is_empty() {
            break;
        }
        let last_error = last_error.unwrap_or_else(|| Error::UnexpectedResponse {
            address: link.group_id().to_owned(),
            reason: "partitions missing from the offset commit response".into(),
        });
        if Instant::now() >= deadline {
            return Err(last_error);
        }
        if stale {
            // A heartbeat is about to bring the new epoch.
            let changed = tokio::time::timeout_at(deadline, identities.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(last_error);
            }
        } else {
            failures += 1;
            tokio::time::sleep(RETRY_BACKOFF.delay(failures)).await;
        }
    }
    refused.map_or(Ok(()), Err)
}

/// The group's committed offsets of `partitions`; partitions without one are absent.
pub(crate) async fn committed(
    link: &CoordinatorLink,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<Offsets> {
    let request = OffsetFetchRequest {
        group_id: link.group_id().to_owned(),
        topics: Some(to_wire(partitions)),
    };
    fetch(link, &request).await
}

/// Every committed offset of the group.
pub(crate) async fn all_committed(link: &CoordinatorLink) -> Result<Offsets> {
    let request = OffsetFetchRequest {
        group_id: link.group_id().to_owned(),
        topics: None,
    };
    fetch(link, &request).await
}

async fn fetch(link: &CoordinatorLink, request: &OffsetFetchRequest) -> Result<Offsets> {
    let deadline = Instant::now() + link.timeout();
    let mut failures = 0u32;
    loop {
        let error = match link
            .request::<_, OffsetFetchResponse>(ApiKey::OffsetFetch, request)
            .await
        {
            Ok(response) if response.error_code.is_ok() => {
                let mut offsets = Offsets::new();
                for topic in response.topics {
                    for partition in topic.partitions {
                        if !partition.error_code.is_ok() {
                            return Err(Error::broker(
                                format!(
                                    "committed offset of {}-{} in group '{}'",
                                    topic.name,
                                    partition.partition,
                                    link.group_id()
                                ),
                                partition.error_code,
                            ));
                        }
                        if partition.committed_offset >= 0 {
                            offsets.insert(
                                TopicPartition::new(topic.name.clone(), partition.partition),
                                partition.committed_offset,
                            );
                        }
                    }
                }
                return Ok(offsets);
            }
            Ok(response) => {
                let error = Error::broker(
                    format!("committed offsets of group '{}'", link.group_id()),
                    response.error_code,
                );
                if !code_invalidates_coordinator(response.error_code) {
                    return Err(error);
                }
                link.invalidate();
                error
            }
            Err(error) if error.is_retriable() => error,
            Err(error) => return Err(error),
        };
        failures += 1;
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(RETRY_BACKOFF.delay(failures)).await;
    }
}
