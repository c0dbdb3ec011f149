//! The controller: the only writer of metadata, and the shell around the pure
//! [front end](super::front_end). For each request it takes its lock, asks the front end
//! for the records (with real ids and this broker's limits), proposes them to the
//! [metadata log](super::metadata_log) and waits until they are applied, then answers
//! from the image they made.
//!
//! The lock is held from the front end's decision until the records are applied, so that
//! no two requests are decided against the same image. On a single broker this is the
//! only controller; with several, only the quorum's leader can carry out a change.
//!
//! It also keeps the brokers' sessions ([`BrokerSessions`]): brokers register and
//! heartbeat here (this broker too, through [`super::heartbeats`]), and a task of the
//! broker's ticks it so that brokers whose sessions expire are fenced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use super::broker_sessions::{
    BrokerSessions, HeartbeatAnswer, MembershipCallError, MonotonicClock, Registered, SessionClock,
    applied_index,
};
use super::front_end::{self, BrokerRegistration, Inputs, MetadataRequest, Randomness};
pub use super::front_end::{CreateTopic, TOPIC_PARTITIONS_MAX, TopicError, validate_topic_name};
use super::image::{MetadataImage, TopicImage};
use super::membership::{Heartbeat, MembershipError};
use super::metadata_log::MetadataLog;
use super::position::LogPosition;
use super::records::MetadataRecord;
use crate::config::BrokerConfig;

/// The controller's randomness: ids and placement offsets from the operating system's
/// random source (through `uuid`'s version 4 ids).
struct SystemRandomness;

impl Randomness for SystemRandomness {
    fn new_id(&mut self) -> uuid::Uuid {
        uuid::Uuid::new_v4()
    }

    fn below(&mut self, bound: usize) -> usize {
        // 122 random bits: the bias of the remainder is far below anything placement
        // could notice.
        (uuid::Uuid::new_v4().as_u128() % bound as u128) as usize
    }
}

/// Applies records to a copy of the image as if they were the next entry, so that the
/// front end can decide the next request of a batch, or a validate-only request, against
/// the image they would make. The position is only the copy's; the log gives the real
/// one.
fn apply_preview(image: &mut MetadataImage, records: &[MetadataRecord]) {
    let next = image.applied_position().map_or(
        LogPosition {
            term: 0,
            leader: 0,
            index: 1,
        },
        |position| LogPosition {
            index: position.index + 1,
            ..position
        },
    );
    image
        .apply_batch(next, records)
        .expect("the next index always follows the applied position");
}

#[derive(Debug)]
pub struct Controller {
    defaults: BrokerConfig,
    /// Most partitions this broker may hold.
    partitions_max: usize,
    log: Arc<MetadataLog>,
    /// Held from a request's decision until its records are applied.
    deciding: Mutex<()>,
    /// The brokers' sessions, kept while this node's quorum member leads.
    sessions: BrokerSessions,
}

impl Controller {
    /// Takes over the metadata log and initialises a new cluster (a log without a
    /// cluster id). `incarnation_id` is this process's: its broker registers with it
    /// (see [`super::heartbeats`]), like every other broker.
    pub async fn start(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        incarnation_id: uuid::Uuid,
    ) -> Result<Self, TopicError> {
        Self::start_with_clock(config, log, incarnation_id, Arc::new(MonotonicClock::new())).await
    }

    /// [`start`](Self::start) with the clock broker sessions are timed by.
    pub async fn start_with_clock(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        incarnation_id: uuid::Uuid,
        clock: Arc<dyn SessionClock>,
    ) -> Result<Self, TopicError> {
        let sessions = BrokerSessions::new(
            config.node_id,
            incarnation_id,
            config.broker_session_timeout_ms,
            log.leadership(),
            clock,
        );
        let controller = Self {
            defaults: config.clone(),
            partitions_max: crate::resources::partitions_max(config),
            log,
            deciding: Mutex::new(()),
            sessions,
        };
        controller
            .submit(&[MetadataRequest::InitializeCluster])
            .await?;
        Ok(controller)
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.log.image()
    }

    /// A receiver of the current image and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.log.images()
    }

    /// Asks the front end for the records of `requests` against `image`, each request
    /// seeing the records of those before it; returns them and the image they would
    /// make.
    fn records_for(
        &self,
        image: &MetadataImage,
        requests: &[MetadataRequest],
    ) -> Result<(Vec<MetadataRecord>, MetadataImage), TopicError> {
        // Only this broker's budget is known here; in a cluster every broker will
        // report its own.
        let partition_budgets = BTreeMap::from([(self.defaults.node_id, self.partitions_max)]);
        let mut after = image.clone();
        let mut records = Vec::new();
        for request in requests {
            // Every registered broker; the front end skips those the image shows fenced
            // (their sessions expired, or they have not caught up yet).
            let live_brokers: BTreeSet<i32> = after.brokers.keys().copied().collect();
            let inputs = Inputs {
                defaults: &self.defaults,
                live_brokers: &live_brokers,
                partition_budgets: &partition_budgets,
            };
            let more = front_end::records_for(request, &after, &inputs, &mut SystemRandomness)?;
            apply_preview(&mut after, &more);
            records.extend(more);
        }
        Ok((records, after))
    }

    /// Carries out requests as one entry of the log and returns the image before and
    /// after. The lock is held from the front end's decision until the entry is
    /// applied, so two concurrent requests (two creations of one name, two config
    /// changes of one topic) cannot both be decided against the same image.
    async fn submit(
        &self,
        requests: &[MetadataRequest],
    ) -> Result<(Arc<MetadataImage>, Arc<MetadataImage>), TopicError> {
        let _deciding = self.deciding.lock().await;
        let before = self.image();
        let (records, _) = self.records_for(&before, requests)?;
        if records.is_empty() {
            return Ok((before.clone(), before));
        }
        let after = self.log.propose(records).await?;
        Ok((before, after))
    }

    /// Creates a topic (or only checks that it could be created).
    pub async fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let create = MetadataRequest::CreateTopic(request.clone());
        let after = if validate_only {
            let (_, after) = self.records_for(&self.image(), std::slice::from_ref(&create))?;
            Arc::new(after)
        } else {
            self.submit(std::slice::from_ref(&create)).await?.1
        };
        Ok(after.topic(&request.name).expect("just created").clone())
    }

    /// Deletes a topic; returns what it was.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, TopicError> {
        let (before, _) = self
            .submit(&[MetadataRequest::DeleteTopic {
                name: name.to_owned(),
            }])
            .await?;
        Ok(before.topic(name).expect("just deleted").clone())
    }

    /// Bumps a partition's leader epoch, keeping its leader and in-sync set: its log
    /// was recreated after a loss, and followers and consumers that check epochs must
    /// see that the history changed.
    pub async fn bump_leader_epoch(&self, name: &str, partition: i32) -> Result<i32, TopicError> {
        let (_, after) = self
            .submit(&[MetadataRequest::BumpLeaderEpoch {
                name: name.to_owned(),
                partition,
            }])
            .await?;
        let topic = after.topic(name).expect("just changed");
        Ok(topic
            .partition(partition)
            .expect("just changed")
            .leader_epoch)
    }

    /// Changes a topic's config overrides incrementally, like Kafka's
    /// IncrementalAlterConfigs: a key with a value sets that override, a key with `None`
    /// removes it (the broker default applies again), keys not named keep their
    /// overrides. The merged result is validated as a whole and committed under the
    /// controller's lock, so concurrent changes of different keys are never lost.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let (_, after) = self
            .submit(&[MetadataRequest::AlterTopicConfig {
                name: name.to_owned(),
                changes: changes.clone(),
            }])
            .await?;
        Ok(after.topic(name).expect("just changed").clone())
    }
}

impl Controller {
    /// A broker process registers (see [`super::membership`]): it is recorded fenced,
    /// with the next broker epoch, which is returned once applied. Refused while
    /// another process of the node has a live session.
    pub async fn register_broker(
        &self,
        registration: &BrokerRegistration,
    ) -> Result<Registered, MembershipCallError> {
        let requests = self.sessions.register(&self.image(), registration)?;
        let (_, after) = self.submit(&requests).await?;
        let node_id = registration.node_id;
        match after.brokers.get(&node_id) {
            Some(broker) if broker.incarnation_id == registration.incarnation_id => {
                Ok(Registered {
                    broker_epoch: broker.broker_epoch,
                    metadata_index: applied_index(&after),
                })
            }
            // Another process of the node registered between the decision and now.
            other => Err(MembershipError::DuplicateNodeId {
                node_id,
                live_incarnation: other
                    .map(|broker| broker.incarnation_id)
                    .unwrap_or_default(),
            }
            .into()),
        }
    }

    /// A broker's heartbeat: renews its session, and unfences it (caught up) or fences
    /// it (shutting down) as membership decides. What that calls for is applied before
    /// the answer, which is then given from the image it made, so that a broker is
    /// unfenced, or told its controlled shutdown is done, by one heartbeat.
    pub async fn broker_heartbeat(
        &self,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatAnswer, MembershipCallError> {
        let mut image = self.image();
        let mut reply = self.sessions.heartbeat(&image, heartbeat)?;
        if !reply.propose.is_empty() {
            image = self.submit(&reply.propose).await?.1;
            // Asked again of the new image: what the first answer called for is done,
            // so this one calls for nothing more (or a later heartbeat proposes it).
            reply = self.sessions.heartbeat(&image, heartbeat)?;
        }
        Ok(HeartbeatAnswer {
            fenced: reply.fenced,
            controlled_shutdown_done: reply.controlled_shutdown_done,
            metadata_index: applied_index(&image),
        })
    }

    /// Fences the brokers whose sessions expired, when this node is the active
    /// controller; returns how many requests that took.
    pub async fn expire_broker_sessions(&self) -> Result<usize, MembershipCallError> {
        let requests = self.sessions.tick(&self.image());
        if !requests.is_empty() {
            self.submit(&requests).await?;
        }
        Ok(requests.len())
    }

    /// Every `interval` until `shutdown` turns true (or its sender is dropped): fences
    /// the brokers whose sessions expired, while this node is the active controller.
    /// A node that starts leading gives every broker a fresh session first.
    pub async fn run_broker_sessions(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                stop = shutdown.wait_for(|stop| *stop) => {
                    let _stopped = stop;
                    return;
                }
            }
            match self.expire_broker_sessions().await {
                Ok(0) => {}
                Ok(fenced) => tracing::info!(fenced, "fenced brokers whose sessions expired"),
                Err(error) => tracing::warn!(%error, "cannot fence brokers whose sessions expired"),
            }
        }
    }
}

/// For tests elsewhere in the crate: a started controller whose own broker is
/// registered at `host:port` and unfenced, as `Broker::start` leaves it.
#[cfg(test)]
impl Controller {
    pub(crate) async fn start_registered(
        config: &BrokerConfig,
        log: Arc<MetadataLog>,
        host: &str,
        port: u16,
    ) -> Self {
        let incarnation_id = uuid::Uuid::new_v4();
        let controller = Self::start(config, log.clone(), incarnation_id)
            .await
            .expect("the controller starts");
        let registration = BrokerRegistration {
            node_id: config.node_id,
            incarnation_id,
            host: host.to_owned(),
            port,
            rack: None,
        };
        let registered = controller
            .register_broker(&registration)
            .await
            .expect("the broker registers");
        let answer = controller
            .broker_heartbeat(Heartbeat {
                node_id: config.node_id,
                broker_epoch: registered.broker_epoch,
                caught_up: true,
                wants_shutdown: false,
            })
            .await
            .expect("the broker heartbeats");
        assert!(
            !answer.fenced,
            "a caught-up broker is unfenced by one heartbeat"
        );
        controller
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::metadata_log::ProposeError;

    /// Starts the metadata log (a quorum of one on a port of 127.0.0.1 the system
    /// picks) and a controller that registers the broker at `port`.
    async fn start(config: &BrokerConfig, port: u16) -> (Arc<MetadataLog>, Controller) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = Arc::new(MetadataLog::start(config, listener).await.unwrap());
        let controller = Controller::start_registered(config, log.clone(), "127.0.0.1", port).await;
        (log, controller)
    }

    /// Topics are created, refused when invalid, survive a restart, have their config
    /// changed incrementally (set, remove, invalid change refused whole) and are deleted.
    #[tokio::test]
    async fn topic_lifecycle_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(3),
            ..Default::default()
        };
        let topic = controller.create_topic(&request, false).await.unwrap();
        assert_eq!(topic.partitions.len(), 3);
        assert!(matches!(
            controller.create_topic(&request, false).await,
            Err(TopicError::AlreadyExists(_))
        ));
        let too_many = CreateTopic {
            name: "x".into(),
            replication_factor: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&too_many, false).await,
            Err(TopicError::NotEnoughBrokers { .. })
        ));
        let bad_name = CreateTopic {
            name: "a/b".into(),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&bad_name, false).await,
            Err(TopicError::InvalidName(_))
        ));
        let cluster_id = controller.image().cluster_id.clone();
        log.shutdown().await;

        let (log, controller) = start(&config, 9192).await;
        assert_eq!(controller.image().cluster_id, cluster_id);
        assert_eq!(
            controller.image().topic("orders").unwrap().topic_id,
            topic.topic_id
        );
        let changed = controller
            .alter_topic_config(
                "orders",
                &[
                    ("retention.ms".to_string(), Some("1000".to_string())),
                    ("segment.bytes".to_string(), Some("16777216".to_string())),
                ]
                .into(),
            )
            .await
            .unwrap();
        assert_eq!(changed.config.len(), 2);
        let changed = controller
            .alter_topic_config("orders", &[("retention.ms".to_string(), None)].into())
            .await
            .unwrap();
        assert_eq!(
            changed.config,
            [("segment.bytes".to_string(), "16777216".to_string())].into()
        );
        assert!(matches!(
            controller
                .alter_topic_config(
                    "orders",
                    &[("segment.bytes".to_string(), Some("1".to_string()))].into()
                )
                .await,
            Err(TopicError::InvalidConfig(_))
        ));
        assert_eq!(controller.image().topic("orders").unwrap().config.len(), 1);
        controller.delete_topic("orders").await.unwrap();
        assert!(controller.image().topic("orders").is_none());
        assert!(matches!(
            controller.delete_topic("orders").await,
            Err(TopicError::UnknownTopic(_))
        ));
        log.shutdown().await;
    }

    /// A validate-only creation answers with the topic it would make and changes
    /// nothing; each change is one entry of the log, after which the image names this
    /// broker as the controller; the image rebuilt on restart (from the snapshot and the
    /// log after it) is the one published before, and a new process at a new address
    /// is registered at it with the next broker epoch.
    #[tokio::test]
    async fn restart_gives_the_published_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_tests(dir.path());
        config.node_id = 3;
        // A snapshot every few entries, so that restarts read one and the log after it.
        config.metadata_snapshot_entries = 3;
        let (log, controller) = start(&config, 9192).await;
        let started = controller.image();
        assert_eq!(started.controller_id, 3);
        assert_eq!(started.brokers[&3].port, 9192);
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(2),
            ..Default::default()
        };
        let preview = controller.create_topic(&request, true).await.unwrap();
        assert_eq!(preview.partitions.len(), 2);
        assert_eq!(controller.image(), started);
        controller.create_topic(&request, false).await.unwrap();
        let created = controller.image().applied_position().unwrap();
        assert_eq!(created.index, started.applied_position().unwrap().index + 1);
        for epoch in 1..=5 {
            assert_eq!(
                controller.bump_leader_epoch("orders", 1).await.unwrap(),
                epoch
            );
        }
        let published = controller.image();
        log.shutdown().await;
        assert!(
            dir.path()
                .join("__cluster_metadata/raft.snapshot")
                .is_file()
        );

        // Started without registering its broker, which would change the image.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = Arc::new(MetadataLog::start(&config, listener).await.unwrap());
        let controller = Controller::start(&config, log.clone(), uuid::Uuid::new_v4())
            .await
            .unwrap();
        let restarted = controller.image();
        assert_eq!(restarted.snapshot().records, published.snapshot().records);
        assert_eq!(restarted.records_applied, published.records_applied);
        assert_eq!(restarted.controller_id, 3);
        log.shutdown().await;
        let (log, controller) = start(&config, 9999).await;
        assert_eq!(controller.image().brokers[&3].port, 9999);
        assert_eq!(controller.image().brokers[&3].broker_epoch, 2);
        log.shutdown().await;
    }

    /// Requests from many tasks at once are decided one at a time, each against the
    /// image the one before it made: of eight creations of one name exactly one
    /// succeeds, and four changes of different keys all stay.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_decided_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        let controller = Arc::new(controller);
        let request = CreateTopic {
            name: "orders".into(),
            ..Default::default()
        };
        let creations: Vec<_> = (0..8)
            .map(|_| {
                let (controller, request) = (controller.clone(), request.clone());
                tokio::spawn(async move { controller.create_topic(&request, false).await.is_ok() })
            })
            .collect();
        let mut created = 0;
        for creation in creations {
            created += usize::from(creation.await.unwrap());
        }
        assert_eq!(created, 1);

        let keys = ["flush.bytes", "flush.ms", "retention.ms", "segment.ms"];
        let changes: Vec<_> = keys
            .into_iter()
            .map(|key| {
                let controller = controller.clone();
                tokio::spawn(async move {
                    let change = BTreeMap::from([(key.to_owned(), Some("5000".to_owned()))]);
                    controller
                        .alter_topic_config("orders", &change)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for change in changes {
            change.await.unwrap();
        }
        let image = controller.image();
        let config = &image.topic("orders").unwrap().config;
        assert_eq!(config.keys().collect::<Vec<_>>(), keys);
        log.shutdown().await;
    }

    /// Once the metadata log has stopped, a change fails with an error that says so
    /// and that clients may retry elsewhere, and the last image stays readable.
    #[tokio::test]
    async fn a_stopped_log_refuses_changes_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let (log, controller) = start(&config, 9192).await;
        log.shutdown().await;
        let error = controller
            .create_topic(
                &CreateTopic {
                    name: "orders".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, TopicError::Metadata(ProposeError::ShutDown)),
            "{error:?}"
        );
        assert_eq!(
            error.error_code(),
            fjord_protocol::ErrorCode::BrokerShuttingDown
        );
        assert!(!controller.image().cluster_id.is_empty());
    }
}
