//! The metadata image: an immutable snapshot of brokers and topics. A new image is
//! built for every batch of records and published whole; readers hold an
//! `Arc<MetadataImage>` and never see a half-applied change.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::records::MetadataRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionImage> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.partitions.get(index))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// Records applied so far.
    pub records_applied: u64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    fn topic_by_id(&mut self, topic_id: &str) -> Option<&mut Arc<TopicImage>> {
        self.topics
            .values_mut()
            .find(|topic| topic.topic_id.to_string() == topic_id)
    }

    /// Applies one record. Records that refer to unknown topics are ignored: they can
    /// only follow a deletion, and the log is the authority on order.
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.records_applied += 1;
        match record {
            MetadataRecord::ClusterInitialized { cluster_id } => {
                self.cluster_id = cluster_id.clone()
            }
            MetadataRecord::BrokerRegistered {
                node_id,
                host,
                port,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerInfo {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                    },
                );
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                config,
                replicas,
            } => {
                let partitions = replicas
                    .iter()
                    .enumerate()
                    .map(|(index, replicas)| PartitionImage {
                        partition: index as i32,
                        leader: replicas.first().copied().unwrap_or(-1),
                        leader_epoch: 0,
                        replicas: replicas.clone(),
                        isr: replicas.clone(),
                    })
                    .collect();
                let topic_id = uuid::Uuid::parse_str(topic_id).unwrap_or_default();
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id,
                        config: config.clone(),
                        partitions,
                    }),
                );
            }
            MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                leader,
                leader_epoch,
                isr,
            } => {
                if let Some(topic) = self.topic_by_id(topic_id)
                    && let Some(image) =
                        Arc::make_mut(topic).partitions.get_mut(*partition as usize)
                {
                    image.leader = *leader;
                    image.leader_epoch = *leader_epoch;
                    image.isr = isr.clone();
                }
            }
            MetadataRecord::TopicConfigChanged { topic_id, config } => {
                if let Some(topic) = self.topic_by_id(topic_id) {
                    Arc::make_mut(topic).config = config.clone();
                }
            }
            MetadataRecord::TopicDeleted { topic_id } => {
                self.topics
                    .retain(|_, topic| topic.topic_id.to_string() != *topic_id);
            }
        }
    }
}
