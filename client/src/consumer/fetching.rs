//! The consumer's fetch pipeline: one fetch per leader in flight, each in its own
//! task, its outcome delivered over a bounded channel and applied to the partitions'
//! positions (unless a seek made it stale).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use fjord_protocol::messages::{
    CONSUMER_REPLICA_ID, FetchPartition, FetchRequest, FetchResponse, FetchTopic,
};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::time::Instant;

use super::{Consumer, decode, reset_spec};
use crate::error::{Error, Result, code_invalidates_metadata};
use crate::topic_partition::TopicPartition;

/// Most fetches in flight at once (one per leader); also the capacity of the channel
/// their outcomes arrive on, so a finished fetch never waits to report.
pub(super) const FETCHES_IN_FLIGHT_MAX: usize = 64;

/// A fetch's partitions (with the generation each was fetched under) and its answer.
#[derive(Debug)]
pub(super) struct FetchOutcome {
    address: String,
    partitions: Vec<(TopicPartition, u64)>,
    result: Result<FetchResponse>,
}

impl Consumer {
    /// Starts one fetch per leader that has fetchable partitions and none in flight.
    pub(super) async fn start_fetches(&mut self) {
        if self.buffered.len() >= self.config.buffered_records_max {
            return;
        }
        let now = Instant::now();
        let snapshot = self.client.snapshot();
        let mut by_leader: BTreeMap<String, Vec<(TopicPartition, FetchPartition, u64)>> =
            BTreeMap::new();
        let mut stale_topics = BTreeSet::new();
        for (partition, state) in &mut self.partitions {
            if state.position.is_none()
                || state.in_flight
                || state.retry_at.is_some_and(|at| at > now)
            {
                continue;
            }
            let leader = match snapshot.leader(partition) {
                Ok(leader) => leader,
                Err(failure) => {
                    tracing::debug!(%partition, ?failure, "no leader to fetch from");
                    stale_topics.insert(partition.topic.clone());
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = Some(now + self.backoff.delay(state.failures));
                    continue;
                }
            };
            let broker_ready = self
                .broker_backoff
                .get(&leader.address)
                .is_none_or(|(_, at)| *at <= now);
            if self.fetches.contains_key(&leader.address) || !broker_ready {
                continue;
            }
            by_leader.entry(leader.address).or_default().push((
                partition.clone(),
                FetchPartition {
                    partition: partition.partition,
                    current_leader_epoch: leader.leader_epoch,
                    fetch_offset: state.fetch_offset,
                    partition_max_bytes: self.config.partition_fetch_bytes_max,
                },
                state.generation,
            ));
        }
        if !stale_topics.is_empty() {
            self.client
                .refresh_metadata_quietly(stale_topics.into_iter().collect())
                .await;
        }
        for (address, partitions) in by_leader {
            if self.fetches.len() >= FETCHES_IN_FLIGHT_MAX {
                break;
            }
            self.spawn_fetch(address, partitions);
        }
    }

    fn spawn_fetch(
        &mut self,
        address: String,
        partitions: Vec<(TopicPartition, FetchPartition, u64)>,
    ) {
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        let mut fetched = Vec::with_capacity(partitions.len());
        for (partition, fetch, generation) in partitions {
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.in_flight = true;
            }
            topics
                .entry(partition.topic.clone())
                .or_default()
                .push(fetch);
            fetched.push((partition, generation));
        }
        let request = FetchRequest {
            replica_id: CONSUMER_REPLICA_ID,
            max_wait_ms: self.config.fetch_wait_ms as i32,
            min_bytes: self.config.fetch_bytes_min,
            max_bytes: self.config.fetch_bytes_max,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| FetchTopic { name, partitions })
                .collect(),
        };
        // The broker may hold the request for fetch_wait_ms before it even starts to
        // answer.
        let timeout = self.client.config().request_timeout()
            + Duration::from_millis(self.config.fetch_wait_ms);
        let client = self.client.clone();
        let outcomes = self.outcome_sender.clone();
        let task_address = address.clone();
        let task = tokio::spawn(async move {
            let result = client
                .request(&task_address, ApiKey::Fetch, &request, timeout)
                .await;
            let outcome = FetchOutcome {
                address: task_address,
                partitions: fetched,
                result,
            };
            if outcomes.send(outcome).await.is_err() {
                tracing::trace!("consumer dropped before its fetch finished");
            }
        });
        self.fetches.insert(address, task.abort_handle());
    }

    pub(super) async fn handle_outcome(&mut self, outcome: FetchOutcome) -> Result<()> {
        self.fetches.remove(&outcome.address);
        for (partition, _) in &outcome.partitions {
            if let Some(state) = self.partitions.get_mut(partition) {
                state.in_flight = false;
            }
        }
        let response = match outcome.result {
            Ok(response) => {
                self.broker_backoff.remove(&outcome.address);
                response
            }
            Err(error) if error.is_retriable() => {
                tracing::debug!(address = outcome.address, %error, "fetch failed; backing off");
                let now = Instant::now();
                let entry = self
                    .broker_backoff
                    .entry(outcome.address)
                    .or_insert((0, now));
                entry.0 = entry.0.saturating_add(1);
                entry.1 = now + self.backoff.delay(entry.0);
                if error.invalidates_metadata() {
                    let topics: BTreeSet<String> = outcome
                        .partitions
                        .iter()
                        .map(|(partition, _)| partition.topic.clone())
                        .collect();
                    self.client
                        .refresh_metadata_quietly(topics.into_iter().collect())
                        .await;
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let generations: HashMap<TopicPartition, u64> = outcome.partitions.into_iter().collect();
        let mut stale_topics = BTreeSet::new();
        for topic in response.topics {
            for result in topic.partitions {
                let partition = TopicPartition::new(topic.name.clone(), result.partition);
                let Some(generation) = generations.get(&partition) else {
                    continue;
                };
                let Some(state) = self.partitions.get_mut(&partition) else {
                    continue;
                };
                if state.generation != *generation {
                    continue;
                }
                match result.error_code {
                    ErrorCode::None => {
                        let buffered_before = self.buffered.len();
                        state.fetch_offset = decode::decode_records(
                            &partition,
                            result.records,
                            state.fetch_offset,
                            &mut self.buffered,
                        )?;
                        state.buffered_records += self.buffered.len() - buffered_before;
                        if state.buffered_records == 0 {
                            state.position = Some(state.fetch_offset);
                        }
                        state.failures = 0;
                    }
                    ErrorCode::OffsetOutOfRange => {
                        let offset = state.fetch_offset;
                        match reset_spec(self.config.auto_offset_reset) {
                            Some(spec) => {
                                tracing::debug!(%partition, offset, ?spec, "offset out of range; resetting");
                                state.position = None;
                                state.pending_reset = Some(spec);
                                state.generation += 1;
                            }
                            None => {
                                return Err(Error::OffsetOutOfRange {
                                    topic: partition.topic,
                                    partition: partition.partition,
                                    offset,
                                });
                            }
                        }
                    }
                    code if code.is_retriable() || code_invalidates_metadata(code) => {
                        tracing::debug!(%partition, %code, "fetch refused; retrying");
                        if code_invalidates_metadata(code) {
                            stale_topics.insert(partition.topic.clone());
                        }
                        state.failures = state.failures.saturating_add(1);
                        state.retry_at = Some(Instant::now() + self.backoff.delay(state.failures));
                    }
                    code => {
                        return Err(Error::broker(format!("fetch from {partition}"), code));
                    }
                }
            }
        }
        if !stale_topics.is_empty() {
            self.client
                .refresh_metadata_quietly(stale_topics.into_iter().collect())
                .await;
        }
        Ok(())
    }

    /// The earliest time a backed-off partition or broker may be tried again.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        let partitions = self.partitions.values().filter_map(|state| state.retry_at);
        let brokers = self.broker_backoff.values().map(|(_, at)| *at);
        partitions.chain(brokers).min()
    }
}
