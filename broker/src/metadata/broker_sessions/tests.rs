//! The shell through the controller, on a real quorum of one (files in a temporary
//! directory, its listener on 127.0.0.1) with a clock the tests move: registration,
//! heartbeats that unfence a caught-up broker, session expiry fenced by the tick, fresh
//! sessions on becoming active, and a controlled shutdown.

use std::sync::Arc;

use super::*;
use crate::config::BrokerConfig;
use crate::metadata::front_end::CreateTopic;
use crate::metadata::{Controller, MetadataLog};

const SESSION_TIMEOUT_MS: u64 = 6_000;

struct Node {
    log: Arc<MetadataLog>,
    controller: Controller,
    clock: Arc<ManualSessionClock>,
}

/// A controller of node 0 (process `incarnation`), its clock at `start_ms`.
async fn start(config: &BrokerConfig, incarnation: u128, start_ms: u64) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log = Arc::new(MetadataLog::start(config, listener).await.unwrap());
    let clock = Arc::new(ManualSessionClock::default());
    clock.advance(start_ms);
    let controller = Controller::start_with_clock(
        config,
        log.clone(),
        uuid::Uuid::from_u128(incarnation),
        clock.clone(),
    )
    .await
    .unwrap();
    Node {
        log,
        controller,
        clock,
    }
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::for_tests(dir);
    config.broker_session_timeout_ms = SESSION_TIMEOUT_MS;
    config
}

fn registration(node_id: i32, incarnation: u128) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        incarnation_id: uuid::Uuid::from_u128(incarnation),
        host: "127.0.0.1".into(),
        port: 9000 + node_id as u16,
        internal_address: String::new(),
        rack: None,
        external: None,
        held_replicas: None,
    }
}

fn heartbeat(node_id: i32, broker_epoch: u64, caught_up: bool) -> Heartbeat {
    Heartbeat {
        node_id,
        broker_epoch,
        caught_up,
        wants_shutdown: false,
    }
}

impl Node {
    /// Registers `node_id` as process `incarnation` and heartbeats it caught up.
    async fn join(&self, node_id: i32, incarnation: u128) -> u64 {
        let registered = self
            .controller
            .register_broker(&registration(node_id, incarnation))
            .await
            .unwrap();
        let answer = self
            .controller
            .broker_heartbeat(heartbeat(node_id, registered.broker_epoch, true))
            .await
            .unwrap();
        assert!(!answer.fenced);
        registered.broker_epoch
    }

    fn fenced(&self, node_id: i32) -> bool {
        self.controller.image().brokers[&node_id].fenced
    }
}

/// A registered broker is fenced until it heartbeats caught up; one heartbeat then
/// unfences it, and the answer says so with the index it was applied at.
#[tokio::test]
async fn a_caught_up_heartbeat_unfences_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path()), 1, 0).await;
    let registered = node
        .controller
        .register_broker(&registration(4, 40))
        .await
        .unwrap();
    assert_eq!(registered.broker_epoch, 1);
    assert_eq!(
        registered.metadata_index,
        applied_index(&node.controller.image())
    );
    assert!(node.fenced(4));
    let answer = node
        .controller
        .broker_heartbeat(heartbeat(4, 1, false))
        .await
        .unwrap();
    assert!(answer.fenced && !answer.controlled_shutdown_done);
    assert!(node.fenced(4));
    let answer = node
        .controller
        .broker_heartbeat(heartbeat(4, 1, true))
        .await
        .unwrap();
    assert!(!answer.fenced);
    assert!(!node.fenced(4));
    assert_eq!(
        answer.metadata_index,
        applied_index(&node.controller.image())
    );
    // A heartbeat of an older registration is refused with membership's own message.
    let stale = node
        .controller
        .broker_heartbeat(heartbeat(4, 0, true))
        .await
        .unwrap_err();
    assert!(stale.needs_registration(), "{stale:?}");
    assert!(stale.to_string().contains("register again"), "{stale}");
    node.log.shutdown().await;
}

/// A broker that stops heartbeating is fenced by the tick once its session expired,
/// not before; while its session lived another process of its node was refused, and
/// once it expired that process registers with the next epoch.
#[tokio::test]
async fn the_tick_fences_a_broker_whose_session_expired() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path()), 1, 0).await;
    assert_eq!(node.join(4, 40).await, 1);
    node.clock.advance(SESSION_TIMEOUT_MS - 1);
    assert_eq!(node.controller.expire_broker_sessions().await.unwrap(), 0);
    assert!(!node.fenced(4));
    let duplicate = node
        .controller
        .register_broker(&registration(4, 41))
        .await
        .unwrap_err();
    assert!(
        matches!(
            duplicate,
            MembershipCallError::Refused(MembershipError::DuplicateNodeId { node_id: 4, .. })
        ),
        "{duplicate:?}"
    );
    assert!(duplicate.is_retriable());
    assert!(
        duplicate
            .to_string()
            .contains("two brokers have one node id")
    );
    node.clock.advance(1);
    assert_eq!(node.controller.expire_broker_sessions().await.unwrap(), 1);
    assert!(node.fenced(4));
    // Fenced already: nothing more to do.
    assert_eq!(node.controller.expire_broker_sessions().await.unwrap(), 0);
    let registered = node
        .controller
        .register_broker(&registration(4, 41))
        .await
        .unwrap();
    assert_eq!(registered.broker_epoch, 2);
    node.log.shutdown().await;
}

/// A controller that starts leading (here: restarted, a new term) gives every
/// registered broker a fresh session, so none is fenced before a whole timeout has
/// passed without its heartbeats, and another process of such a node is refused. The
/// registration of the controller's own node by its previous process gets none: this
/// process's broker registers at once.
#[tokio::test]
async fn becoming_active_starts_every_session_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let node = start(&config, 1, 0).await;
    assert_eq!(node.join(0, 1).await, 1);
    assert_eq!(node.join(4, 40).await, 1);
    node.log.shutdown().await;

    let start_ms = 1_000_000;
    let node = start(&config, 2, start_ms).await;
    assert_eq!(node.join(0, 2).await, 2);
    assert!(matches!(
        node.controller.register_broker(&registration(4, 41)).await,
        Err(MembershipCallError::Refused(
            MembershipError::DuplicateNodeId { .. }
        ))
    ));
    node.clock.advance(SESSION_TIMEOUT_MS - 1);
    assert_eq!(node.controller.expire_broker_sessions().await.unwrap(), 0);
    assert!(!node.fenced(4));
    // Node 0 heartbeats; node 4 does not.
    let answer = node
        .controller
        .broker_heartbeat(heartbeat(0, 2, true))
        .await
        .unwrap();
    assert!(!answer.fenced);
    node.clock.advance(1);
    assert_eq!(node.controller.expire_broker_sessions().await.unwrap(), 1);
    assert!(node.fenced(4));
    assert!(!node.fenced(0));
    node.log.shutdown().await;
}

/// A controlled shutdown of a single broker is done by one heartbeat without fencing
/// it: its partitions have no other replica to move to, so it keeps leading them for
/// the requests it is finishing. Its next process (controller too) registers at once
/// and leads them again once unfenced.
#[tokio::test]
async fn a_single_broker_shuts_down_in_one_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path()), 1, 0).await;
    let epoch = node.join(0, 1).await;
    let request = CreateTopic {
        name: "orders".into(),
        partitions: Some(2),
        ..Default::default()
    };
    node.controller.create_topic(&request, false).await.unwrap();
    let answer = node
        .controller
        .broker_heartbeat(Heartbeat {
            wants_shutdown: true,
            ..heartbeat(0, epoch, true)
        })
        .await
        .unwrap();
    assert!(
        !answer.fenced && answer.controlled_shutdown_done,
        "{answer:?}"
    );
    let led = |node: &Node| {
        node.controller
            .image()
            .topic("orders")
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.leader == 0)
    };
    assert!(led(&node));
    // Its session lives on (to be fenced once it expires): the node's next process
    // is also the next controller, which knows the old process is gone.
    node.log.shutdown().await;
    let node = start(&config(dir.path()), 2, 0).await;
    assert_eq!(node.join(0, 2).await, epoch + 1);
    assert!(led(&node));
    node.log.shutdown().await;
}

/// A node that does not lead keeps no sessions: calls are refused as retriable.
#[test]
fn errors_say_whether_to_retry() {
    let not_controller = MembershipCallError::NotController { node_id: 3 };
    assert!(not_controller.is_retriable());
    assert_eq!(
        not_controller.to_string(),
        "node 3 is not the active controller"
    );
    let no_leader = MembershipCallError::NoActiveController { node_id: 2 };
    assert!(no_leader.is_retriable());
    assert!(no_leader.to_string().contains("controller_quorum_voters"));
    let invalid = MembershipCallError::Refused(MembershipError::InvalidNodeId(-1));
    assert!(!invalid.is_retriable());
    let timed_out = MembershipCallError::from(ProposeError::TimedOut {
        timeout: std::time::Duration::from_secs(10),
    });
    assert!(timed_out.is_retriable());
    assert!(!MembershipCallError::from(ProposeError::ShutDown).is_retriable());
    // They travel as JSON.
    let json = serde_json::to_string(&invalid).unwrap();
    assert_eq!(
        serde_json::from_str::<MembershipCallError>(&json).unwrap(),
        invalid
    );
}
