//! The partition logs this broker holds, found through the metadata: the log of a
//! partition it leads, and the effective configuration of a topic (its overrides over
//! the broker's defaults). Read-only: nothing here changes metadata or creates a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::ErrorCode;

use super::view::MetadataView;
use crate::config::BrokerConfig;
use crate::metadata::topic_config::{self, TopicConfig};
use crate::metadata::{PartitionImage, TopicImage};
use crate::replication::fetcher::FetchSettings;
use crate::replication::{PartitionLeader, Replicas};
use crate::storage::{LogManager, PartitionLog, TopicPartition};

/// The partitions this broker holds: the metadata that places them, and their logs.
#[derive(Debug, Clone)]
pub struct Partitions {
    metadata: MetadataView,
    logs: Arc<LogManager>,
    /// The broker's settings: its node id, and the defaults of every topic's config.
    config: Arc<BrokerConfig>,
    /// The partitions this broker leads: the path of every append.
    replicas: Arc<Replicas>,
}

impl Partitions {
    pub fn new(metadata: MetadataView, logs: Arc<LogManager>, config: Arc<BrokerConfig>) -> Self {
        let replicas = Arc::new(Replicas::new(
            config.node_id,
            config.replica_lag_ms,
            metadata.subscribe(),
            FetchSettings::default(),
        ));
        Self {
            metadata,
            logs,
            replicas,
            config,
        }
    }

    /// The partitions this broker leads.
    pub fn replicas(&self) -> &Arc<Replicas> {
        &self.replicas
    }

    pub fn metadata(&self) -> &MetadataView {
        &self.metadata
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// A topic's effective configuration. Its overrides were validated when set.
    pub fn topic_config(&self, topic: &TopicImage) -> TopicConfig {
        self.config_with_overrides(&topic.name, &topic.config)
    }

    /// In-sync replicas `partition` of `topic` needs for acks=all writes, and for its
    /// high watermark to move.
    pub fn min_insync(&self, topic: &TopicImage, partition: &PartitionImage) -> usize {
        self.topic_config(topic)
            .min_insync_for(partition.replicas.len())
    }

    /// The effective configuration of the topic `topic` whose overrides are `overrides`.
    pub fn config_with_overrides(
        &self,
        topic: &str,
        overrides: &BTreeMap<String, String>,
    ) -> TopicConfig {
        topic_config::resolve(&self.config, overrides).unwrap_or_else(|error| {
            tracing::error!(%topic, %error, "stored topic config no longer validates; using defaults");
            topic_config::resolve(&self.config, &Default::default()).expect("defaults are valid")
        })
    }

    /// The log of a partition this broker leads, with its topic and partition as the
    /// current metadata has them. Creates nothing.
    pub fn leader_log(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicImage>, PartitionImage, Arc<PartitionLog>), ErrorCode> {
        let image = self.metadata.current();
        let topic = image
            .topic(topic)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?
            .clone();
        let partition = topic
            .partition(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?
            .clone();
        if partition.leader != self.config.node_id {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let id = TopicPartition::new(topic.name.clone(), partition.partition);
        let log = self.logs.get_of(&id, topic.topic_id).ok_or_else(|| {
            // Kafka's answer for a replica whose log directory is offline.
            match self.logs.offline_reason(&id) {
                Some(_) => ErrorCode::StorageError,
                None => ErrorCode::NotLeaderOrFollower,
            }
        })?;
        Ok((topic, partition, log))
    }

    /// The leader of a partition this broker leads, the path of appends, with its topic
    /// and partition as the current metadata has them.
    pub fn leader(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicImage>, PartitionImage, Arc<PartitionLeader>), ErrorCode> {
        let (topic, partition, log) = self.leader_log(topic, partition)?;
        let id = TopicPartition::new(topic.name.clone(), partition.partition);
        match self.replicas.leader(&id) {
            // The reconciler has not taken up this leadership yet, or another log of
            // the partition (a recovered one) is being taken up.
            Some(leader) if Arc::ptr_eq(leader.log(), &log) => Ok((topic, partition, leader)),
            _ => Err(ErrorCode::NotLeaderOrFollower),
        }
    }
}
