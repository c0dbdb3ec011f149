//! The metadata image: an immutable snapshot of brokers and topics, and the state
//! machine that the metadata log drives. A new image is built for every batch of records
//! and published whole; readers hold an `Arc<MetadataImage>` and never see a
//! half-applied change.
//!
//! The image knows the log position of the last entry it applied and refuses entries at
//! or before it, so a replayed or reordered entry cannot change it twice. A snapshot
//! ([`ImageSnapshot`]) is the image written as the records that rebuild it, with that
//! position; restoring one gives an equal image at the same position. Pure: no I/O, no
//! clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::position::LogPosition;
use super::records::{Endpoint, MetadataRecord};

/// A broker's current registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    /// Where other brokers reach its internal listener (followers fetch from it);
    /// empty in registrations older than replication.
    pub internal_address: String,
    /// The process that registered (nil for registrations older than incarnations).
    pub incarnation_id: uuid::Uuid,
    pub rack: Option<String>,
    /// The epoch of this registration; see [`MetadataRecord::BrokerRegistered`].
    pub broker_epoch: u64,
    /// A fenced broker leads nothing and takes no new replicas.
    pub fenced: bool,
    /// Where clients of its external listener reach it, if it has one.
    pub external: Option<Endpoint>,
}

/// Which of a broker's client listeners a client came in on: it is given every
/// broker's address for that same listener, since it may not reach the others (a
/// client on the Docker host cannot resolve container names; one in a container cannot
/// reach the host's published ports under 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `listen`, advertised as `advertised_host`/`advertised_port`.
    Primary,
    /// `external_listen`, advertised as `external_advertised`.
    External,
}

impl BrokerInfo {
    /// The `(host, port)` a client of `listener` connects to this broker at: a broker
    /// without an external listener is given at its primary address to everyone.
    pub fn address_for(&self, listener: Listener) -> (&str, u16) {
        match (&self.external, listener) {
            (Some(external), Listener::External) => (&external.host, external.port),
            _ => (&self.host, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Eligible leader replicas: outside the in-sync set, yet holding every record
    /// acknowledged with acks=all (see [`MetadataRecord::PartitionChanged`]).
    pub elr: Vec<i32>,
    /// Bumped by every change of leader or in-sync set, so that a change proposed
    /// from an older state of the partition is refused.
    pub partition_epoch: i32,
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
    /// The position of the last entry applied; private so that only [`Self::apply`]
    /// and [`Self::restore`] move it.
    applied_position: Option<LogPosition>,
}

/// A serialized metadata image: the records that rebuild it, how many records had been
/// applied to make it, and the position of the last entry applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSnapshot {
    pub position: Option<LogPosition>,
    pub records_applied: u64,
    pub records: Vec<MetadataRecord>,
}

/// An entry offered to the image at or before the position it has already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("metadata entry at {offered} cannot be applied after {applied}")]
pub struct ApplyError {
    pub applied: LogPosition,
    pub offered: LogPosition,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// Whether `node_id` is registered and not fenced: the brokers that may lead.
    pub fn is_unfenced(&self, node_id: i32) -> bool {
        self.brokers
            .get(&node_id)
            .is_some_and(|broker| !broker.fenced)
    }

    /// Whether any partition is led by `node_id`.
    pub fn leads_any_partition(&self, node_id: i32) -> bool {
        self.topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .any(|partition| partition.leader == node_id)
    }

    /// The position of the last entry applied; `None` before the first.
    pub fn applied_position(&self) -> Option<LogPosition> {
        self.applied_position
    }

    fn topic_by_id(&mut self, topic_id: &str) -> Option<&mut Arc<TopicImage>> {
        self.topics
            .values_mut()
            .find(|topic| topic.topic_id.to_string() == topic_id)
    }

    /// Records that rebuild this image when applied to an empty one (in the order
    /// cluster, brokers, topics, then each partition's leadership): the content of a
    /// snapshot (see [`Self::snapshot`]).
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
                internal_address: broker.internal_address.clone(),
                incarnation_id: broker.incarnation_id.to_string(),
                rack: broker.rack.clone(),
                broker_epoch: broker.broker_epoch,
                fenced: broker.fenced,
                external: broker.external.clone(),
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
                    elr: partition.elr.clone(),
                    partition_epoch: Some(partition.partition_epoch),
                });
            }
        }
        records
    }

    /// The image as a snapshot: its records, record count and position. The
    /// controller id is not part of it: it is the restoring node's view, not metadata.
    pub fn snapshot(&self) -> ImageSnapshot {
        ImageSnapshot {
            position: self.applied_position,
            records_applied: self.records_applied,
            records: self.to_records(),
        }
    }

    /// Rebuilds the image a snapshot was taken of, at the snapshot's position, seen by
    /// a node whose active controller is `controller_id`.
    pub fn restore(snapshot: &ImageSnapshot, controller_id: i32) -> Self {
        let mut image = Self {
            controller_id,
            ..Self::default()
        };
        for record in &snapshot.records {
            image.change(record);
        }
        image.records_applied = snapshot.records_applied;
        image.applied_position = snapshot.position;
        image
    }

    /// Applies one record, the entry at `position`. See [`Self::apply_batch`].
    pub fn apply(
        &mut self,
        position: LogPosition,
        record: &MetadataRecord,
    ) -> Result<(), ApplyError> {
        self.apply_batch(position, std::slice::from_ref(record))
    }

    /// Applies the records of the entry at `position`, in order, and moves the applied
    /// position there. An entry at or before the applied position is refused and
    /// changes nothing. An entry without records (such as a Raft leader's blank entry)
    /// only moves the position.
    pub fn apply_batch(
        &mut self,
        position: LogPosition,
        records: &[MetadataRecord],
    ) -> Result<(), ApplyError> {
        if let Some(applied) = self.applied_position
            && !position.follows(&applied)
        {
            return Err(ApplyError {
                applied,
                offered: position,
            });
        }
        for record in records {
            self.change(record);
        }
        self.applied_position = Some(position);
        Ok(())
    }

    /// Changes the image by one record. Records that refer to unknown topics are
    /// ignored: they can only follow a deletion, and the log is the authority on order.
    fn change(&mut self, record: &MetadataRecord) {
        self.records_applied += 1;
        match record {
            MetadataRecord::ClusterInitialized { cluster_id } => {
                self.cluster_id = cluster_id.clone()
            }
            MetadataRecord::BrokerRegistered {
                node_id,
                host,
                port,
                internal_address,
                incarnation_id,
                rack,
                broker_epoch,
                fenced,
                external,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerInfo {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        internal_address: internal_address.clone(),
                        // Missing in records older than incarnations: the nil id.
                        incarnation_id: uuid::Uuid::parse_str(incarnation_id).unwrap_or_default(),
                        rack: rack.clone(),
                        broker_epoch: *broker_epoch,
                        fenced: *fenced,
                        external: external.clone(),
                    },
                );
            }
            // A fence or unfence decided for an earlier registration of the node does
            // not touch the registration that replaced it.
            MetadataRecord::BrokerFenced {
                node_id,
                broker_epoch,
            } => {
                if let Some(broker) = self.brokers.get_mut(node_id)
                    && broker.broker_epoch == *broker_epoch
                {
                    broker.fenced = true;
                }
            }
            MetadataRecord::BrokerUnfenced {
                node_id,
                broker_epoch,
            } => {
                if let Some(broker) = self.brokers.get_mut(node_id)
                    && broker.broker_epoch == *broker_epoch
                {
                    broker.fenced = false;
                }
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
                        elr: Vec::new(),
                        partition_epoch: 0,
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
                elr,
                partition_epoch,
            } => {
                if let Some(topic) = self.topic_by_id(topic_id)
                    && let Some(image) =
                        Arc::make_mut(topic).partitions.get_mut(*partition as usize)
                {
                    image.leader = *leader;
                    image.leader_epoch = *leader_epoch;
                    image.isr = isr.clone();
                    image.elr = elr.clone();
                    // Records written before partition epochs bump it by one each.
                    image.partition_epoch = partition_epoch.unwrap_or(image.partition_epoch + 1);
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
    use proptest::prelude::*;

    use super::*;

    fn at(index: u64) -> LogPosition {
        LogPosition {
            term: 1,
            leader: 1,
            index,
        }
    }

    fn topic_id(n: u8) -> String {
        uuid::Uuid::from_bytes([n; 16]).to_string()
    }

    /// A registration of `node_id` with incarnation `[node_id; 16]`; odd nodes have a
    /// rack.
    fn registered(
        node_id: i32,
        host: &str,
        port: u16,
        broker_epoch: u64,
        fenced: bool,
    ) -> MetadataRecord {
        MetadataRecord::BrokerRegistered {
            node_id,
            host: host.into(),
            port,
            internal_address: String::new(),
            incarnation_id: uuid::Uuid::from_bytes([node_id as u8; 16]).to_string(),
            rack: (node_id % 2 == 1).then(|| format!("rack-{node_id}")),
            broker_epoch,
            fenced,
            external: None,
        }
    }

    /// A metadata log written before brokers had incarnations, racks, epochs or fencing
    /// still reads: its registrations are unfenced, at epoch 0, with the nil
    /// incarnation and no rack.
    #[test]
    fn registrations_of_older_logs_still_read() {
        let old = r#"{"type":"broker_registered","node_id":1,"host":"127.0.0.1","port":9192}"#;
        let record: MetadataRecord = serde_json::from_str(old).unwrap();
        let image = image_of(&[record]);
        assert_eq!(
            image.brokers[&1],
            BrokerInfo {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9192,
                internal_address: String::new(),
                incarnation_id: uuid::Uuid::nil(),
                rack: None,
                broker_epoch: 0,
                fenced: false,
                external: None,
            }
        );
        assert!(image.is_unfenced(1));
        let unknown = r#"{"type":"broker_registered","node_id":1,"host":"h","port":1,"zone":"a"}"#;
        assert!(serde_json::from_str::<MetadataRecord>(unknown).is_err());
    }

    /// Applies each record as its own entry, at indexes 1, 2, ….
    fn image_of(records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (index, record) in (1..).zip(records) {
            image.apply(at(index), record).unwrap();
        }
        image
    }

    /// An image restored from its snapshot equals the original, whatever history made
    /// it, and is at the same position.
    #[test]
    fn snapshot_restores_the_image() {
        let history = vec![
            MetadataRecord::ClusterInitialized {
                cluster_id: "cluster-a".into(),
            },
            registered(1, "127.0.0.1", 9192, 1, false),
            registered(2, "127.0.0.2", 9292, 1, false),
            registered(3, "127.0.0.3", 9392, 4, true),
            // Of an older registration of broker 2: changes nothing.
            MetadataRecord::BrokerFenced {
                node_id: 2,
                broker_epoch: 0,
            },
            MetadataRecord::BrokerUnfenced {
                node_id: 3,
                broker_epoch: 4,
            },
            MetadataRecord::BrokerFenced {
                node_id: 1,
                broker_epoch: 1,
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
                elr: Vec::new(),
                partition_epoch: None,
            },
            MetadataRecord::TopicConfigChanged {
                topic_id: topic_id(1),
                config: BTreeMap::from([("segment.bytes".into(), "4096".into())]),
            },
            MetadataRecord::TopicDeleted {
                topic_id: topic_id(2),
            },
            registered(1, "127.0.0.1", 9999, 2, true),
        ];
        let mut original = image_of(&history);
        original.controller_id = 2;
        let restored = MetadataImage::restore(&original.snapshot(), 2);
        assert_eq!(restored, original);
        assert_eq!(restored.applied_position(), Some(at(13)));
        assert_eq!(restored.records_applied, 13);
        let fenced: Vec<bool> = restored.brokers.values().map(|b| b.fenced).collect();
        assert_eq!(fenced, [true, false, false]);
        assert_eq!(restored.brokers[&1].broker_epoch, 2);
        assert_eq!(restored.brokers[&3].rack.as_deref(), Some("rack-3"));
        assert!(!restored.is_unfenced(1) && restored.is_unfenced(2));
        assert!(
            !restored.is_unfenced(4),
            "an unknown broker is not unfenced"
        );
        assert_eq!(
            restored.topic("orders").unwrap().partitions[1].leader_epoch,
            3
        );
        assert!(restored.topic("gone").is_none());
        assert!(MetadataImage::default().to_records().is_empty());
    }

    /// An entry at or before the applied position (a replay, a reordering, a term that
    /// goes back) is refused and changes nothing; a batch moves the position once, and
    /// an empty batch only moves the position.
    #[test]
    fn entries_apply_once_and_in_order() {
        let created = MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: topic_id(1),
            config: BTreeMap::new(),
            replicas: vec![vec![1]],
        };
        let deleted = MetadataRecord::TopicDeleted {
            topic_id: topic_id(1),
        };
        let mut image = MetadataImage::default();
        assert_eq!(image.applied_position(), None);
        image
            .apply_batch(at(5), &[created.clone(), deleted.clone()])
            .unwrap();
        assert_eq!(image.applied_position(), Some(at(5)));
        assert_eq!(image.records_applied, 2);
        let before = image.clone();
        let older_term = LogPosition {
            term: 0,
            leader: 1,
            index: 6,
        };
        for offered in [at(5), at(4), older_term] {
            assert_eq!(
                image.apply(offered, &created),
                Err(ApplyError {
                    applied: at(5),
                    offered
                })
            );
            assert_eq!(image, before);
        }
        let next_term = LogPosition {
            term: 2,
            leader: 3,
            index: 6,
        };
        image.apply_batch(next_term, &[]).unwrap();
        assert_eq!(image.applied_position(), Some(next_term));
        assert_eq!(image.records_applied, 2);
        assert!(image.topics.is_empty());
        // A later index, but of an older term.
        assert!(image.apply(at(7), &created).is_err());
        image
            .apply(
                LogPosition {
                    index: 7,
                    ..next_term
                },
                &created,
            )
            .unwrap();
        assert!(image.topic("orders").is_some());
    }

    /// Any record, including ones about topics that do not exist (or no longer do).
    /// Topic ids come from a small pool so that changes and deletions often hit; each
    /// id names one topic, as the front end guarantees by drawing fresh ids.
    fn record() -> impl Strategy<Value = MetadataRecord> {
        let id = 0u8..6;
        let name_of = |id: u8| format!("t{}", id % 4);
        let config = prop::collection::btree_map(
            prop::sample::select(vec!["retention.ms", "segment.bytes", "flush.ms"]),
            "[0-9]{1,4}",
            0..3,
        )
        .prop_map(|config| {
            config
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect::<BTreeMap<_, _>>()
        });
        let replicas = prop::collection::vec(prop::collection::vec(0i32..4, 0..4), 0..5);
        prop_oneof![
            "[a-z0-9]{0,6}"
                .prop_map(|cluster_id| MetadataRecord::ClusterInitialized { cluster_id }),
            (
                0i32..4,
                "[a-z.]{1,8}",
                any::<u16>(),
                any::<u128>(),
                prop::option::of("[a-z0-9-]{0,6}"),
                0u64..4,
                any::<bool>(),
                prop::option::of(("[a-z.]{1,8}", any::<u16>()))
            )
                .prop_map(
                    |(node_id, host, port, incarnation, rack, broker_epoch, fenced, external)| {
                        MetadataRecord::BrokerRegistered {
                            node_id,
                            host,
                            port,
                            internal_address: String::new(),
                            incarnation_id: uuid::Uuid::from_u128(incarnation).to_string(),
                            rack,
                            broker_epoch,
                            fenced,
                            external: external.map(|(host, port)| Endpoint { host, port }),
                        }
                    }
                ),
            (0i32..4, 0u64..4).prop_map(|(node_id, broker_epoch)| {
                MetadataRecord::BrokerFenced {
                    node_id,
                    broker_epoch,
                }
            }),
            (0i32..4, 0u64..4).prop_map(|(node_id, broker_epoch)| {
                MetadataRecord::BrokerUnfenced {
                    node_id,
                    broker_epoch,
                }
            }),
            (id.clone(), config.clone(), replicas).prop_map(move |(id, config, replicas)| {
                MetadataRecord::TopicCreated {
                    name: name_of(id),
                    topic_id: topic_id(id),
                    config,
                    replicas,
                }
            }),
            (
                id.clone(),
                -1i32..5,
                -1i32..4,
                0i32..10,
                prop::collection::vec(0i32..4, 0..4)
            )
                .prop_map(|(id, partition, leader, leader_epoch, isr)| {
                    MetadataRecord::PartitionChanged {
                        topic_id: topic_id(id),
                        partition,
                        leader,
                        leader_epoch,
                        isr,
                        elr: Vec::new(),
                        partition_epoch: None,
                    }
                }),
            (id.clone(), config).prop_map(|(id, config)| MetadataRecord::TopicConfigChanged {
                topic_id: topic_id(id),
                config,
            }),
            id.prop_map(|id| MetadataRecord::TopicDeleted {
                topic_id: topic_id(id),
            }),
        ]
    }

    proptest! {
        /// Random batches of random records, applied at growing positions: the
        /// snapshot, written out and read back as the snapshot file would be, restores
        /// an equal image at the same position; and the restored image goes on applying
        /// exactly like the original.
        #[test]
        fn snapshot_and_restore_round_trip(
            batches in prop::collection::vec(prop::collection::vec(record(), 0..4), 0..30),
            next in record(),
        ) {
            let mut original = MetadataImage { controller_id: 7, ..MetadataImage::default() };
            for (index, batch) in (1..).zip(&batches) {
                original.apply_batch(at(index), batch).unwrap();
            }
            let bytes = serde_json::to_vec(&original.snapshot()).unwrap();
            let snapshot: ImageSnapshot = serde_json::from_slice(&bytes).unwrap();
            let mut restored = MetadataImage::restore(&snapshot, 7);
            prop_assert_eq!(&restored, &original);
            let position = at(batches.len() as u64 + 1);
            original.apply(position, &next).unwrap();
            restored.apply(position, &next).unwrap();
            prop_assert_eq!(&restored, &original);
        }
    }
}
