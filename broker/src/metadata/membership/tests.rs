//! Membership driven through the front end and the image, as the controller shell
//! will drive it: each rule as a scenario, and a property test over random sequences
//! of registrations, heartbeats, passing time, topic creations and in-sync set growth.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::config::BrokerConfig;
use crate::metadata::front_end::{self, CreateTopic, Inputs, Randomness, TopicError};
use crate::metadata::position::LogPosition;
use crate::metadata::records::MetadataRecord;

const SESSION_TIMEOUT_MS: u64 = 1_000;

/// Ids count up from 1000; every choice is `choice` modulo its bound.
struct Counting {
    next_id: u128,
    choice: usize,
}

impl Randomness for Counting {
    fn new_id(&mut self) -> uuid::Uuid {
        self.next_id += 1;
        uuid::Uuid::from_u128(self.next_id)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.choice % bound
    }
}

/// The active controller's state: the image, the membership and the time, with the
/// front end between them, each request applied as its own log entry.
struct Cluster {
    image: MetadataImage,
    membership: Membership,
    now_ms: u64,
    random: Counting,
}

impl Cluster {
    fn new(auto_leader_rebalance: bool) -> Self {
        let mut cluster = Self {
            image: MetadataImage::default(),
            membership: Membership::new(SESSION_TIMEOUT_MS, auto_leader_rebalance),
            now_ms: 0,
            random: Counting {
                next_id: 1000,
                choice: 0,
            },
        };
        cluster
            .submit(&[MetadataRequest::InitializeCluster])
            .unwrap();
        cluster.membership.became_active(&cluster.image, 0);
        cluster
    }

    /// Decides each request on the image the ones before it made and applies its
    /// records; stops at the first refusal.
    fn submit(&mut self, requests: &[MetadataRequest]) -> Result<Vec<MetadataRecord>, TopicError> {
        let defaults = BrokerConfig::default();
        let mut all = Vec::new();
        let leaving = self.membership.leaving();
        for request in requests {
            let live_brokers: BTreeSet<i32> = self.image.brokers.keys().copied().collect();
            let live_brokers = &live_brokers - &leaving;
            let inputs = Inputs {
                defaults: &defaults,
                live_brokers: &live_brokers,
                partition_budgets: &BTreeMap::new(),
                replication_factor_max: i16::MAX,
            };
            let records = front_end::records_for(request, &self.image, &inputs, &mut self.random)?;
            self.apply(&records);
            all.extend(records);
        }
        Ok(all)
    }

    fn apply(&mut self, records: &[MetadataRecord]) {
        let index = self.image.applied_position().map_or(1, |p| p.index + 1);
        let position = LogPosition {
            term: 1,
            leader: 1,
            index,
        };
        self.image.apply_batch(position, records).unwrap();
    }

    fn register(&mut self, node_id: i32, incarnation: u128) -> Result<(), MembershipError> {
        let requests = self.membership.register(
            &self.image,
            &registration(node_id, incarnation),
            self.now_ms,
        )?;
        self.submit(&requests).unwrap();
        Ok(())
    }

    fn heartbeat(
        &mut self,
        node_id: i32,
        caught_up: bool,
        wants_shutdown: bool,
    ) -> Result<HeartbeatReply, MembershipError> {
        let broker_epoch = self.epoch(node_id);
        let heartbeat = Heartbeat {
            node_id,
            broker_epoch,
            caught_up,
            wants_shutdown,
        };
        let reply = self
            .membership
            .heartbeat(&self.image, heartbeat, self.now_ms)?;
        self.submit(&reply.propose).unwrap();
        Ok(reply)
    }

    /// Registers `node_id` and heartbeats it caught up: an unfenced broker.
    fn join(&mut self, node_id: i32) {
        self.register(node_id, node_id as u128).unwrap();
        self.heartbeat(node_id, true, false).unwrap();
        assert!(self.image.is_unfenced(node_id));
    }

    /// Lets time pass to `now_ms` and carries out what the tick asks for.
    fn tick(&mut self, now_ms: u64) -> Vec<MetadataRequest> {
        self.now_ms = now_ms;
        let requests = self.membership.tick(&self.image, now_ms);
        self.submit(&requests).unwrap();
        requests
    }

    fn epoch(&self, node_id: i32) -> u64 {
        self.image
            .brokers
            .get(&node_id)
            .map_or(0, |broker| broker.broker_epoch)
    }

    fn fenced(&self) -> Vec<i32> {
        let brokers = self.image.brokers.values();
        brokers.filter(|b| b.fenced).map(|b| b.node_id).collect()
    }
}

fn registration(node_id: i32, incarnation: u128) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        incarnation_id: uuid::Uuid::from_u128(incarnation),
        host: "127.0.0.1".into(),
        port: 9000 + node_id.clamp(0, 999) as u16,
        internal_address: format!("127.0.0.1:{}", 10_000 + node_id.clamp(0, 999)),
        rack: None,
        external: None,
        held_replicas: None,
    }
}

fn create(name: &str, partitions: i32, replication_factor: i16) -> MetadataRequest {
    MetadataRequest::CreateTopic(CreateTopic {
        name: name.into(),
        partitions: Some(partitions),
        replication_factor: Some(replication_factor),
        config: BTreeMap::new(),
    })
}

/// A broker registers fenced at epoch 1; heartbeats that are not caught up leave it
/// fenced; the first caught-up one unfences it; later ones change nothing.
#[test]
fn registered_fenced_then_unfenced_when_caught_up() {
    let mut cluster = Cluster::new(true);
    let requests = cluster
        .membership
        .register(&cluster.image, &registration(1, 11), 0)
        .unwrap();
    assert_eq!(
        requests,
        [MetadataRequest::RegisterIncarnation(registration(1, 11))]
    );
    cluster.submit(&requests).unwrap();
    assert_eq!(cluster.fenced(), [1]);
    assert_eq!(cluster.epoch(1), 1);
    let reply = cluster.heartbeat(1, false, false).unwrap();
    assert!(reply.fenced && reply.propose.is_empty());
    let reply = cluster.heartbeat(1, true, false).unwrap();
    assert!(reply.fenced);
    assert_eq!(
        reply.propose,
        [MetadataRequest::UnfenceBroker {
            node_id: 1,
            broker_epoch: 1,
            restore_preferred_leaders: true,
        }]
    );
    assert!(cluster.image.is_unfenced(1));
    let reply = cluster.heartbeat(1, true, false).unwrap();
    assert!(!reply.fenced && reply.propose.is_empty() && !reply.controlled_shutdown_done);
}

/// Bad and stale requests are refused with an error that names the problem, and
/// change nothing.
#[test]
fn bad_and_stale_requests_are_refused() {
    let mut cluster = Cluster::new(true);
    assert_eq!(
        cluster.register(-1, 1),
        Err(MembershipError::InvalidNodeId(-1))
    );
    assert_eq!(
        cluster.heartbeat(5, true, false),
        Err(MembershipError::NotRegistered(5))
    );
    cluster.register(1, 11).unwrap();
    let stale = Heartbeat {
        node_id: 1,
        broker_epoch: 2,
        caught_up: true,
        wants_shutdown: false,
    };
    let refused = cluster.membership.heartbeat(&cluster.image, stale, 0);
    assert_eq!(
        refused,
        Err(MembershipError::StaleBrokerEpoch {
            node_id: 1,
            offered: 2,
            current: 1
        })
    );
    assert!(refused.unwrap_err().to_string().contains("older process"));

    // Another process claims node 1 while its session is live.
    cluster.now_ms = SESSION_TIMEOUT_MS - 1;
    let duplicate = cluster.register(1, 12);
    assert_eq!(
        duplicate,
        Err(MembershipError::DuplicateNodeId {
            node_id: 1,
            live_incarnation: uuid::Uuid::from_u128(11)
        })
    );
    let mut moved = registration(1, 11);
    moved.port = 1;
    assert_eq!(
        cluster.membership.register(&cluster.image, &moved, 0),
        Err(MembershipError::ConflictingRegistration {
            node_id: 1,
            incarnation_id: uuid::Uuid::from_u128(11)
        })
    );
    assert_eq!(cluster.epoch(1), 1);

    // Once the session expired, a new process registers. Until its record is
    // applied, the old process's heartbeats are refused; after, they are stale.
    let now_ms = SESSION_TIMEOUT_MS;
    let requests = cluster
        .membership
        .register(&cluster.image, &registration(1, 12), now_ms)
        .unwrap();
    let old = Heartbeat {
        broker_epoch: 1,
        ..stale
    };
    assert_eq!(
        cluster.membership.heartbeat(&cluster.image, old, now_ms),
        Err(MembershipError::SupersededIncarnation {
            node_id: 1,
            pending: uuid::Uuid::from_u128(12)
        })
    );
    cluster.submit(&requests).unwrap();
    assert_eq!(cluster.epoch(1), 2);
    assert!(matches!(
        cluster.membership.heartbeat(&cluster.image, old, now_ms),
        Err(MembershipError::StaleBrokerEpoch {
            offered: 1,
            current: 2,
            ..
        })
    ));
    cluster.now_ms = now_ms;
    cluster.heartbeat(1, true, false).unwrap();
    assert!(cluster.image.is_unfenced(1));
}

/// A broker that stops heartbeating is fenced when its session expires, and its
/// leaderships move; one that heartbeats is not. A fenced broker that heartbeats
/// again, caught up, is unfenced and gets its preferred leaderships back.
#[test]
fn expired_sessions_are_fenced() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.join(2);
    cluster.submit(&[create("orders", 2, 2)]).unwrap();
    let leaders = |cluster: &Cluster| -> Vec<(i32, i32)> {
        let topic = cluster.image.topic("orders").unwrap();
        topic
            .partitions
            .iter()
            .map(|p| (p.leader, p.leader_epoch))
            .collect()
    };
    assert_eq!(leaders(&cluster), [(1, 0), (2, 0)]);

    cluster.now_ms = 600;
    cluster.heartbeat(1, true, false).unwrap();
    assert_eq!(cluster.tick(SESSION_TIMEOUT_MS - 1), []);
    assert_eq!(
        cluster.tick(SESSION_TIMEOUT_MS),
        [MetadataRequest::FenceBroker {
            node_id: 2,
            broker_epoch: 1
        }]
    );
    assert_eq!(cluster.fenced(), [2]);
    assert_eq!(leaders(&cluster), [(1, 0), (1, 1)]);
    assert_eq!(cluster.tick(SESSION_TIMEOUT_MS + 1), [], "fenced already");

    let reply = cluster.heartbeat(2, true, false).unwrap();
    assert!(reply.fenced);
    assert!(cluster.fenced().is_empty());
    // Broker 2 left partition 1's in-sync set when it was fenced; replication (not
    // built yet) would add it back. Until then it does not lead there again.
    assert_eq!(leaders(&cluster), [(1, 0), (1, 1)]);
    assert_eq!(
        cluster.tick(1_600),
        [MetadataRequest::FenceBroker {
            node_id: 1,
            broker_epoch: 1
        }]
    );
    assert_eq!(cluster.fenced(), [1]);
    // Broker 2 is in sync for neither partition, but it left both sets when they fell
    // below min.insync.replicas (2): no acks=all write was acknowledged without it
    // since, so it is an eligible leader replica, and leads both.
    assert_eq!(leaders(&cluster), [(2, 1), (2, 2)]);
    let partition = &cluster.image.topic("orders").unwrap().partitions[0];
    assert_eq!(
        (partition.isr.as_slice(), partition.elr.as_slice()),
        ([2].as_slice(), [1].as_slice())
    );
    // Broker 1 returns as an eligible leader replica, a follower until it is in sync.
    cluster.heartbeat(1, true, false).unwrap();
    assert_eq!(leaders(&cluster), [(2, 1), (2, 2)]);
}

/// A broker that stopped heartbeating is named silent before its session expires;
/// reported gone (its address refused a connection), its session ends at once and it
/// is fenced, and its next process registers without waiting for the old session.
#[test]
fn a_silent_broker_whose_process_is_gone_is_fenced_at_once() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.join(2);
    let silent = |cluster: &Cluster, now_ms: u64| -> Vec<i32> {
        let named = cluster.membership.silent(&cluster.image, now_ms, 400, 1);
        named.iter().map(|broker| broker.node_id).collect()
    };
    assert_eq!(
        silent(&cluster, 200),
        Vec::<i32>::new(),
        "not silent long enough"
    );
    assert_eq!(
        silent(&cluster, 400),
        [2],
        "the controller's own node is never named"
    );
    assert_eq!(
        silent(&cluster, SESSION_TIMEOUT_MS),
        Vec::<i32>::new(),
        "an expired session is the tick's to fence"
    );
    let named = &cluster.membership.silent(&cluster.image, 400, 400, 1)[0];
    assert_eq!(named.internal_address, "127.0.0.1:10002");
    let incarnation = named.incarnation_id;

    cluster.now_ms = 400;
    let requests = cluster.membership.gone(&cluster.image, 2, incarnation);
    assert_eq!(
        requests,
        [MetadataRequest::FenceBroker {
            node_id: 2,
            broker_epoch: 1
        }]
    );
    cluster.submit(&requests).unwrap();
    assert_eq!(cluster.fenced(), [2]);
    assert_eq!(
        cluster.membership.gone(&cluster.image, 2, incarnation),
        [],
        "fenced already"
    );
    cluster.register(2, 22).unwrap();
    assert_eq!(cluster.epoch(2), 2, "the next process registered at once");

    // A controller that just became active has heard from nobody: every other
    // unfenced broker is worth checking at once.
    cluster.heartbeat(2, true, false).unwrap();
    cluster.membership.became_active(&cluster.image, 500);
    assert_eq!(silent(&cluster, 500), [2]);
    cluster.now_ms = 500;
    cluster.heartbeat(2, true, false).unwrap();
    assert_eq!(silent(&cluster, 500), Vec::<i32>::new());
}

/// A new active controller starts every session afresh: brokers that heartbeat to it
/// stay unfenced, and only those that do not are fenced, one session timeout later.
#[test]
fn a_new_controller_gives_every_broker_a_fresh_session() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.join(2);
    let mut successor = Membership::new(SESSION_TIMEOUT_MS, true);
    let start_ms = 50_000;
    successor.became_active(&cluster.image, start_ms);
    assert_eq!(
        successor.tick(&cluster.image, start_ms + SESSION_TIMEOUT_MS - 1),
        []
    );
    let heartbeat = Heartbeat {
        node_id: 1,
        broker_epoch: 1,
        caught_up: true,
        wants_shutdown: false,
    };
    let reply = successor
        .heartbeat(&cluster.image, heartbeat, start_ms + 500)
        .unwrap();
    assert!(!reply.fenced && reply.propose.is_empty());
    assert_eq!(
        successor.tick(&cluster.image, start_ms + SESSION_TIMEOUT_MS),
        [MetadataRequest::FenceBroker {
            node_id: 2,
            broker_epoch: 1
        }]
    );
}

/// A process known to be gone (the controller's own node, now in a newer process)
/// loses its session at once: the new process registers without waiting for it to
/// expire. Ending the session of another incarnation does nothing.
#[test]
fn an_ended_session_lets_the_next_process_register_at_once() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.membership.became_active(&cluster.image, 100);
    cluster.now_ms = 200;
    assert!(matches!(
        cluster.register(1, 11),
        Err(MembershipError::DuplicateNodeId { node_id: 1, .. })
    ));
    cluster.membership.end_session(1, uuid::Uuid::from_u128(99));
    assert!(cluster.membership.has_live_session(1, 200));
    cluster.membership.end_session(1, uuid::Uuid::from_u128(1));
    assert!(!cluster.membership.has_live_session(1, 200));
    cluster.register(1, 11).unwrap();
    assert_eq!(cluster.epoch(1), 2);
    assert!(cluster.membership.has_live_session(1, 200));
}

/// A broker that asks for a controlled shutdown is fenced, which moves its
/// leaderships away; it is told it may exit once that is applied, is not unfenced by
/// its own later heartbeats, and its next process may register at once.
#[test]
fn controlled_shutdown_moves_leaderships_then_lets_the_broker_go() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.join(2);
    cluster.submit(&[create("orders", 2, 2)]).unwrap();
    assert!(cluster.image.leads_any_partition(1));

    cluster.now_ms = 100;
    let heartbeat = Heartbeat {
        node_id: 1,
        broker_epoch: 1,
        caught_up: true,
        wants_shutdown: true,
    };
    let reply = cluster
        .membership
        .heartbeat(&cluster.image, heartbeat, 100)
        .unwrap();
    assert!(!reply.fenced && !reply.controlled_shutdown_done);
    assert_eq!(
        reply.propose,
        [MetadataRequest::FenceBroker {
            node_id: 1,
            broker_epoch: 1
        }]
    );
    cluster.submit(&reply.propose).unwrap();
    assert!(!cluster.image.leads_any_partition(1));
    let topic = cluster.image.topic("orders").unwrap();
    assert!(
        topic
            .partitions
            .iter()
            .all(|p| p.leader == 2 && p.isr == [2])
    );

    // Shutting down, it takes no replicas of new partitions.
    cluster.submit(&[create("payments", 2, 1)]).unwrap();
    let payments = cluster.image.topic("payments").unwrap();
    assert!(payments.partitions.iter().all(|p| p.replicas == [2]));

    // Caught up, but shutting down: it stays fenced, and may go.
    let reply = cluster.heartbeat(1, true, false).unwrap();
    assert!(reply.fenced && reply.controlled_shutdown_done && reply.propose.is_empty());
    cluster.register(1, 12).unwrap();
    assert_eq!(cluster.epoch(1), 2);
}

/// A broker whose partitions have no other live in-sync replica (a single broker, or
/// replicas of one) has nothing to move: its controlled shutdown is done at once,
/// without fencing it, and its session goes on, so that it is fenced once that expires.
#[test]
fn a_controlled_shutdown_with_nothing_to_move_is_done_at_once() {
    let mut cluster = Cluster::new(true);
    cluster.join(1);
    cluster.join(2);
    cluster.submit(&[create("orders", 2, 1)]).unwrap();
    assert!(cluster.image.leads_any_partition(1));
    cluster.now_ms = 100;
    let reply = cluster.heartbeat(1, true, true).unwrap();
    assert!(!reply.fenced && reply.controlled_shutdown_done && reply.propose.is_empty());
    assert!(cluster.image.is_unfenced(1) && cluster.image.leads_any_partition(1));
    assert!(cluster.membership.has_live_session(1, 100));
    // Unfenced, but leaving: new partitions go elsewhere.
    assert_eq!(cluster.membership.leaving(), BTreeSet::from([1]));
    cluster.submit(&[create("payments", 2, 1)]).unwrap();
    let payments = cluster.image.topic("payments").unwrap();
    assert!(payments.partitions.iter().all(|p| p.replicas == [2]));
    // Its next process waits for that session, like any quick restart.
    assert!(matches!(
        cluster.register(1, 12),
        Err(MembershipError::DuplicateNodeId { node_id: 1, .. })
    ));
    cluster.heartbeat(2, true, false).unwrap();
    cluster.now_ms = 100 + SESSION_TIMEOUT_MS / 2;
    cluster.heartbeat(2, true, false).unwrap();
    assert_eq!(
        cluster.tick(100 + SESSION_TIMEOUT_MS),
        [MetadataRequest::FenceBroker {
            node_id: 1,
            broker_epoch: 1
        }]
    );
    assert!(!cluster.image.leads_any_partition(1));
}

/// With automatic leader rebalancing off, a returning broker leads only the
/// partitions that had no leader.
#[test]
fn preferred_leaders_stay_put_without_rebalancing() {
    for auto_leader_rebalance in [true, false] {
        let mut cluster = Cluster::new(auto_leader_rebalance);
        cluster.join(1);
        cluster.join(2);
        cluster.submit(&[create("orders", 2, 2)]).unwrap();
        cluster.now_ms = 500;
        cluster.heartbeat(2, true, false).unwrap();
        cluster.tick(SESSION_TIMEOUT_MS);
        assert_eq!(cluster.fenced(), [1]);
        // Replication (not built yet) brings broker 1 back in sync.
        let topic = cluster.image.topic("orders").unwrap().clone();
        let back_in_sync: Vec<MetadataRecord> = topic
            .partitions
            .iter()
            .map(|p| MetadataRecord::PartitionChanged {
                topic_id: topic.topic_id.to_string(),
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                isr: vec![2, 1],
                elr: Vec::new(),
                partition_epoch: None,
            })
            .collect();
        cluster.apply(&back_in_sync);
        cluster.heartbeat(1, true, false).unwrap();
        let topic = cluster.image.topic("orders").unwrap();
        let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
        let expected = if auto_leader_rebalance {
            [1, 2]
        } else {
            [2, 2]
        };
        assert_eq!(
            leaders, expected,
            "auto_leader_rebalance {auto_leader_rebalance}"
        );
    }
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Event {
    /// A process of `node` registers: a new one, or the current one again.
    Register { node: i32, new_process: bool },
    /// `node` heartbeats with its current epoch, or the one before.
    Heartbeat {
        node: i32,
        caught_up: bool,
        wants_shutdown: bool,
        stale: bool,
    },
    /// Time passes and the controller ticks.
    Advance { ms: u64 },
    CreateTopic {
        partitions: i32,
        replication_factor: i16,
        choice: usize,
    },
    /// Replication brings an unfenced replica back into a partition's in-sync set
    /// (what the replication issue will do; here the test stands in for it).
    CatchUp { pick: usize },
}

fn event(brokers: i32) -> impl Strategy<Value = Event> {
    let node = 1..=brokers;
    prop_oneof![
        1 => (node.clone(), any::<bool>())
            .prop_map(|(node, new_process)| Event::Register { node, new_process }),
        4 => (node, any::<bool>(), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(node, caught_up, wants_shutdown, stale)| Event::Heartbeat {
                node,
                caught_up,
                wants_shutdown,
                stale,
            }),
        3 => (0u64..1_500).prop_map(|ms| Event::Advance { ms }),
        2 => (1i32..4, 1i16..4, any::<usize>()).prop_map(|(partitions, replication_factor, choice)| {
            Event::CreateTopic {
                partitions,
                replication_factor,
                choice,
            }
        }),
        2 => any::<usize>().prop_map(|pick| Event::CatchUp { pick }),
    ]
}

fn scenario() -> impl Strategy<Value = (bool, Vec<Event>)> {
    (1i32..=5)
        .prop_flat_map(|brokers| (any::<bool>(), prop::collection::vec(event(brokers), 1..60)))
}

/// Leader and epoch of every partition, by topic id and partition.
fn leaderships(image: &MetadataImage) -> BTreeMap<(uuid::Uuid, i32), (i32, i32)> {
    image
        .topics
        .values()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| ((topic.topic_id, p.partition), (p.leader, p.leader_epoch)))
        })
        .collect()
}

/// What the test itself knows, independently of the membership: when each broker
/// was last accepted (a registration or heartbeat that was not refused). A broker is
/// alive, by this model, for a session timeout after that; one told it may shut down
/// is not alive any more. A broker that asked to shut down is leaving until it
/// registers again: it may be fenced by any later heartbeat, once its leaderships have
/// moved (the broker's own heartbeats keep asking, but membership remembers either way).
#[derive(Default)]
struct Model {
    incarnations: u128,
    last_accepted_ms: BTreeMap<i32, u64>,
    leaving: BTreeSet<i32>,
}

impl Model {
    fn alive(&self, node_id: i32, now_ms: u64) -> bool {
        self.last_accepted_ms
            .get(&node_id)
            .is_some_and(|&at| now_ms < at + SESSION_TIMEOUT_MS)
    }
}

impl Cluster {
    /// Carries out one event; refusals are part of the game and change nothing.
    fn run(&mut self, event: &Event, model: &mut Model) {
        match *event {
            Event::Register { node, new_process } => {
                let current = self.image.brokers.get(&node).map(|b| b.incarnation_id);
                let incarnation = match current {
                    Some(id) if !new_process => id.as_u128(),
                    _ => {
                        model.incarnations += 1;
                        model.incarnations
                    }
                };
                if self.register(node, incarnation).is_ok() {
                    model.last_accepted_ms.insert(node, self.now_ms);
                    model.leaving.remove(&node);
                }
            }
            Event::Heartbeat {
                node,
                caught_up,
                wants_shutdown,
                stale,
            } => {
                let heartbeat = Heartbeat {
                    node_id: node,
                    broker_epoch: self.epoch(node).saturating_sub(u64::from(stale)),
                    caught_up,
                    wants_shutdown,
                };
                if let Ok(reply) = self
                    .membership
                    .heartbeat(&self.image, heartbeat, self.now_ms)
                {
                    self.submit(&reply.propose).unwrap();
                    if wants_shutdown {
                        model.leaving.insert(node);
                    }
                    // Done and fenced, the session ends; done while unfenced (nothing
                    // could move), the session goes on until it expires.
                    if reply.controlled_shutdown_done && !self.image.is_unfenced(node) {
                        model.last_accepted_ms.remove(&node);
                    } else {
                        model.last_accepted_ms.insert(node, self.now_ms);
                    }
                }
            }
            Event::Advance { ms } => {
                self.tick(self.now_ms + ms);
            }
            Event::CreateTopic {
                partitions,
                replication_factor,
                choice,
            } => {
                self.random.choice = choice;
                let name = format!("t{}", self.image.topics.len());
                match self.submit(&[create(&name, partitions, replication_factor)]) {
                    Ok(_) | Err(TopicError::NotEnoughBrokers { .. }) => {}
                    Err(error) => panic!("creation refused: {error}"),
                }
            }
            Event::CatchUp { pick } => {
                let lagging: Vec<(String, i32, i32, i32, Vec<i32>, i32)> = self
                    .image
                    .topics
                    .values()
                    .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
                    .filter(|(_, p)| p.leader >= 0)
                    .flat_map(|(topic, p)| {
                        p.replicas
                            .iter()
                            .filter(|r| !p.isr.contains(r) && self.image.is_unfenced(**r))
                            .map(move |&r| {
                                let id = topic.topic_id.to_string();
                                (id, p.partition, p.leader, p.leader_epoch, p.isr.clone(), r)
                            })
                    })
                    .collect();
                if lagging.is_empty() {
                    return;
                }
                let (topic_id, partition, leader, leader_epoch, mut isr, replica) =
                    lagging[pick % lagging.len()].clone();
                isr.push(replica);
                self.apply(&[MetadataRecord::PartitionChanged {
                    topic_id,
                    partition,
                    leader,
                    leader_epoch,
                    isr,
                    elr: Vec::new(),
                    partition_epoch: None,
                }]);
            }
        }
    }

    /// The invariants that hold after every step, given the image before it.
    fn check(
        &self,
        before: &MetadataImage,
        event: &Event,
        model: &Model,
    ) -> Result<(), TestCaseError> {
        for topic in self.image.topics.values() {
            for p in &topic.partitions {
                let what = format!("{}-{} {:?}", topic.name, p.partition, p);
                prop_assert!(!p.isr.is_empty(), "empty in-sync set: {}", what);
                let distinct: BTreeSet<_> = p.isr.iter().collect();
                prop_assert_eq!(distinct.len(), p.isr.len(), "{}", what);
                prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "{}", what);
                if p.leader == -1 {
                    prop_assert!(
                        p.isr.iter().all(|r| !self.image.is_unfenced(*r)),
                        "leaderless with a live in-sync replica: {}",
                        what
                    );
                } else {
                    prop_assert!(p.isr.contains(&p.leader), "leader not in sync: {}", what);
                    prop_assert!(
                        self.image.is_unfenced(p.leader),
                        "led by a fenced broker: {}",
                        what
                    );
                }
            }
        }
        let was = leaderships(before);
        for (partition, (leader, epoch)) in leaderships(&self.image) {
            if let Some(&(old_leader, old_epoch)) = was.get(&partition) {
                prop_assert!(epoch >= old_epoch, "epoch went back: {:?}", partition);
                prop_assert!(
                    leader == old_leader || epoch > old_epoch,
                    "leader changed without a new epoch: {:?}",
                    partition
                );
            }
        }
        for broker in before.brokers.values().filter(|b| !b.fenced) {
            let node = broker.node_id;
            let left = match *event {
                Event::Register { node: n, .. } => n == node,
                Event::Heartbeat {
                    node: n,
                    wants_shutdown,
                    ..
                } => n == node && wants_shutdown,
                _ => false,
            } || model.leaving.contains(&node);
            if !left && model.alive(node, self.now_ms) {
                prop_assert!(
                    self.image.is_unfenced(node),
                    "broker {} with a live session was fenced by {:?}",
                    node,
                    event
                );
            }
        }
        if let Event::Advance { .. } = event {
            for broker in self.image.brokers.values().filter(|b| !b.fenced) {
                prop_assert!(
                    model.alive(broker.node_id, self.now_ms),
                    "broker {} unfenced after its session expired",
                    broker.node_id
                );
                prop_assert!(
                    self.membership
                        .has_live_session(broker.node_id, self.now_ms)
                );
            }
        }
        Ok(())
    }
}

proptest! {
    /// Random histories of one to five brokers and a few topics keep leadership sound:
    /// no partition is led by a fenced broker, leaders are in sync, in-sync sets are
    /// never empty and hold only replicas, leader epochs only grow (and grow with every
    /// change of leader), a partition is leaderless only while all its in-sync replicas
    /// are fenced, brokers with live sessions are never fenced by others' events, and
    /// every expired session is fenced at the next tick.
    #[test]
    fn leadership_stays_sound((auto_leader_rebalance, events) in scenario()) {
        let mut cluster = Cluster::new(auto_leader_rebalance);
        let mut model = Model::default();
        for event in &events {
            let before = cluster.image.clone();
            cluster.run(event, &mut model);
            cluster.check(&before, event, &model)?;
        }
    }
}
