//! The front end as a table: requests against images, with scripted ids and choices,
//! and the records or the refusal each must give.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::metadata::position::LogPosition;

/// Ids 1, 2, 3, … in order; every choice is `choice` (modulo its bound).
struct Scripted {
    next_id: u128,
    choice: usize,
}

impl Randomness for Scripted {
    fn new_id(&mut self) -> uuid::Uuid {
        self.next_id += 1;
        uuid::Uuid::from_u128(self.next_id)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.choice % bound
    }
}

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

fn image_of(records: Vec<MetadataRecord>) -> MetadataImage {
    let mut image = MetadataImage::default();
    for (index, record) in (1..).zip(&records) {
        let position = LogPosition {
            term: 1,
            leader: 1,
            index,
        };
        image.apply(position, record).unwrap();
    }
    image
}

/// Broker `node_id`'s first registration, unfenced, as the single-node path makes it.
fn broker(node_id: i32) -> MetadataRecord {
    registered(
        node_id,
        "127.0.0.1",
        9092 + node_id as u16 * 100,
        0,
        1,
        false,
    )
}

/// A registration of `node_id` by incarnation `incarnation` (0: the nil id).
fn registered(
    node_id: i32,
    host: &str,
    port: u16,
    incarnation: u128,
    broker_epoch: u64,
    fenced: bool,
) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        node_id,
        host: host.into(),
        port,
        internal_address: String::new(),
        incarnation_id: id(incarnation),
        rack: None,
        broker_epoch,
        fenced,
        external: None,
    }
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A cluster with its id and brokers 1, 2 and 3, nothing else.
fn three_brokers() -> MetadataImage {
    image_of(vec![
        MetadataRecord::ClusterInitialized {
            cluster_id: "c1".into(),
        },
        broker(1),
        broker(2),
        broker(3),
    ])
}

/// [`three_brokers`] with topic `orders` (id 100): three partitions of two replicas,
/// a retention override, and partition 1 led by broker 3 at epoch 4 with only itself
/// in sync.
fn with_orders() -> MetadataImage {
    let mut image = three_brokers();
    let records = [
        MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: id(100),
            config: config(&[("retention.ms", "1000")]),
            replicas: vec![vec![1, 2], vec![2, 3], vec![3, 1]],
        },
        MetadataRecord::PartitionChanged {
            topic_id: id(100),
            partition: 1,
            leader: 3,
            leader_epoch: 4,
            isr: vec![3],
            elr: Vec::new(),
            partition_epoch: None,
        },
    ];
    for record in &records {
        let mut position = image.applied_position().unwrap();
        position.index += 1;
        image.apply(position, record).unwrap();
    }
    image
}

fn create(name: &str, partitions: Option<i32>, replication_factor: Option<i16>) -> MetadataRequest {
    MetadataRequest::CreateTopic(CreateTopic {
        name: name.into(),
        partitions,
        replication_factor,
        config: BTreeMap::new(),
    })
}

fn create_with_config(name: &str, pairs: &[(&str, &str)]) -> MetadataRequest {
    MetadataRequest::CreateTopic(CreateTopic {
        name: name.into(),
        config: config(pairs),
        ..CreateTopic::default()
    })
}

fn created(name: &str, topic_id: u128, replicas: Vec<Vec<i32>>) -> MetadataRecord {
    MetadataRecord::TopicCreated {
        name: name.into(),
        topic_id: id(topic_id),
        config: BTreeMap::new(),
        replicas,
    }
}

fn alter(name: &str, changes: &[(&str, Option<&str>)]) -> MetadataRequest {
    MetadataRequest::AlterTopicConfig {
        name: name.into(),
        changes: changes
            .iter()
            .map(|(key, value)| (key.to_string(), value.map(str::to_owned)))
            .collect(),
    }
}

/// Leader `leader`'s proposal, from leader epoch `leader_epoch` and partition epoch
/// `partition_epoch`, of in-sync set `isr` for partition 1 of `orders`.
fn isr_change(
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
) -> MetadataRequest {
    MetadataRequest::AlterPartition(IsrChange {
        topic_id: uuid::Uuid::from_u128(100),
        partition: 1,
        leader,
        leader_epoch,
        partition_epoch,
        isr: isr.to_vec(),
    })
}

fn bump(name: &str, partition: i32) -> MetadataRequest {
    MetadataRequest::BumpLeaderEpoch {
        name: name.into(),
        partition,
    }
}

enum Expected {
    Records(Vec<MetadataRecord>),
    Refused(fn(&TopicError) -> bool),
}

struct Case {
    what: &'static str,
    image: MetadataImage,
    request: MetadataRequest,
    expected: Expected,
    /// Brokers that may take replicas; `None`: every registered broker.
    live_brokers: Option<BTreeSet<i32>>,
    partition_budgets: BTreeMap<i32, usize>,
    /// Unbounded unless a case says.
    replication_factor_max: i16,
    /// The controller's `auto_leader_rebalance` (on by default).
    auto_leader_rebalance: bool,
}

fn case(
    what: &'static str,
    image: MetadataImage,
    request: MetadataRequest,
    expected: Expected,
) -> Case {
    Case {
        what,
        image,
        request,
        expected,
        live_brokers: None,
        partition_budgets: BTreeMap::new(),
        replication_factor_max: i16::MAX,
        auto_leader_rebalance: true,
    }
}

use Expected::{Records, Refused};

fn cases() -> Vec<Case> {
    let long_name = "x".repeat(TOPIC_NAME_BYTES_MAX + 1);
    vec![
        // Cluster identity and brokers.
        case(
            "a new cluster gets an id",
            MetadataImage::default(),
            MetadataRequest::InitializeCluster,
            Records(vec![MetadataRecord::ClusterInitialized {
                cluster_id: id(1),
            }]),
        ),
        case(
            "a cluster keeps its id",
            three_brokers(),
            MetadataRequest::InitializeCluster,
            Records(vec![]),
        ),
        // Creating topics: placement.
        case(
            "six partitions of three replicas go round the brokers from the chosen start",
            three_brokers(),
            create("events", Some(6), Some(3)),
            Records(vec![created(
                "events",
                1,
                vec![
                    vec![2, 1, 3],
                    vec![3, 2, 1],
                    vec![1, 3, 2],
                    vec![2, 3, 1],
                    vec![3, 1, 2],
                    vec![1, 2, 3],
                ],
            )]),
        ),
        case(
            "defaults: one partition, three replicas when there are three brokers",
            three_brokers(),
            create("events", None, None),
            Records(vec![created("events", 1, vec![vec![2, 1, 3]])]),
        ),
        case(
            "defaults on a single broker: one replica",
            image_of(vec![broker(5)]),
            create("events", None, None),
            Records(vec![created("events", 1, vec![vec![5]])]),
        ),
        Case {
            live_brokers: Some(BTreeSet::from([1, 3])),
            ..case(
                "defaults with two live brokers: two replicas",
                three_brokers(),
                create("events", None, None),
                Records(vec![created("events", 1, vec![vec![3, 1]])]),
            )
        },
        case(
            "the replication factor may equal the broker count",
            image_of(vec![broker(5)]),
            create("events", Some(2), Some(1)),
            Records(vec![created("events", 1, vec![vec![5], vec![5]])]),
        ),
        Case {
            live_brokers: Some(BTreeSet::from([1, 3])),
            ..case(
                "only live brokers take replicas",
                three_brokers(),
                create("events", Some(2), Some(2)),
                Records(vec![created("events", 1, vec![vec![3, 1], vec![1, 3]])]),
            )
        },
        case(
            "config overrides are kept as given",
            three_brokers(),
            create_with_config("events", &[("retention.ms", "5000")]),
            Records(vec![MetadataRecord::TopicCreated {
                name: "events".into(),
                topic_id: id(1),
                config: config(&[("retention.ms", "5000")]),
                replicas: vec![vec![2, 1, 3]],
            }]),
        ),
        // Creating topics: refusals.
        case(
            "a taken name",
            with_orders(),
            create("orders", Some(1), Some(1)),
            Refused(|error| matches!(error, TopicError::AlreadyExists(name) if name == "orders")),
        ),
        case(
            "a name with a slash",
            three_brokers(),
            create("a/b", None, None),
            Refused(
                |error| matches!(error, TopicError::InvalidName(reason) if reason.contains("'/'")),
            ),
        ),
        case(
            "an empty name",
            three_brokers(),
            create("", None, None),
            Refused(|error| matches!(error, TopicError::InvalidName(_))),
        ),
        case(
            "a reserved name",
            three_brokers(),
            create("..", None, None),
            Refused(
                |error| matches!(error, TopicError::InvalidName(reason) if reason.contains("reserved")),
            ),
        ),
        case(
            "a name too long",
            three_brokers(),
            create(&long_name, None, None),
            Refused(|error| matches!(error, TopicError::InvalidName(_))),
        ),
        case(
            "no partitions",
            three_brokers(),
            create("events", Some(0), None),
            Refused(|error| matches!(error, TopicError::InvalidPartitions(_))),
        ),
        case(
            "too many partitions",
            three_brokers(),
            create("events", Some(TOPIC_PARTITIONS_MAX + 1), None),
            Refused(|error| matches!(error, TopicError::InvalidPartitions(_))),
        ),
        case(
            "no replicas",
            three_brokers(),
            create("events", Some(1), Some(0)),
            Refused(|error| matches!(error, TopicError::InvalidReplicationFactor(_))),
        ),
        case(
            "a negative replication factor",
            three_brokers(),
            create("events", Some(1), Some(-1)),
            Refused(|error| matches!(error, TopicError::InvalidReplicationFactor(_))),
        ),
        case(
            "more replicas than brokers",
            three_brokers(),
            create("events", Some(1), Some(4)),
            Refused(|error| {
                matches!(
                    error,
                    TopicError::NotEnoughBrokers {
                        requested: 4,
                        available: 3
                    }
                )
            }),
        ),
        Case {
            replication_factor_max: 1,
            ..case(
                "more replicas than the broker allows",
                three_brokers(),
                create("events", Some(1), Some(2)),
                Refused(|error| {
                    matches!(error, TopicError::InvalidReplicationFactor(message)
                        if message.contains("at most 1"))
                }),
            )
        },
        Case {
            live_brokers: Some(BTreeSet::from([2])),
            ..case(
                "more replicas than live brokers",
                three_brokers(),
                create("events", Some(1), Some(2)),
                Refused(|error| {
                    matches!(
                        error,
                        TopicError::NotEnoughBrokers {
                            requested: 2,
                            available: 1
                        }
                    )
                }),
            )
        },
        case(
            "no brokers at all",
            MetadataImage::default(),
            create("events", None, None),
            Refused(|error| {
                matches!(
                    error,
                    TopicError::NotEnoughBrokers {
                        requested: 1,
                        available: 0
                    }
                )
            }),
        ),
        case(
            "an unknown config key",
            three_brokers(),
            create_with_config("events", &[("retention.mss", "1")]),
            Refused(
                |error| matches!(error, TopicError::InvalidConfig(reason) if reason.contains("retention.mss")),
            ),
        ),
        case(
            "config values that do not fit the broker's defaults",
            three_brokers(),
            create_with_config("events", &[("segment.bytes", "1024")]),
            Refused(|error| matches!(error, TopicError::InconsistentConfig(_))),
        ),
        case(
            "min.insync.replicas above the replication factor",
            image_of(vec![broker(5)]),
            create_with_config("events", &[("min.insync.replicas", "2")]),
            Refused(|error| {
                matches!(error, TopicError::InconsistentConfig(reason)
                    if reason.contains("replication factor (1)"))
            }),
        ),
        case(
            "min.insync.replicas up to the replication factor",
            three_brokers(),
            create_with_config("events", &[("min.insync.replicas", "3")]),
            Records(vec![MetadataRecord::TopicCreated {
                name: "events".into(),
                topic_id: id(1),
                config: config(&[("min.insync.replicas", "3")]),
                replicas: vec![vec![2, 1, 3]],
            }]),
        ),
        case(
            "the request is checked before the image: a taken name with a bad config",
            with_orders(),
            create_with_config("orders", &[("durability", "sometimes")]),
            Refused(|error| matches!(error, TopicError::InvalidConfig(_))),
        ),
        // Partition budgets: broker 1 holds partitions 0 and 2 of `orders`.
        Case {
            partition_budgets: BTreeMap::from([(1, 3)]),
            ..case(
                "new partitions within a broker's budget",
                with_orders(),
                create("events", Some(3), Some(1)),
                Records(vec![created("events", 1, vec![vec![2], vec![3], vec![1]])]),
            )
        },
        Case {
            partition_budgets: BTreeMap::from([(2, 10), (1, 3)]),
            ..case(
                "new partitions beyond a broker's budget",
                with_orders(),
                create("events", Some(6), Some(1)),
                Refused(|error| {
                    matches!(
                        error,
                        TopicError::PartitionLimit {
                            broker: 1,
                            requested: 2,
                            held: 2,
                            limit: 3
                        }
                    )
                }),
            )
        },
        Case {
            partition_budgets: BTreeMap::from([(1, 0)]),
            ..case(
                "a broker over its budget does not stop partitions placed elsewhere",
                with_orders(),
                create("events", Some(1), Some(1)),
                Records(vec![created("events", 1, vec![vec![2]])]),
            )
        },
        // Deleting topics.
        case(
            "delete a topic",
            with_orders(),
            MetadataRequest::DeleteTopic {
                name: "orders".into(),
            },
            Records(vec![MetadataRecord::TopicDeleted { topic_id: id(100) }]),
        ),
        case(
            "delete an unknown topic",
            three_brokers(),
            MetadataRequest::DeleteTopic {
                name: "orders".into(),
            },
            Refused(|error| matches!(error, TopicError::UnknownTopic(name) if name == "orders")),
        ),
        // Changing topic config.
        case(
            "set one override and remove another",
            with_orders(),
            alter(
                "orders",
                &[("segment.bytes", Some("16777216")), ("retention.ms", None)],
            ),
            Records(vec![MetadataRecord::TopicConfigChanged {
                topic_id: id(100),
                config: config(&[("segment.bytes", "16777216")]),
            }]),
        ),
        case(
            "keys not named keep their overrides",
            with_orders(),
            alter("orders", &[("flush.ms", Some("50"))]),
            Records(vec![MetadataRecord::TopicConfigChanged {
                topic_id: id(100),
                config: config(&[("flush.ms", "50"), ("retention.ms", "1000")]),
            }]),
        ),
        case(
            "an invalid value refuses the whole change",
            with_orders(),
            alter(
                "orders",
                &[("flush.ms", Some("50")), ("segment.bytes", Some("1"))],
            ),
            Refused(
                |error| matches!(error, TopicError::InvalidConfig(reason) if reason.contains("segment.bytes")),
            ),
        ),
        case(
            "a change that no longer fits the broker's defaults",
            with_orders(),
            alter("orders", &[("segment.bytes", Some("1024"))]),
            Refused(|error| matches!(error, TopicError::InconsistentConfig(_))),
        ),
        case(
            "a change of min.insync.replicas above the replication factor",
            with_orders(),
            alter("orders", &[("min.insync.replicas", Some("3"))]),
            Refused(|error| {
                matches!(error, TopicError::InconsistentConfig(reason)
                    if reason.contains("replication factor (2)"))
            }),
        ),
        case(
            "a change of min.insync.replicas up to the replication factor",
            with_orders(),
            alter("orders", &[("min.insync.replicas", Some("2"))]),
            Records(vec![MetadataRecord::TopicConfigChanged {
                topic_id: id(100),
                config: config(&[("min.insync.replicas", "2"), ("retention.ms", "1000")]),
            }]),
        ),
        case(
            "change the config of an unknown topic",
            three_brokers(),
            alter("orders", &[("flush.ms", Some("50"))]),
            Refused(|error| matches!(error, TopicError::UnknownTopic(name) if name == "orders")),
        ),
        // Leader epochs.
        case(
            "bump a partition that never changed leader",
            with_orders(),
            bump("orders", 0),
            Records(vec![MetadataRecord::PartitionChanged {
                topic_id: id(100),
                partition: 0,
                leader: 1,
                leader_epoch: 1,
                isr: vec![1, 2],
                elr: Vec::new(),
                partition_epoch: Some(1),
            }]),
        ),
        case(
            "bump keeps the current leader and in-sync set",
            with_orders(),
            bump("orders", 1),
            Records(vec![MetadataRecord::PartitionChanged {
                topic_id: id(100),
                partition: 1,
                leader: 3,
                leader_epoch: 5,
                isr: vec![3],
                elr: Vec::new(),
                partition_epoch: Some(2),
            }]),
        ),
        // In-sync set changes from partition leaders. Partition 1 of `orders` is led by
        // 3 in leader epoch 4, at partition epoch 1, replicas 2 and 3, in sync only 3.
        Case {
            auto_leader_rebalance: false,
            ..case(
                "a leader adds a caught-up replica",
                with_orders(),
                isr_change(3, 4, 1, &[2, 3]),
                Records(vec![MetadataRecord::PartitionChanged {
                    topic_id: id(100),
                    partition: 1,
                    leader: 3,
                    leader_epoch: 4,
                    isr: vec![2, 3],
                    elr: Vec::new(),
                    partition_epoch: Some(2),
                }]),
            )
        },
        case(
            "the preferred replica back in sync leads again (auto_leader_rebalance)",
            with_orders(),
            isr_change(3, 4, 1, &[2, 3]),
            Records(vec![MetadataRecord::PartitionChanged {
                topic_id: id(100),
                partition: 1,
                leader: 2,
                leader_epoch: 5,
                isr: vec![2, 3],
                elr: Vec::new(),
                partition_epoch: Some(2),
            }]),
        ),
        case(
            "the same set again changes nothing",
            with_orders(),
            isr_change(3, 4, 1, &[3]),
            Records(vec![]),
        ),
        case(
            "a change from an older partition epoch",
            with_orders(),
            isr_change(3, 4, 0, &[2, 3]),
            Refused(
                |error| matches!(error, TopicError::StalePartitionState(reason) if reason.contains("partition epoch 1")),
            ),
        ),
        case(
            "a change from a deposed leader",
            with_orders(),
            isr_change(3, 3, 1, &[2, 3]),
            Refused(
                |error| matches!(error, TopicError::StalePartitionState(reason) if reason.contains("epoch 4")),
            ),
        ),
        case(
            "a change from a broker that is not the leader",
            with_orders(),
            isr_change(2, 4, 1, &[2, 3]),
            Refused(|error| matches!(error, TopicError::StalePartitionState(_))),
        ),
        case(
            "a set without its leader",
            with_orders(),
            isr_change(3, 4, 1, &[2]),
            Refused(
                |error| matches!(error, TopicError::PartitionChangeRefused(reason) if reason.contains("holding its leader")),
            ),
        ),
        case(
            "a set with a broker that is no replica",
            with_orders(),
            isr_change(3, 4, 1, &[1, 3]),
            Refused(|error| matches!(error, TopicError::PartitionChangeRefused(_))),
        ),
        case(
            "a set with a replica twice",
            with_orders(),
            isr_change(3, 4, 1, &[3, 3]),
            Refused(|error| matches!(error, TopicError::PartitionChangeRefused(_))),
        ),
        case(
            "a fenced replica cannot join",
            {
                let mut image = with_orders();
                let mut position = image.applied_position().unwrap();
                position.index += 1;
                let fence = MetadataRecord::BrokerFenced {
                    node_id: 2,
                    broker_epoch: 1,
                };
                image.apply(position, &fence).unwrap();
                image
            },
            isr_change(3, 4, 1, &[2, 3]),
            Refused(
                |error| matches!(error, TopicError::PartitionChangeRefused(reason) if reason.contains("fenced")),
            ),
        ),
        case(
            "a change to a partition of an unknown topic",
            three_brokers(),
            isr_change(3, 4, 1, &[3]),
            Refused(|error| matches!(error, TopicError::UnknownTopic(_))),
        ),
        case(
            "bump a partition the topic does not have",
            with_orders(),
            bump("orders", 3),
            Refused(|error| matches!(error, TopicError::UnknownTopic(name) if name == "orders-3")),
        ),
        case(
            "bump a negative partition",
            with_orders(),
            bump("orders", -1),
            Refused(|error| matches!(error, TopicError::UnknownTopic(name) if name == "orders--1")),
        ),
        case(
            "bump a partition of an unknown topic",
            three_brokers(),
            bump("orders", 0),
            Refused(|error| matches!(error, TopicError::UnknownTopic(name) if name == "orders")),
        ),
    ]
}

/// Every row of the table, with defaults from `BrokerConfig::default()`, ids counting
/// from 1 and every choice 1.
#[test]
fn requests_against_images() {
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let defaults = BrokerConfig {
            auto_leader_rebalance: case.auto_leader_rebalance,
            ..BrokerConfig::default()
        };
        let registered: BTreeSet<i32> = case.image.brokers.keys().copied().collect();
        let inputs = Inputs {
            defaults: &defaults,
            live_brokers: case.live_brokers.as_ref().unwrap_or(&registered),
            partition_budgets: &case.partition_budgets,
            replication_factor_max: case.replication_factor_max,
        };
        let mut random = Scripted {
            next_id: 0,
            choice: 1,
        };
        let result = records_for(&case.request, &case.image, &inputs, &mut random);
        let passed = match (&case.expected, &result) {
            (Records(expected), Ok(records)) => expected == records,
            (Refused(expected), Err(error)) => expected(error),
            _ => false,
        };
        if !passed {
            failures.push(format!("{}: got {result:?}", case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The records of a creation, applied, give the topic the request asked for: its
/// partitions led by their first replica at epoch 0, all replicas in sync. And the
/// front end decides on the image it is given, nothing else: the same request against
/// the image after it is refused.
#[test]
fn applied_records_make_the_requested_topic() {
    let defaults = BrokerConfig::default();
    let image = three_brokers();
    let live_brokers: BTreeSet<i32> = image.brokers.keys().copied().collect();
    let inputs = Inputs {
        defaults: &defaults,
        live_brokers: &live_brokers,
        partition_budgets: &BTreeMap::new(),
        replication_factor_max: i16::MAX,
    };
    let mut random = Scripted {
        next_id: 0,
        choice: 2,
    };
    let request = create("events", Some(4), Some(2));
    let records = records_for(&request, &image, &inputs, &mut random).unwrap();
    let mut after = image.clone();
    let mut position = after.applied_position().unwrap();
    position.index += 1;
    after.apply_batch(position, &records).unwrap();
    let topic = after.topic("events").unwrap();
    assert_eq!(topic.topic_id, uuid::Uuid::from_u128(1));
    assert_eq!(topic.partitions.len(), 4);
    for partition in &topic.partitions {
        assert_eq!(partition.leader, partition.replicas[0]);
        assert_eq!(partition.leader_epoch, 0);
        assert_eq!(partition.isr, partition.replicas);
    }
    let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, vec![3, 1, 2, 3]);
    assert!(matches!(
        records_for(&request, &after, &inputs, &mut random),
        Err(TopicError::AlreadyExists(_))
    ));
}

/// When every broker names its rack, a new topic's partitions span as many racks as
/// their replication factor allows; when one does not, placement ignores racks.
#[test]
fn placement_follows_racks_when_every_broker_has_one() {
    let in_rack = |node_id: i32, rack: Option<&str>| MetadataRecord::BrokerRegistered {
        node_id,
        host: "127.0.0.1".into(),
        port: 9000 + node_id as u16,
        internal_address: String::new(),
        incarnation_id: id(node_id as u128),
        rack: rack.map(str::to_owned),
        broker_epoch: 1,
        fenced: false,
        external: None,
    };
    let defaults = BrokerConfig::default();
    let racks = [(1, "a"), (2, "a"), (3, "a"), (4, "b")];
    let image = image_of(
        racks
            .iter()
            .map(|(node_id, rack)| in_rack(*node_id, Some(rack)))
            .collect(),
    );
    let live: BTreeSet<i32> = image.brokers.keys().copied().collect();
    let inputs = Inputs {
        defaults: &defaults,
        live_brokers: &live,
        partition_budgets: &BTreeMap::new(),
        replication_factor_max: i16::MAX,
    };
    let mut random = Scripted {
        next_id: 0,
        choice: 1,
    };
    let records = records_for(
        &create("events", Some(8), Some(2)),
        &image,
        &inputs,
        &mut random,
    )
    .unwrap();
    let [MetadataRecord::TopicCreated { replicas, .. }] = records.as_slice() else {
        panic!("{records:?}");
    };
    for partition in replicas {
        assert!(
            partition.contains(&4),
            "rack b in every partition: {replicas:?}"
        );
    }

    // Broker 4 without a rack: plain round robin, which puts some partitions in rack a
    // alone.
    let mut image = image;
    let mut position = image.applied_position().unwrap();
    position.index += 1;
    image.apply(position, &in_rack(4, None)).unwrap();
    let mut random = Scripted {
        next_id: 0,
        choice: 1,
    };
    let records = records_for(
        &create("events", Some(8), Some(2)),
        &image,
        &inputs,
        &mut random,
    )
    .unwrap();
    let [MetadataRecord::TopicCreated { replicas, .. }] = records.as_slice() else {
        panic!("{records:?}");
    };
    assert!(
        replicas.iter().any(|partition| !partition.contains(&4)),
        "{replicas:?}"
    );
}
