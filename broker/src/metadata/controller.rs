//! The controller: the only writer of metadata. It validates a request against the
//! current image, turns it into records, makes them durable in the metadata log,
//! applies them and publishes the new image.
//!
//! On a single node the controller is local and its log is a file; the cluster issue
//! replaces the log with a Raft quorum behind the same methods.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use fjord_protocol::ErrorCode;
use fjord_protocol::limits::TOPIC_NAME_BYTES_MAX;
use tokio::sync::watch;

use super::image::{MetadataImage, TopicImage};
use super::log::MetadataLog;
use super::position::LogPosition;
use super::records::MetadataRecord;
use super::topic_config::{self, TopicConfigError};
use crate::config::BrokerConfig;
use crate::storage::StorageError;

/// Most partitions one topic may have.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// A request to create a topic; `None` takes the broker's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub config: BTreeMap<String, String>,
}

/// Why a topic operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The topic belongs to the broker itself (such as the consumer offsets topic)
    /// and clients may not delete it.
    #[error("topic '{0}' is internal to the broker and cannot be deleted")]
    Protected(String),
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// More partitions than this broker's budget leaves room for (see
    /// [`crate::resources::partitions_max`]).
    #[error(
        "{requested} more partitions exceed this broker's limit: {held} of {limit} are held (max_partitions, or the open-file limit)"
    )]
    PartitionLimit {
        requested: usize,
        held: usize,
        limit: usize,
    },
    /// More replicas than brokers: the request is valid, the cluster too small for it.
    #[error("replication factor {requested} exceeds the number of brokers ({available})")]
    NotEnoughBrokers { requested: i16, available: usize },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// Each value is valid, but not together with the others and the broker's defaults.
    #[error("inconsistent topic config: {0}")]
    InconsistentConfig(String),
    #[error("metadata storage failed: {0}")]
    Storage(#[from] StorageError),
}

impl TopicError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            Self::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
            Self::InvalidName(_) | Self::Protected(_) => ErrorCode::InvalidTopic,
            Self::InvalidPartitions(_) | Self::PartitionLimit { .. } => {
                ErrorCode::InvalidPartitions
            }
            Self::InvalidReplicationFactor(_) | Self::NotEnoughBrokers { .. } => {
                ErrorCode::InvalidReplicationFactor
            }
            Self::InvalidConfig(_) | Self::InconsistentConfig(_) => ErrorCode::InvalidConfig,
            Self::Storage(_) => ErrorCode::StorageError,
        }
    }
}

impl From<TopicConfigError> for TopicError {
    fn from(error: TopicConfigError) -> Self {
        match error {
            TopicConfigError::Invalid(reason) => Self::InvalidConfig(reason),
            TopicConfigError::Inconsistent(reason) => Self::InconsistentConfig(reason),
        }
    }
}

/// Checks a topic name: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason: String| Err(TopicError::InvalidName(reason));
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(format!(
            "'{name}' must have 1 to {TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return invalid(format!("'{name}' is reserved"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "'{name}' contains '{bad}'; allowed are letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
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
        let mut startup = Vec::new();
        if controller.image().cluster_id.is_empty() {
            startup.push(MetadataRecord::ClusterInitialized {
                cluster_id: uuid::Uuid::new_v4().to_string(),
            });
        }
        let registered = controller
            .image()
            .brokers
            .get(&config.node_id)
            .map(|b| (b.host.clone(), b.port));
        if registered != Some((host.to_owned(), port)) {
            startup.push(MetadataRecord::BrokerRegistered {
                node_id: config.node_id,
                host: host.to_owned(),
                port,
            });
        }
        if !startup.is_empty() {
            controller.commit(&startup)?;
        }
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

    /// Appends records durably, applies them and publishes the new image.
    fn commit(&self, records: &[MetadataRecord]) -> Result<Arc<MetadataImage>, StorageError> {
        let mut log = self.log.lock().expect("metadata lock poisoned");
        self.commit_locked(&mut log, records)
    }

    /// [`Controller::commit`] for a caller that already holds the log's lock.
    fn commit_locked(
        &self,
        log: &mut MetadataLog,
        records: &[MetadataRecord],
    ) -> Result<Arc<MetadataImage>, StorageError> {
        log.append(records)?;
        let mut image = (*self.image()).clone();
        apply_local(&mut image, records);
        let image = Arc::new(image);
        self.image.send_replace(image.clone());
        Ok(image)
    }

    /// Validates an operation against the current image and commits its records as one
    /// step: the log's lock is held from validation to publication, so two concurrent
    /// creations of the same name (or two config changes of one topic) cannot both
    /// validate against the same image.
    fn locked<T>(
        &self,
        operation: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), TopicError>,
    ) -> Result<T, TopicError> {
        let mut log = self.log.lock().expect("metadata lock poisoned");
        let (records, value) = operation(&self.image())?;
        if !records.is_empty() {
            self.commit_locked(&mut log, &records)?;
        }
        Ok(value)
    }

    /// Creates a topic (or only checks that it could be created).
    pub fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        validate_topic_name(&request.name)?;
        let partitions = request
            .partitions
            .unwrap_or(self.defaults.default_partitions);
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions}; must be between 1 and {TOPIC_PARTITIONS_MAX}"
            )));
        }
        let replication_factor = request
            .replication_factor
            .unwrap_or(self.defaults.default_replication_factor);
        topic_config::resolve(&self.defaults, &request.config)?;
        let topic_id = uuid::Uuid::new_v4();
        let name = request.name.clone();
        let created = self.locked(|image| {
            if image.topic(&name).is_some() {
                return Err(TopicError::AlreadyExists(name.clone()));
            }
            let brokers: Vec<i32> = image.brokers.keys().copied().collect();
            if replication_factor < 1 {
                return Err(TopicError::InvalidReplicationFactor(format!(
                    "{replication_factor}; must be at least 1"
                )));
            }
            if replication_factor as usize > brokers.len() {
                return Err(TopicError::NotEnoughBrokers {
                    requested: replication_factor,
                    available: brokers.len(),
                });
            }
            let replicas: Vec<Vec<i32>> = (0..partitions as usize)
                .map(|partition| {
                    (0..replication_factor as usize)
                        .map(|r| brokers[(partition + r) % brokers.len()])
                        .collect()
                })
                .collect();
            // Only this broker's budget is known here; in a cluster every broker will
            // report its own.
            let node_id = self.defaults.node_id;
            let on_this_broker = |replicas: &Vec<i32>| replicas.contains(&node_id);
            let held = image
                .topics
                .values()
                .flat_map(|topic| &topic.partitions)
                .filter(|partition| on_this_broker(&partition.replicas))
                .count();
            let requested = replicas
                .iter()
                .filter(|replicas| on_this_broker(replicas))
                .count();
            if held + requested > self.partitions_max {
                return Err(TopicError::PartitionLimit {
                    requested,
                    held,
                    limit: self.partitions_max,
                });
            }
            let record = MetadataRecord::TopicCreated {
                name: name.clone(),
                topic_id: topic_id.to_string(),
                config: request.config.clone(),
                replicas,
            };
            let mut preview = image.clone();
            apply_local(&mut preview, std::slice::from_ref(&record));
            let topic = preview.topic(&name).expect("just created").clone();
            Ok((
                if validate_only {
                    Vec::new()
                } else {
                    vec![record]
                },
                topic,
            ))
        })?;
        Ok(created)
    }

    /// Deletes a topic; returns what it was.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, TopicError> {
        self.locked(|image| {
            let topic = image
                .topic(name)
                .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?
                .clone();
            Ok((
                vec![MetadataRecord::TopicDeleted {
                    topic_id: topic.topic_id.to_string(),
                }],
                topic,
            ))
        })
    }

    /// Bumps a partition's leader epoch, keeping its leader and in-sync set: its log
    /// was recreated after a loss, and followers and consumers that check epochs must
    /// see that the history changed.
    pub fn bump_leader_epoch(&self, name: &str, partition: i32) -> Result<i32, TopicError> {
        self.locked(|image| {
            let topic = image
                .topic(name)
                .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?;
            let current = topic
                .partition(partition)
                .ok_or_else(|| TopicError::UnknownTopic(format!("{name}-{partition}")))?;
            let leader_epoch = current.leader_epoch + 1;
            Ok((
                vec![MetadataRecord::PartitionChanged {
                    topic_id: topic.topic_id.to_string(),
                    partition,
                    leader: current.leader,
                    leader_epoch,
                    isr: current.isr.clone(),
                }],
                leader_epoch,
            ))
        })
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
        self.locked(|image| {
            let topic = image
                .topic(name)
                .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?;
            let mut config = topic.config.clone();
            for (key, value) in changes {
                match value {
                    Some(value) => config.insert(key.clone(), value.clone()),
                    None => config.remove(key),
                };
            }
            topic_config::resolve(&self.defaults, &config)?;
            let record = MetadataRecord::TopicConfigChanged {
                topic_id: topic.topic_id.to_string(),
                config: config.clone(),
            };
            let mut updated = (**topic).clone();
            updated.config = config;
            Ok((vec![record], Arc::new(updated)))
        })
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
}
