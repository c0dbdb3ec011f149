//! The controller: the only writer of metadata, and the shell around the pure
//! [front end](super::front_end). For each request it takes the log's lock, asks the
//! front end for the records (with real ids and this broker's limits), appends them
//! durably to the metadata log, applies them to the image and publishes the new image.
//!
//! On a single node the controller is local and its log is a file; the cluster issue
//! replaces the log with a Raft quorum behind the same methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::front_end::{self, Inputs, MetadataRequest, Randomness};
pub use super::front_end::{CreateTopic, TOPIC_PARTITIONS_MAX, TopicError, validate_topic_name};
use super::image::{MetadataImage, TopicImage};
use super::log::MetadataLog;
use super::position::LogPosition;
use super::records::MetadataRecord;
use crate::config::BrokerConfig;
use crate::storage::StorageError;

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

/// The position of the `index`th record of the local metadata log. The local log has
/// no terms or leaders, and no batches either: every record is its own entry, so that
/// replaying the file gives the same positions as the appends did.
fn local_position(index: u64) -> LogPosition {
    LogPosition {
        term: 0,
        leader: 0,
        index,
    }
}

/// Applies records as the entries that follow the image's position.
fn apply_local(image: &mut MetadataImage, records: &[MetadataRecord]) {
    for record in records {
        let index = image
            .applied_position()
            .map_or(0, |position| position.index)
            + 1;
        image
            .apply(local_position(index), record)
            .expect("the next index always follows the applied position");
    }
}

#[derive(Debug)]
pub struct Controller {
    defaults: BrokerConfig,
    /// Most partitions this broker may hold.
    partitions_max: usize,
    log: Mutex<MetadataLog>,
    image: watch::Sender<Arc<MetadataImage>>,
}

impl Controller {
    /// Opens the metadata log, replays it, initialises a new cluster on first start and
    /// registers this broker at `host:port`.
    pub fn open(config: &BrokerConfig, host: &str, port: u16) -> Result<Self, StorageError> {
        let (log, records) = MetadataLog::open(&config.data_dir)?;
        let mut image = MetadataImage::default();
        image.controller_id = config.node_id;
        apply_local(&mut image, &records);
        let controller = Self {
            defaults: config.clone(),
            partitions_max: crate::resources::partitions_max(config),
            log: Mutex::new(log),
            image: watch::Sender::new(Arc::new(image)),
        };
        let startup = [
            MetadataRequest::InitializeCluster,
            MetadataRequest::RegisterBroker {
                node_id: config.node_id,
                host: host.to_owned(),
                port,
            },
        ];
        controller.submit(&startup).map_err(|error| match error {
            TopicError::Storage(error) => error,
            refused => unreachable!("starting up cannot be refused: {refused}"),
        })?;
        Ok(controller)
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver of every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Asks the front end for the records of `requests` against `image`, each request
    /// seeing the records of those before it.
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
            // Without heartbeats yet, every registered broker counts as live.
            let live_brokers: BTreeSet<i32> = after.brokers.keys().copied().collect();
            let inputs = Inputs {
                defaults: &self.defaults,
                live_brokers: &live_brokers,
                partition_budgets: &partition_budgets,
            };
            let more = front_end::records_for(request, &after, &inputs, &mut SystemRandomness)?;
            apply_local(&mut after, &more);
            records.extend(more);
        }
        Ok((records, after))
    }

    /// Carries out requests as one step and returns the image before and after. The
    /// log's lock is held from the front end's decision to publication, so two
    /// concurrent requests (two creations of one name, two config changes of one topic)
    /// cannot both be decided against the same image.
    fn submit(
        &self,
        requests: &[MetadataRequest],
    ) -> Result<(Arc<MetadataImage>, Arc<MetadataImage>), TopicError> {
        let mut log = self.log.lock().expect("metadata lock poisoned");
        let before = self.image();
        let (records, after) = self.records_for(&before, requests)?;
        if records.is_empty() {
            return Ok((before.clone(), before));
        }
        log.append(&records)?;
        let after = Arc::new(after);
        self.image.send_replace(after.clone());
        Ok((before, after))
    }

    /// The image a request would make, without making it.
    fn preview(&self, request: &MetadataRequest) -> Result<MetadataImage, TopicError> {
        let (_, after) = self.records_for(&self.image(), std::slice::from_ref(request))?;
        Ok(after)
    }

    /// Creates a topic (or only checks that it could be created).
    pub fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let create = MetadataRequest::CreateTopic(request.clone());
        let after = if validate_only {
            Arc::new(self.preview(&create)?)
        } else {
            self.submit(std::slice::from_ref(&create))?.1
        };
        Ok(after.topic(&request.name).expect("just created").clone())
    }

    /// Deletes a topic; returns what it was.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, TopicError> {
        let (before, _) = self.submit(&[MetadataRequest::DeleteTopic {
            name: name.to_owned(),
        }])?;
        Ok(before.topic(name).expect("just deleted").clone())
    }

    /// Bumps a partition's leader epoch, keeping its leader and in-sync set: its log
    /// was recreated after a loss, and followers and consumers that check epochs must
    /// see that the history changed.
    pub fn bump_leader_epoch(&self, name: &str, partition: i32) -> Result<i32, TopicError> {
        let (_, after) = self.submit(&[MetadataRequest::BumpLeaderEpoch {
            name: name.to_owned(),
            partition,
        }])?;
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
    /// log's lock, so concurrent changes of different keys are never lost.
    pub fn alter_topic_config(
        &self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let (_, after) = self.submit(&[MetadataRequest::AlterTopicConfig {
            name: name.to_owned(),
            changes: changes.clone(),
        }])?;
        Ok(after.topic(name).expect("just changed").clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Topics are created, refused when invalid, survive a restart, have their config
    /// changed incrementally (set, remove, invalid change refused whole) and are deleted.
    #[test]
    fn topic_lifecycle_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let controller = Controller::open(&config, "127.0.0.1", 9192).unwrap();
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(3),
            ..Default::default()
        };
        let topic = controller.create_topic(&request, false).unwrap();
        assert_eq!(topic.partitions.len(), 3);
        assert!(matches!(
            controller.create_topic(&request, false),
            Err(TopicError::AlreadyExists(_))
        ));
        let too_many = CreateTopic {
            name: "x".into(),
            replication_factor: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&too_many, false),
            Err(TopicError::NotEnoughBrokers { .. })
        ));
        let bad_name = CreateTopic {
            name: "a/b".into(),
            ..Default::default()
        };
        assert!(matches!(
            controller.create_topic(&bad_name, false),
            Err(TopicError::InvalidName(_))
        ));
        let cluster_id = controller.image().cluster_id.clone();
        drop(controller);

        let controller = Controller::open(&config, "127.0.0.1", 9192).unwrap();
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
            .unwrap();
        assert_eq!(changed.config.len(), 2);
        let changed = controller
            .alter_topic_config("orders", &[("retention.ms".to_string(), None)].into())
            .unwrap();
        assert_eq!(
            changed.config,
            [("segment.bytes".to_string(), "16777216".to_string())].into()
        );
        assert!(matches!(
            controller.alter_topic_config(
                "orders",
                &[("segment.bytes".to_string(), Some("1".to_string()))].into()
            ),
            Err(TopicError::InvalidConfig(_))
        ));
        assert_eq!(controller.image().topic("orders").unwrap().config.len(), 1);
        controller.delete_topic("orders").unwrap();
        assert!(controller.image().topic("orders").is_none());
        assert!(matches!(
            controller.delete_topic("orders"),
            Err(TopicError::UnknownTopic(_))
        ));
    }

    /// A validate-only creation answers with the topic it would make and changes
    /// nothing; the image rebuilt from the log on restart is the one published before,
    /// at the same position (one entry per record), and a broker at a new address is
    /// registered again.
    #[test]
    fn replay_gives_the_published_image() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let controller = Controller::open(&config, "127.0.0.1", 9192).unwrap();
        let started = controller.image();
        assert_eq!(started.applied_position(), Some(local_position(2)));
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(2),
            ..Default::default()
        };
        let preview = controller.create_topic(&request, true).unwrap();
        assert_eq!(preview.partitions.len(), 2);
        assert_eq!(controller.image(), started);
        controller.create_topic(&request, false).unwrap();
        controller.bump_leader_epoch("orders", 1).unwrap();
        assert_eq!(controller.bump_leader_epoch("orders", 1).unwrap(), 2);
        let published = controller.image();
        assert_eq!(published.applied_position(), Some(local_position(5)));
        drop(controller);

        let controller = Controller::open(&config, "127.0.0.1", 9192).unwrap();
        assert_eq!(controller.image(), published);
        drop(controller);
        let controller = Controller::open(&config, "127.0.0.1", 9999).unwrap();
        assert_eq!(controller.image().brokers[&config.node_id].port, 9999);
        assert_eq!(
            controller.image().applied_position(),
            Some(local_position(6))
        );
    }

    /// Requests from many threads at once are decided one at a time, each against the
    /// image the one before it published: of eight creations of one name exactly one
    /// succeeds, and four changes of different keys all stay.
    #[test]
    fn concurrent_requests_are_decided_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let controller = Controller::open(&config, "127.0.0.1", 9192).unwrap();
        let request = CreateTopic {
            name: "orders".into(),
            ..Default::default()
        };
        let created = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| controller.create_topic(&request, false).is_ok()))
                .collect();
            let results: Vec<bool> = threads
                .into_iter()
                .map(|thread| thread.join().unwrap())
                .collect();
            results.into_iter().filter(|created| *created).count()
        });
        assert_eq!(created, 1);

        let keys = ["flush.bytes", "flush.ms", "retention.ms", "segment.ms"];
        std::thread::scope(|scope| {
            for key in keys {
                let controller = &controller;
                scope.spawn(move || {
                    let change = BTreeMap::from([(key.to_owned(), Some("5000".to_owned()))]);
                    controller.alter_topic_config("orders", &change).unwrap();
                });
            }
        });
        let image = controller.image();
        let config = &image.topic("orders").unwrap().config;
        assert_eq!(config.keys().collect::<Vec<_>>(), keys);
    }
}
