//! The broker's side against a real controller (a quorum of one in a temporary
//! directory, the real clock): start-up returns registered and unfenced, a second
//! process of the node is refused after about one session timeout, failures are
//! retried or not as they say, and a controlled shutdown is done at once on a single
//! broker. Timings are printed, never asserted.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::metadata::MetadataLog;
use crate::metadata::front_end::CreateTopic;

const PATIENCE: Duration = Duration::from_secs(60);

struct Node {
    log: Arc<MetadataLog>,
    controller: Arc<Controller>,
    incarnation_id: uuid::Uuid,
}

async fn start(config: &BrokerConfig) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log = Arc::new(MetadataLog::start(config, listener).await.unwrap());
    let incarnation_id = uuid::Uuid::new_v4();
    let controller = Arc::new(
        Controller::start(config, log.clone(), incarnation_id)
            .await
            .unwrap(),
    );
    Node {
        log,
        controller,
        incarnation_id,
    }
}

fn registration(node_id: i32, incarnation_id: uuid::Uuid) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        incarnation_id,
        host: "127.0.0.1".into(),
        port: 9192,
        internal_address: String::new(),
        rack: None,
        external: None,
        held_replicas: None,
    }
}

fn timing() -> HeartbeatTiming {
    HeartbeatTiming {
        interval: Duration::from_millis(100),
        session_timeout: Duration::from_millis(500),
        start_wait: PATIENCE,
    }
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::for_tests(dir);
    config.broker_heartbeat_interval_ms = 100;
    config.broker_session_timeout_ms = 500;
    config
}

async fn join(node: &Node, link: Arc<dyn ControllerLink>) -> Result<HeartbeatsHandle, StartError> {
    BrokerHeartbeats::start(
        link,
        registration(0, node.incarnation_id),
        timing(),
        node.controller.subscribe(),
    )
    .await
}

/// A single broker is registered and unfenced when start-up returns; it stays so
/// while it heartbeats, and a controlled shutdown is confirmed at once (with no other
/// broker to move its leaderships to, it keeps them until it exits).
#[tokio::test]
async fn a_single_broker_joins_and_leaves_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path())).await;
    let started = std::time::Instant::now();
    let mut heartbeats = join(&node, Arc::new(LocalController(node.controller.clone())))
        .await
        .unwrap();
    println!("registered and unfenced in {:?}", started.elapsed());
    assert_eq!(heartbeats.broker_epoch(), 1);
    let broker = node.controller.image().brokers[&0].clone();
    assert!(!broker.fenced);
    assert_eq!(broker.incarnation_id, node.incarnation_id);
    node.controller
        .create_topic(
            &CreateTopic {
                name: "orders".into(),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    // Several heartbeat intervals and session timeouts later, still unfenced.
    let controller = node.controller.clone();
    let ticks = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            controller.expire_broker_sessions().await.unwrap();
        }
    });
    ticks.await.unwrap();
    assert!(!node.controller.image().brokers[&0].fenced);

    let asked = std::time::Instant::now();
    assert!(heartbeats.controlled_shutdown(PATIENCE).await);
    println!("controlled shutdown confirmed in {:?}", asked.elapsed());
    // Nothing could move (no other broker): it keeps leading until it exits.
    let image = node.controller.image();
    assert!(!image.brokers[&0].fenced);
    assert!(image.leads_any_partition(0));
    node.log.shutdown().await;
}

/// A second process with the node id of a live, heartbeating broker is refused; it
/// retries for about one session timeout and then gives up with one line that says
/// why, while the first stays registered and unfenced.
#[tokio::test]
async fn a_second_process_of_a_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path())).await;
    let link: Arc<dyn ControllerLink> = Arc::new(LocalController(node.controller.clone()));
    let _first = join(&node, link.clone()).await.unwrap();
    let started = std::time::Instant::now();
    let error = BrokerHeartbeats::start(
        link,
        registration(0, uuid::Uuid::new_v4()),
        timing(),
        node.controller.subscribe(),
    )
    .await
    .unwrap_err();
    println!(
        "second process refused after {:?}: {error}",
        started.elapsed()
    );
    assert!(matches!(
        error,
        StartError::DuplicateNodeId { node_id: 0, .. }
    ));
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains("two brokers have one node id"),
        "{message}"
    );
    assert!(message.contains("session timeout"), "{message}");
    let broker = node.controller.image().brokers[&0].clone();
    assert!(!broker.fenced);
    assert_eq!(broker.incarnation_id, node.incarnation_id);
    node.log.shutdown().await;
}

/// A link that fails its first registrations, retriably or not.
#[derive(Debug)]
struct Failing {
    inner: LocalController,
    failures: AtomicUsize,
    error: MembershipCallError,
}

impl ControllerLink for Failing {
    fn register<'a>(
        &'a self,
        registration: &'a BrokerRegistration,
    ) -> BoxFuture<'a, Result<Registered, MembershipCallError>> {
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if fail {
            let error = self.error.clone();
            Box::pin(async move { Err(error) })
        } else {
            self.inner.register(registration)
        }
    }

    fn heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> BoxFuture<'_, Result<HeartbeatAnswer, MembershipCallError>> {
        self.inner.heartbeat(heartbeat)
    }
}

/// Retriable failures (no active controller yet) are retried until registered; a
/// refusal that cannot change (an invalid registration) fails start-up at once.
#[tokio::test]
async fn failures_are_retried_only_when_they_may_pass() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(dir.path())).await;
    let failing = |failures, error| -> Arc<dyn ControllerLink> {
        Arc::new(Failing {
            inner: LocalController(node.controller.clone()),
            failures: AtomicUsize::new(failures),
            error,
        })
    };
    let refused = join(
        &node,
        failing(
            1,
            MembershipCallError::Refused(MembershipError::InvalidNodeId(-1)),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, StartError::Refused { .. }), "{refused:?}");
    assert!(node.controller.image().brokers.is_empty());

    let started = std::time::Instant::now();
    let heartbeats = join(
        &node,
        failing(3, MembershipCallError::NotController { node_id: 0 }),
    )
    .await
    .unwrap();
    println!("registered after three failures in {:?}", started.elapsed());
    assert_eq!(heartbeats.broker_epoch(), 1);
    assert!(!node.controller.image().brokers[&0].fenced);
    node.log.shutdown().await;
}
