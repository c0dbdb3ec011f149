//! ListOffsets: the earliest offset, the latest offset, or the first offset at or
//! after a timestamp, for any set of partitions.
//!
//! Partitions are grouped by leader, one request per leader, sent concurrently.
//! Partitions whose leader moved or is unknown are retried a few times after a
//! metadata refresh; other errors end the call.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fjord_protocol::ApiKey;
use fjord_protocol::messages::{
    CONSUMER_REPLICA_ID, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopic, OffsetSpec,
};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// Rounds of requests before a retriable failure is returned.
const ATTEMPTS_MAX: u32 = 6;
const RETRY_BACKOFF: Backoff = Backoff {
    initial_ms: 50,
    max_ms: 1_000,
};

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset found; -1 when a timestamp query found no record at or after it.
    pub offset: i64,
    /// The timestamp of the record found; -1 for earliest/latest queries or when no
    /// record was found.
    pub timestamp_ms: i64,
}

/// Looks up one offset per partition.
pub(crate) async fn list_offsets(
    client: &Client,
    queries: &[(TopicPartition, OffsetSpec)],
) -> Result<BTreeMap<TopicPartition, ListedOffset>> {
    let mut found = BTreeMap::new();
    let mut pending: Vec<(TopicPartition, OffsetSpec)> = queries.to_vec();
    let mut attempt = 0;
    loop {
        let mut retry = Vec::new();
        let mut last_error = None;
        let mut by_leader: BTreeMap<String, Vec<(TopicPartition, OffsetSpec)>> = BTreeMap::new();
        for (topic_partition, spec) in pending {
            match client.leader(&topic_partition).await {
                Ok(leader) => by_leader
                    .entry(leader.address)
                    .or_default()
                    .push((topic_partition, spec)),
                Err(error) if error.is_retriable() => {
                    last_error = Some(error);
                    retry.push((topic_partition, spec));
                }
                Err(error) => return Err(error),
            }
        }
        let requests = by_leader.into_iter().map(|(address, queries)| async move {
            let outcome = send(client, &address, &queries).await;
            (queries, outcome)
        });
        for (queries, outcome) in futures::future::join_all(requests).await {
            match outcome {
                Ok(response) => {
                    collect(&queries, &response, &mut found, &mut retry, &mut last_error)?
                }
                Err(error) if error.is_retriable() => {
                    last_error = Some(error);
                    retry.extend(queries);
                }
                Err(error) => return Err(error),
            }
        }
        if retry.is_empty() {
            return Ok(found);
        }
        attempt += 1;
        if attempt >= ATTEMPTS_MAX {
            return Err(last_error.expect("a retried query has a reason"));
        }
        let topics: BTreeSet<String> = retry.iter().map(|(tp, _)| tp.topic.clone()).collect();
        tokio::time::sleep(RETRY_BACKOFF.delay(attempt)).await;
        client
            .refresh_metadata_quietly(topics.into_iter().collect())
            .await;
        pending = retry;
    }
}

async fn send(
    client: &Client,
    address: &str,
    queries: &[(TopicPartition, OffsetSpec)],
) -> Result<ListOffsetsResponse> {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (topic_partition, spec) in queries {
        topics
            .entry(&topic_partition.topic)
            .or_default()
            .push(ListOffsetsPartition {
                partition: topic_partition.partition,
                // -1 skips the epoch check: an offset lookup is harmless on a stale
                // leader, which answers NOT_LEADER_OR_FOLLOWER anyway.
                current_leader_epoch: -1,
                timestamp: spec.to_timestamp(),
            });
    }
    let request = ListOffsetsRequest {
        replica_id: CONSUMER_REPLICA_ID,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| ListOffsetsTopic {
                name: name.to_owned(),
                partitions,
            })
            .collect(),
    };
    let timeout: Duration = client.config().request_timeout();
    client
        .request(address, ApiKey::ListOffsets, &request, timeout)
        .await
}

/// Files each partition's answer as found, to retry, or an error.
fn collect(
    queries: &[(TopicPartition, OffsetSpec)],
    response: &ListOffsetsResponse,
    found: &mut BTreeMap<TopicPartition, ListedOffset>,
    retry: &mut Vec<(TopicPartition, OffsetSpec)>,
    last_error: &mut Option<Error>,
) -> Result<()> {
    for (topic_partition, spec) in queries {
        let result = response
            .topics
            .iter()
            .filter(|topic| topic.name == topic_partition.topic)
            .flat_map(|topic| &topic.partitions)
            .find(|partition| partition.partition == topic_partition.partition);
        let Some(result) = result else {
            return Err(Error::UnexpectedResponse {
                address: "partition leader".into(),
                reason: format!("no offset for partition {topic_partition}"),
            });
        };
        if result.error_code.is_ok() {
            found.insert(
                topic_partition.clone(),
                ListedOffset {
                    offset: result.offset,
                    timestamp_ms: result.timestamp,
                },
            );
            continue;
        }
        let error = Error::broker(
            format!("list offsets of {topic_partition}"),
            result.error_code,
        );
        if !result.error_code.is_retriable() {
            return Err(error);
        }
        *last_error = Some(error);
        retry.push((topic_partition.clone(), *spec));
    }
    Ok(())
}
