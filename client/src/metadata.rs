//! The metadata cache: topics → partitions → leader, and broker id → address.
//!
//! Every produce, fetch and list-offsets request goes to the leader of its partition,
//! found here. The cache is an immutable [`Snapshot`] behind a lock that is only held
//! to swap it, so lookups never wait for a refresh in progress.
//!
//! A refresh happens:
//! - on a timer (`metadata_refresh_ms`, five minutes by default) for the topics the
//!   cache knows, run by [`Client`](crate::Client);
//! - when a request fails with an error that means the cached leader is wrong
//!   (`NOT_LEADER_OR_FOLLOWER`, `UNKNOWN_TOPIC_OR_PARTITION`, `LEADER_NOT_AVAILABLE`,
//!   an epoch error, or a lost connection);
//! - when a topic is looked up that the cache does not know yet.
//!
//! Concurrent refreshes are coalesced: a caller that waited for another's refresh to
//! finish uses its result instead of asking the cluster again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use fjord_protocol::ApiKey;
use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{MetadataRequest, MetadataResponse};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::pool::ConnectionPool;
use crate::topic_partition::TopicPartition;

/// One immutable view of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Node id → `host:port`.
    pub brokers: BTreeMap<i32, String>,
    pub controller_id: i32,
    pub topics: HashMap<String, TopicEntry>,
    /// When the last response was applied; `None` before the first.
    pub updated_at: Option<Instant>,
}

/// What the cache knows about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicEntry {
    pub topic_id: [u8; 16],
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionEntry>,
}

impl TopicEntry {
    fn entry(&self, partition: i32) -> Option<&PartitionEntry> {
        self.partitions
            .binary_search_by_key(&partition, |entry| entry.partition)
            .ok()
            .map(|index| &self.partitions[index])
    }
}

/// What the cache knows about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionEntry {
    pub partition: i32,
    pub error_code: ErrorCode,
    /// `None` when the partition has no leader right now.
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Where to send requests for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leader {
    pub node_id: i32,
    pub address: String,
    pub leader_epoch: i32,
}

/// Why a partition's leader could not be found in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupFailure {
    UnknownTopic,
    UnknownPartition,
    NoLeader,
}

impl LookupFailure {
    pub(crate) fn into_error(self, topic_partition: &TopicPartition) -> Error {
        let topic = topic_partition.topic.clone();
        let partition = topic_partition.partition;
        match self {
            Self::UnknownTopic => Error::UnknownTopic { topic },
            Self::UnknownPartition => Error::UnknownPartition { topic, partition },
            Self::NoLeader => Error::LeaderNotAvailable { topic, partition },
        }
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            brokers: BTreeMap::new(),
            controller_id: -1,
            topics: HashMap::new(),
            updated_at: None,
        }
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn broker_address(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Snapshot {
    /// The snapshot after applying `response`, the answer to a request for
    /// `requested` topics (`None` = every topic). Brokers are replaced; requested
    /// topics are replaced or, when the broker says they do not exist, removed;
    /// other topics are kept.
    pub(crate) fn apply(
        &self,
        response: &MetadataResponse,
        requested: Option<&[String]>,
        now: Instant,
    ) -> Snapshot {
        let brokers = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id, broker_address(&broker.host, broker.port)))
            .collect();
        let mut topics = match requested {
            None => HashMap::new(),
            Some(names) => {
                let mut topics = self.topics.clone();
                for name in names {
                    topics.remove(name);
                }
                topics
            }
        };
        for topic in &response.topics {
            // A topic-level error (unknown, invalid) means there is nothing to route to.
            if !topic.error_code.is_ok() {
                topics.remove(&topic.name);
                continue;
            }
            // A broker that has not yet applied the latest metadata (one just back from
            // a freeze, say) may name a former leader. Its leader epoch gives it away: a
            // partition of the same topic keeps what the cache knows from a higher epoch
            // (KIP-320), or the client would fetch from the former leader, whose log may
            // be shorter, and reset its position backwards.
            let known = self
                .topics
                .get(&topic.name)
                .filter(|known| known.topic_id == topic.topic_id);
            let mut partitions: Vec<PartitionEntry> = topic
                .partitions
                .iter()
                .map(|partition| {
                    let answered = PartitionEntry {
                        partition: partition.partition,
                        error_code: partition.error_code,
                        leader: (partition.leader >= 0).then_some(partition.leader),
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replicas.clone(),
                        isr: partition.isr.clone(),
                    };
                    match known.and_then(|known| known.entry(partition.partition)) {
                        Some(newer) if newer.leader_epoch > answered.leader_epoch => newer.clone(),
                        _ => answered,
                    }
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            topics.insert(
                topic.name.clone(),
                TopicEntry {
                    topic_id: topic.topic_id,
                    is_internal: topic.is_internal,
                    partitions,
                },
            );
        }
        Snapshot {
            brokers,
            controller_id: response.controller_id,
            topics,
            updated_at: Some(now),
        }
    }

    pub(crate) fn partition(
        &self,
        topic_partition: &TopicPartition,
    ) -> Result<&PartitionEntry, LookupFailure> {
        let topic = self
            .topics
            .get(&topic_partition.topic)
            .ok_or(LookupFailure::UnknownTopic)?;
        topic
            .partitions
            .binary_search_by_key(&topic_partition.partition, |entry| entry.partition)
            .map(|index| &topic.partitions[index])
            .map_err(|_| LookupFailure::UnknownPartition)
    }

    /// The leader of a partition and its address.
    pub(crate) fn leader(&self, topic_partition: &TopicPartition) -> Result<Leader, LookupFailure> {
        let entry = self.partition(topic_partition)?;
        let node_id = entry.leader.ok_or(LookupFailure::NoLeader)?;
        // A leader missing from the broker list is inconsistent metadata, which a later
        // refresh fixes: the same as no leader for now.
        let address = self.brokers.get(&node_id).ok_or(LookupFailure::NoLeader)?;
        Ok(Leader {
            node_id,
            address: address.clone(),
            leader_epoch: entry.leader_epoch,
        })
    }

    /// The partition count of a topic.
    pub(crate) fn partition_count(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).map(|entry| entry.partitions.len())
    }
}

/// The shared, refreshable metadata of one client.
#[derive(Debug)]
pub(crate) struct Metadata {
    snapshot: RwLock<Arc<Snapshot>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl Metadata {
    pub(crate) fn new() -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks the cluster for `topics` (`None` = every topic), updates the cache and
    /// returns the response. Tries the known brokers, then the bootstrap addresses,
    /// and fails with the last error when none answers.
    pub(crate) async fn fetch(
        &self,
        pool: &ConnectionPool,
        config: &ClientConfig,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse> {
        let _refreshing = self.refresh_lock.lock().await;
        self.fetch_locked(pool, config, topics).await
    }

    /// Refreshes `topics` unless a refresh that finished after this call started has
    /// already covered them.
    pub(crate) async fn refresh(
        &self,
        pool: &ConnectionPool,
        config: &ClientConfig,
        topics: Vec<String>,
    ) -> Result<()> {
        let asked_at = Instant::now();
        let _refreshing = self.refresh_lock.lock().await;
        let snapshot = self.snapshot();
        let fresh = snapshot.updated_at.is_some_and(|at| at >= asked_at);
        if fresh
            && topics
                .iter()
                .all(|topic| snapshot.topics.contains_key(topic))
        {
            return Ok(());
        }
        self.fetch_locked(pool, config, Some(topics))
            .await
            .map(drop)
    }

    /// The topics the cache knows, for the periodic refresh.
    pub(crate) fn known_topics(&self) -> Vec<String> {
        self.snapshot().topics.keys().cloned().collect()
    }

    async fn fetch_locked(
        &self,
        pool: &ConnectionPool,
        config: &ClientConfig,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse> {
        let request = MetadataRequest { topics };
        let mut last_error = None;
        for address in candidate_addresses(&self.snapshot(), &config.bootstrap) {
            let attempt = async {
                let connection = pool.get(&address).await?;
                connection
                    .request::<_, MetadataResponse>(
                        ApiKey::Metadata,
                        &request,
                        config.request_timeout(),
                    )
                    .await
            };
            match attempt.await {
                Ok(response) => {
                    let mut current = self
                        .snapshot
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let updated =
                        current.apply(&response, request.topics.as_deref(), Instant::now());
                    *current = Arc::new(updated);
                    return Ok(response);
                }
                Err(error) => {
                    tracing::debug!(address, %error, "metadata request failed");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Config("no broker address known".into())))
    }
}

/// Known brokers first (they were alive recently), then bootstrap addresses, each once.
fn candidate_addresses(snapshot: &Snapshot, bootstrap: &[String]) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    for address in snapshot.brokers.values().chain(bootstrap) {
        if !addresses.contains(address) {
            addresses.push(address.clone());
        }
    }
    addresses
}

#[cfg(test)]
mod tests {
    use fjord_protocol::messages::{BrokerMetadata, PartitionMetadata, TopicMetadata};

    use super::*;

    fn topic(name: &str, error_code: ErrorCode, leaders: &[i32]) -> TopicMetadata {
        TopicMetadata {
            error_code,
            name: name.into(),
            topic_id: [7; 16],
            is_internal: false,
            partitions: leaders
                .iter()
                .enumerate()
                .rev()
                .map(|(index, leader)| PartitionMetadata {
                    error_code: ErrorCode::None,
                    partition: index as i32,
                    leader: *leader,
                    leader_epoch: 3,
                    replicas: vec![*leader],
                    isr: vec![*leader],
                })
                .collect(),
        }
    }

    fn response(topics: Vec<TopicMetadata>) -> MetadataResponse {
        MetadataResponse {
            cluster_id: "c".into(),
            controller_id: 1,
            brokers: vec![
                BrokerMetadata {
                    node_id: 1,
                    host: "10.0.0.1".into(),
                    port: 9192,
                },
                BrokerMetadata {
                    node_id: 2,
                    host: "::1".into(),
                    port: 9193,
                },
            ],
            topics,
        }
    }

    /// Leaders resolve to broker addresses; a leaderless partition, a missing partition
    /// and a missing topic are told apart.
    #[test]
    fn leader_lookup() {
        let snapshot = Snapshot::default().apply(
            &response(vec![topic("orders", ErrorCode::None, &[1, 2, -1])]),
            None,
            Instant::now(),
        );
        let leader = snapshot.leader(&TopicPartition::new("orders", 0)).unwrap();
        assert_eq!(leader.address, "10.0.0.1:9192");
        assert_eq!(leader.leader_epoch, 3);
        let second = snapshot.leader(&TopicPartition::new("orders", 1)).unwrap();
        assert_eq!(second.address, "[::1]:9193");
        assert_eq!(
            snapshot.leader(&TopicPartition::new("orders", 2)),
            Err(LookupFailure::NoLeader)
        );
        assert_eq!(
            snapshot.leader(&TopicPartition::new("orders", 3)),
            Err(LookupFailure::UnknownPartition)
        );
        assert_eq!(
            snapshot.leader(&TopicPartition::new("other", 0)),
            Err(LookupFailure::UnknownTopic)
        );
        assert_eq!(snapshot.partition_count("orders"), Some(3));
    }

    /// A partial refresh replaces the topics it asked for, drops the ones the broker
    /// says are unknown and keeps the others.
    #[test]
    fn partial_refresh_merges() {
        let now = Instant::now();
        let first = Snapshot::default().apply(
            &response(vec![
                topic("a", ErrorCode::None, &[1]),
                topic("b", ErrorCode::None, &[1]),
                topic("c", ErrorCode::None, &[1]),
            ]),
            None,
            now,
        );
        let second = first.apply(
            &response(vec![
                topic("a", ErrorCode::None, &[2, 2]),
                topic("b", ErrorCode::UnknownTopicOrPartition, &[]),
            ]),
            Some(&["a".to_owned(), "b".to_owned()]),
            now,
        );
        assert_eq!(second.partition_count("a"), Some(2));
        assert_eq!(second.partition_count("b"), None);
        assert_eq!(second.partition_count("c"), Some(1));
    }

    /// An answer naming an older leader epoch (from a broker behind on the metadata)
    /// does not replace what the cache knows of a partition; a newer one does, and a
    /// re-created topic (another id) starts afresh.
    #[test]
    fn older_leader_epochs_do_not_replace_newer_ones() {
        let now = Instant::now();
        let with_epoch = |leader: i32, epoch: i32, id: u8| {
            let mut orders = topic("orders", ErrorCode::None, &[leader]);
            orders.partitions[0].leader_epoch = epoch;
            orders.topic_id = [id; 16];
            response(vec![orders])
        };
        let names = ["orders".to_owned()];
        let leader_of = |snapshot: &Snapshot| {
            let leader = snapshot.leader(&TopicPartition::new("orders", 0)).unwrap();
            (leader.node_id, leader.leader_epoch)
        };
        let newer = Snapshot::default().apply(&with_epoch(2, 5, 7), None, now);
        let stale = newer.apply(&with_epoch(1, 4, 7), Some(&names), now);
        assert_eq!(leader_of(&stale), (2, 5));
        let stale = newer.apply(&with_epoch(1, 4, 7), None, now);
        assert_eq!(leader_of(&stale), (2, 5));
        let moved = newer.apply(&with_epoch(1, 6, 7), Some(&names), now);
        assert_eq!(leader_of(&moved), (1, 6));
        let recreated = newer.apply(&with_epoch(1, 0, 8), Some(&names), now);
        assert_eq!(leader_of(&recreated), (1, 0));
    }

    /// Candidates list known brokers before bootstrap addresses, without duplicates.
    #[test]
    fn candidates_are_unique() {
        let snapshot = Snapshot::default().apply(&response(vec![]), Some(&[]), Instant::now());
        let candidates = candidate_addresses(&snapshot, &["10.0.0.1:9192".into(), "seed:1".into()]);
        assert_eq!(candidates, ["10.0.0.1:9192", "[::1]:9193", "seed:1"]);
    }
}
