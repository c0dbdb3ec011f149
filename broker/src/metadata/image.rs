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

    /// Records that rebuild this image when applied to an empty one (in the order
    /// cluster, brokers, topics, then each partition's leadership): the serialized form
    /// of a metadata snapshot. `records_applied` and `controller_id` are not records;
    /// whoever restores a snapshot carries them over.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if !self.cluster_id.is_empty() {
            records.push(MetadataRecord::ClusterInitialized {
                cluster_id: self.cluster_id.clone(),
            });
        }
        for broker in self.brokers.values() {
            records.push(MetadataRecord::BrokerRegistered {
                node_id: broker.node_id,
                host: broker.host.clone(),
                port: broker.port,
            });
        }
        for topic in self.topics.values() {
            let topic_id = topic.topic_id.to_string();
            records.push(MetadataRecord::TopicCreated {
                name: topic.name.clone(),
                topic_id: topic_id.clone(),
                config: topic.config.clone(),
                replicas: topic
                    .partitions
                    .iter()
                    .map(|partition| partition.replicas.clone())
                    .collect(),
            });
            for partition in &topic.partitions {
                records.push(MetadataRecord::PartitionChanged {
                    topic_id: topic_id.clone(),
                    partition: partition.partition,
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    isr: partition.isr.clone(),
                });
            }
        }
        records
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An image rebuilt from its records equals the original, whatever history made it.
    #[test]
    fn records_rebuild_the_image() {
        let topic_id = |n: u8| uuid::Uuid::from_bytes([n; 16]).to_string();
        let history = vec![
            MetadataRecord::ClusterInitialized {
                cluster_id: "cluster-a".into(),
            },
            MetadataRecord::BrokerRegistered {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9192,
            },
            MetadataRecord::BrokerRegistered {
                node_id: 2,
                host: "127.0.0.2".into(),
                port: 9292,
            },
            MetadataRecord::TopicCreated {
                name: "orders".into(),
                topic_id: topic_id(1),
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                replicas: vec![vec![1, 2], vec![2, 1]],
            },
            MetadataRecord::TopicCreated {
                name: "gone".into(),
                topic_id: topic_id(2),
                config: BTreeMap::new(),
                replicas: vec![vec![1]],
            },
            MetadataRecord::PartitionChanged {
                topic_id: topic_id(1),
                partition: 1,
                leader: 1,
                leader_epoch: 3,
                isr: vec![1],
            },
            MetadataRecord::TopicConfigChanged {
                topic_id: topic_id(1),
                config: BTreeMap::from([("segment.bytes".into(), "4096".into())]),
            },
            MetadataRecord::TopicDeleted {
                topic_id: topic_id(2),
            },
            MetadataRecord::BrokerRegistered {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9999,
            },
        ];
        let mut original = MetadataImage::default();
        for record in &history {
            original.apply(record);
        }
        let mut rebuilt = MetadataImage::default();
        for record in original.to_records() {
            rebuilt.apply(&record);
        }
        rebuilt.records_applied = original.records_applied;
        assert_eq!(rebuilt, original);
        assert_eq!(
            rebuilt.topic("orders").unwrap().partitions[1].leader_epoch,
            3
        );
        assert!(MetadataImage::default().to_records().is_empty());
    }
}
