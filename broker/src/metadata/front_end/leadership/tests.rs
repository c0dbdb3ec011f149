//! Leadership as a table: broker requests (fence, unfence, register an incarnation)
//! against images, and the records each must give; and placement skipping fenced
//! brokers.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{
    BrokerRegistration, CreateTopic, Inputs, MetadataRequest, Randomness, TopicError, records_for,
};
use super::NO_LEADER;
use crate::config::BrokerConfig;
use crate::metadata::image::MetadataImage;
use crate::metadata::position::LogPosition;
use crate::metadata::records::MetadataRecord;

fn id(n: u128) -> String {
    uuid::Uuid::from_u128(n).to_string()
}

/// Broker `node_id`'s registration by incarnation `node_id`, at epoch 1.
fn broker(node_id: i32, fenced: bool) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        node_id,
        host: "127.0.0.1".into(),
        port: 9000 + node_id as u16,
        internal_address: String::new(),
        incarnation_id: id(node_id as u128),
        rack: None,
        broker_epoch: 1,
        fenced,
        external: None,
    }
}

fn changed(partition: i32, leader: i32, leader_epoch: i32, isr: &[i32]) -> MetadataRecord {
    changed_elr(partition, leader, leader_epoch, isr, &[])
}

/// A change that also sets the eligible leader replicas.
fn changed_elr(
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    isr: &[i32],
    elr: &[i32],
) -> MetadataRecord {
    MetadataRecord::PartitionChanged {
        topic_id: id(100),
        partition,
        leader,
        leader_epoch,
        isr: isr.to_vec(),
        elr: elr.to_vec(),
        partition_epoch: None,
    }
}

/// Brokers 1, 2, 3 (unfenced unless listed in `fenced`) and topic `orders` (id 100)
/// with the replica lists of `replicas`, then `more` applied.
fn image(fenced: &[i32], replicas: Vec<Vec<i32>>, more: Vec<MetadataRecord>) -> MetadataImage {
    let mut records: Vec<MetadataRecord> = (1..=3)
        .map(|node| broker(node, fenced.contains(&node)))
        .collect();
    records.push(MetadataRecord::TopicCreated {
        name: "orders".into(),
        topic_id: id(100),
        config: BTreeMap::new(),
        replicas,
    });
    records.extend(more);
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

/// Topic `orders` lets a replica outside the in-sync set lead.
fn unclean_allowed() -> MetadataRecord {
    MetadataRecord::TopicConfigChanged {
        topic_id: id(100),
        config: BTreeMap::from([(
            "unclean.leader.election.enable".to_owned(),
            "true".to_owned(),
        )]),
    }
}

/// Only a leader from outside the in-sync set, alone in its new set, counts as an
/// unclean election; a clean one and a preferred replica's return do not.
#[test]
fn unclean_elections_are_counted() {
    let before = image(&[], vec![vec![1, 2, 3]], vec![changed(0, 1, 2, &[1, 3])]);
    let unclean = changed(0, 2, 3, &[2]);
    let clean = changed(0, 3, 3, &[3]);
    let preferred_back = changed(0, 2, 3, &[1, 2, 3]);
    assert_eq!(super::unclean_elections(&before, &[unclean]), 1);
    assert_eq!(super::unclean_elections(&before, &[clean]), 0);
    assert_eq!(super::unclean_elections(&before, &[preferred_back]), 0);
    let eligible = image(
        &[],
        vec![vec![1, 2, 3]],
        vec![changed_elr(0, 1, 2, &[1], &[2])],
    );
    let from_elr = changed_elr(0, 2, 3, &[2], &[1]);
    assert_eq!(super::unclean_elections(&eligible, &[from_elr]), 0);
}

fn fence(node_id: i32, broker_epoch: u64) -> MetadataRequest {
    MetadataRequest::FenceBroker {
        node_id,
        broker_epoch,
    }
}

fn unfence(node_id: i32, restore_preferred_leaders: bool) -> MetadataRequest {
    MetadataRequest::UnfenceBroker {
        node_id,
        broker_epoch: 1,
        restore_preferred_leaders,
    }
}

fn fenced(node_id: i32) -> MetadataRecord {
    MetadataRecord::BrokerFenced {
        node_id,
        broker_epoch: 1,
    }
}

fn unfenced(node_id: i32) -> MetadataRecord {
    MetadataRecord::BrokerUnfenced {
        node_id,
        broker_epoch: 1,
    }
}

fn register(node_id: i32, incarnation: u128) -> MetadataRequest {
    MetadataRequest::RegisterIncarnation(BrokerRegistration {
        node_id,
        incarnation_id: uuid::Uuid::from_u128(incarnation),
        host: "127.0.0.1".into(),
        port: 9000 + node_id as u16,
        internal_address: String::new(),
        rack: Some("r1".into()),
        external: None,
        held_replicas: None,
    })
}

/// A new process of `node_id` that found the directories of the partitions `held` of
/// topic `orders` only.
fn register_holding(node_id: i32, incarnation: u128, held: &[i32]) -> MetadataRequest {
    let MetadataRequest::RegisterIncarnation(mut registration) = register(node_id, incarnation)
    else {
        unreachable!("register gives a registration");
    };
    registration.held_replicas = Some(
        held.iter()
            .map(|&partition| (uuid::Uuid::from_u128(100), partition))
            .collect(),
    );
    MetadataRequest::RegisterIncarnation(registration)
}

/// A leader's in-sync set change for partition 0 of `orders`.
fn alter(leader: i32, leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> MetadataRequest {
    MetadataRequest::AlterPartition(super::super::IsrChange {
        topic_id: uuid::Uuid::from_u128(100),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
        isr: isr.to_vec(),
    })
}

/// Broker `node_id`'s registration by incarnation `incarnation`, at epoch 2.
fn registered_again(node_id: i32, incarnation: u128) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        node_id,
        host: "127.0.0.1".into(),
        port: 9000 + node_id as u16,
        internal_address: String::new(),
        incarnation_id: id(incarnation),
        rack: Some("r1".into()),
        broker_epoch: 2,
        fenced: true,
        external: None,
    }
}

struct Never;

impl Randomness for Never {
    fn new_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::from_u128(500)
    }

    fn below(&mut self, _bound: usize) -> usize {
        0
    }
}

fn decide(request: &MetadataRequest, image: &MetadataImage) -> Vec<MetadataRecord> {
    let defaults = BrokerConfig::default();
    let live_brokers: BTreeSet<i32> = image.brokers.keys().copied().collect();
    let inputs = Inputs {
        defaults: &defaults,
        live_brokers: &live_brokers,
        partition_budgets: &BTreeMap::new(),
        replication_factor_max: i16::MAX,
    };
    records_for(request, image, &inputs, &mut Never).unwrap()
}

/// Three replicas everywhere, partition `p` preferring broker `p + 1`.
fn three_by_three() -> Vec<Vec<i32>> {
    vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]
}

#[test]
fn leadership_table() {
    let cases: Vec<(&str, MetadataImage, MetadataRequest, Vec<MetadataRecord>)> = vec![
        (
            "fencing a leader elects the next in-sync replica in replica order, bumps the \
             epoch and drops it from the in-sync sets it follows in too",
            image(&[], three_by_three(), vec![]),
            fence(1, 1),
            vec![
                fenced(1),
                changed(0, 2, 1, &[2, 3]),
                changed(1, 2, 0, &[2, 3]),
                changed(2, 3, 0, &[3, 2]),
            ],
        ),
        (
            "a fenced or out-of-sync replica is passed over",
            image(
                &[2],
                vec![vec![1, 2, 3, 4]],
                vec![changed(0, 1, 3, &[4, 1, 2, 3])],
            ),
            fence(1, 1),
            vec![fenced(1), changed(0, 3, 4, &[4, 2, 3])],
        ),
        (
            "no live in-sync replica: leaderless, epoch bumped, in-sync set kept",
            image(&[], vec![vec![1, 2]], vec![changed(0, 1, 2, &[1])]),
            fence(1, 1),
            vec![fenced(1), changed(0, NO_LEADER, 3, &[1])],
        ),
        (
            "unclean election on: no live in-sync replica, the first live replica leads alone",
            image(
                &[],
                vec![vec![1, 2]],
                vec![changed(0, 1, 2, &[1]), unclean_allowed()],
            ),
            fence(1, 1),
            vec![fenced(1), changed(0, 2, 3, &[2])],
        ),
        (
            "unclean election on: a returning replica leads a partition whose in-sync \
             replicas are all fenced",
            image(
                &[1, 2],
                vec![vec![1, 2]],
                vec![changed(0, NO_LEADER, 3, &[1]), unclean_allowed()],
            ),
            unfence(2, false),
            vec![unfenced(2), changed(0, 2, 4, &[2])],
        ),
        (
            "unclean election off: a returning replica outside the in-sync set waits",
            image(
                &[1, 2],
                vec![vec![1, 2]],
                vec![changed(0, NO_LEADER, 3, &[1])],
            ),
            unfence(2, false),
            vec![unfenced(2)],
        ),
        (
            "every other in-sync replica fenced: leaderless, in-sync set kept whole",
            image(&[1], vec![vec![2, 1]], vec![changed(0, 2, 0, &[2, 1])]),
            fence(2, 1),
            vec![fenced(2), changed(0, NO_LEADER, 1, &[2, 1])],
        ),
        (
            "a broker that holds no replica: only the fence",
            image(&[], vec![vec![1, 2]], vec![]),
            fence(3, 1),
            vec![fenced(3)],
        ),
        (
            "a fence of an older registration changes nothing",
            image(&[], three_by_three(), vec![]),
            fence(1, 0),
            vec![],
        ),
        (
            "fencing a fenced broker changes nothing",
            image(&[1], three_by_three(), vec![]),
            fence(1, 1),
            vec![],
        ),
        (
            "fencing an unknown broker changes nothing",
            image(&[], three_by_three(), vec![]),
            fence(9, 1),
            vec![],
        ),
        (
            "unfencing restores the preferred leader where it is in sync",
            image(
                &[1],
                three_by_three(),
                vec![
                    changed(0, 2, 1, &[2, 3, 1]),
                    changed(1, 2, 0, &[2, 3]),
                    changed(2, 3, 0, &[3, 2, 1]),
                ],
            ),
            unfence(1, true),
            vec![unfenced(1), changed(0, 1, 2, &[2, 3, 1])],
        ),
        (
            "without rebalancing the leaders stay",
            image(&[1], three_by_three(), vec![changed(0, 2, 1, &[2, 3, 1])]),
            unfence(1, false),
            vec![unfenced(1)],
        ),
        (
            "not in sync: the preferred leader waits",
            image(&[1], three_by_three(), vec![changed(0, 2, 1, &[2, 3])]),
            unfence(1, true),
            vec![unfenced(1)],
        ),
        (
            "a leaderless partition gets its in-sync replica back, rebalancing or not",
            image(
                &[1],
                vec![vec![2, 1], vec![1, 2]],
                vec![
                    changed(0, NO_LEADER, 3, &[1]),
                    changed(1, NO_LEADER, 1, &[1]),
                ],
            ),
            unfence(1, false),
            vec![unfenced(1), changed(0, 1, 4, &[1]), changed(1, 1, 2, &[1])],
        ),
        (
            "a follower that leaves a set falling below min.insync.replicas (2) becomes an \
             eligible leader replica",
            image(&[], vec![vec![1, 2, 3]], vec![changed(0, 1, 2, &[1, 3])]),
            fence(3, 1),
            vec![fenced(3), changed_elr(0, 1, 2, &[1], &[3])],
        ),
        (
            "a follower that leaves a set still at min.insync.replicas does not",
            image(&[], vec![vec![1, 2, 3]], vec![]),
            fence(3, 1),
            vec![fenced(3), changed(0, 1, 0, &[1, 2])],
        ),
        (
            "the last in-sync replica fenced: an eligible leader replica leads alone, and \
             the old leader becomes eligible in its place",
            image(
                &[],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, 1, 2, &[1], &[3])],
            ),
            fence(1, 1),
            vec![fenced(1), changed_elr(0, 3, 3, &[3], &[1])],
        ),
        (
            "an eligible leader replica returning leads a leaderless partition",
            image(
                &[1, 3],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, NO_LEADER, 3, &[1], &[3])],
            ),
            unfence(3, false),
            vec![unfenced(3), changed_elr(0, 3, 4, &[3], &[1])],
        ),
        (
            "a replica that was never eligible waits, unclean election off",
            image(
                &[1, 2, 3],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, NO_LEADER, 3, &[1], &[3])],
            ),
            unfence(2, false),
            vec![unfenced(2)],
        ),
        (
            "the in-sync set back at min.insync.replicas empties the eligible leaders",
            image(
                &[],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, 1, 2, &[1], &[3])],
            ),
            alter(1, 2, 1, &[1, 2]),
            vec![changed(0, 1, 2, &[1, 2])],
        ),
        (
            "an eligible leader replica back in sync leaves the eligible leaders",
            image(
                &[],
                vec![vec![1, 2, 3]],
                vec![
                    MetadataRecord::TopicConfigChanged {
                        topic_id: id(100),
                        config: BTreeMap::from([(
                            "min.insync.replicas".to_owned(),
                            "3".to_owned(),
                        )]),
                    },
                    changed_elr(0, 1, 2, &[1], &[2, 3]),
                ],
            ),
            alter(1, 2, 1, &[1, 3]),
            vec![changed_elr(0, 1, 2, &[1, 3], &[2])],
        ),
        (
            "a new process without the directory of a partition whose last in-sync \
             replica it is: it leaves the set, and the eligible leader leads",
            image(
                &[1],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, NO_LEADER, 3, &[1], &[3])],
            ),
            register_holding(1, 11, &[]),
            vec![registered_again(1, 11), changed(0, 3, 4, &[3])],
        ),
        (
            "... and with no eligible leader alive, the partition stays leaderless with an \
             empty in-sync set: a replica without the data never leads",
            image(
                &[1, 3],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, NO_LEADER, 3, &[1], &[3])],
            ),
            register_holding(1, 11, &[]),
            vec![
                registered_again(1, 11),
                changed_elr(0, NO_LEADER, 3, &[], &[3]),
            ],
        ),
        (
            "a new process without the directory of a partition it is an eligible leader \
             of: no longer eligible",
            image(
                &[3],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, 1, 2, &[1], &[3])],
            ),
            register_holding(3, 33, &[]),
            vec![registered_again(3, 33), changed(0, 1, 2, &[1])],
        ),
        (
            "a new process that found the partition's directory: only the usual move",
            image(
                &[1],
                vec![vec![1, 2, 3]],
                vec![changed_elr(0, NO_LEADER, 3, &[1], &[3])],
            ),
            register_holding(1, 11, &[0]),
            vec![registered_again(1, 11)],
        ),
        (
            "a partition of one replica has no other copy: its replica is not taken out",
            image(&[1], vec![vec![1]], vec![changed(0, NO_LEADER, 1, &[1])]),
            register_holding(1, 11, &[]),
            vec![registered_again(1, 11)],
        ),
        (
            "unfencing an unfenced broker changes nothing",
            image(&[], three_by_three(), vec![]),
            unfence(1, true),
            vec![],
        ),
        (
            "a new broker registers fenced at epoch 1",
            image(&[], three_by_three(), vec![]),
            register(4, 44),
            vec![MetadataRecord::BrokerRegistered {
                node_id: 4,
                host: "127.0.0.1".into(),
                port: 9004,
                internal_address: String::new(),
                incarnation_id: id(44),
                rack: Some("r1".into()),
                broker_epoch: 1,
                fenced: true,
                external: None,
            }],
        ),
        (
            "a registration retried by the same incarnation changes nothing",
            image(&[], three_by_three(), vec![]),
            register(2, 2),
            vec![],
        ),
        (
            "a new process of an unfenced broker: fenced at the next epoch, its \
             leaderships moved",
            image(&[], three_by_three(), vec![]),
            register(3, 33),
            vec![
                MetadataRecord::BrokerRegistered {
                    node_id: 3,
                    host: "127.0.0.1".into(),
                    port: 9003,
                    internal_address: String::new(),
                    incarnation_id: id(33),
                    rack: Some("r1".into()),
                    broker_epoch: 2,
                    fenced: true,
                    external: None,
                },
                changed(0, 1, 0, &[1, 2]),
                changed(1, 2, 0, &[2, 1]),
                changed(2, 1, 1, &[1, 2]),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (what, image, request, expected) in &cases {
        let records = decide(request, image);
        // Every change bumps the partition's epoch by one.
        let expected: Vec<MetadataRecord> = expected
            .iter()
            .cloned()
            .map(|mut record| {
                if let MetadataRecord::PartitionChanged {
                    partition,
                    partition_epoch,
                    ..
                } = &mut record
                    && let Some(current) = image
                        .topic("orders")
                        .and_then(|topic| topic.partition(*partition))
                {
                    *partition_epoch = Some(current.partition_epoch + 1);
                }
                record
            })
            .collect();
        if records != expected {
            failures.push(format!(
                "{what}:\n  got      {records:?}\n  expected {expected:?}"
            ));
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

/// New partitions go only to unfenced brokers, even when the caller counts a fenced
/// one as live; and the replication factor is checked against the unfenced ones.
#[test]
fn placement_skips_fenced_brokers() {
    let image = image(&[2], three_by_three(), vec![]);
    let create = |replication_factor| {
        MetadataRequest::CreateTopic(CreateTopic {
            name: "events".into(),
            partitions: Some(4),
            replication_factor: Some(replication_factor),
            config: BTreeMap::new(),
        })
    };
    let records = decide(&create(2), &image);
    let [MetadataRecord::TopicCreated { replicas, .. }] = records.as_slice() else {
        panic!("one creation expected: {records:?}");
    };
    assert_eq!(replicas.len(), 4);
    assert!(replicas.iter().all(|r| r.len() == 2 && !r.contains(&2)));
    let defaults = BrokerConfig::default();
    let live_brokers = BTreeSet::from([1, 2, 3]);
    let inputs = Inputs {
        defaults: &defaults,
        live_brokers: &live_brokers,
        partition_budgets: &BTreeMap::new(),
        replication_factor_max: i16::MAX,
    };
    assert!(matches!(
        records_for(&create(3), &image, &inputs, &mut Never),
        Err(TopicError::NotEnoughBrokers {
            requested: 3,
            available: 2
        })
    ));
}
