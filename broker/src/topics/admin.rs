//! Topic administration: each operation changes the metadata through the controller
//! (waiting until the change is applied) and then waits until this broker's
//! [`Reconciler`] has carried the change to its partition logs (created, deleted or
//! reconfigured them), so that a topic is usable here as soon as its creation returns.
//! Each operation runs on a task of its own, so that it finishes even when its caller is
//! dropped (a client gone, a request timed out): a topic whose logs failed is undone.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::ErrorCode;

use super::partitions::Partitions;
use super::reconciler::Reconciler;
use crate::metadata::controller::validate_topic_name;
use crate::metadata::{Controller, CreateTopic, TopicError, TopicImage};
use crate::storage::{PartitionLog, RecoverError, RecoveryAction, StorageError, TopicPartition};

/// Creates, deletes and reconfigures topics, and recovers offline partitions.
#[derive(Debug, Clone)]
pub struct TopicAdmin {
    controller: Arc<Controller>,
    partitions: Partitions,
    /// This broker's reconciler, which carries metadata changes to the partition logs.
    reconciler: Reconciler,
    /// Whether a topic that a client names is created on the fly (`auto_create_topics`).
    auto_create: bool,
    /// Topics that belong to the broker itself, which clients may not delete.
    protected: Arc<[String]>,
}

impl TopicAdmin {
    pub fn new(
        controller: Arc<Controller>,
        partitions: Partitions,
        reconciler: Reconciler,
        auto_create: bool,
        protected: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            controller,
            partitions,
            reconciler,
            auto_create,
            protected: protected.into_iter().collect(),
        }
    }

    /// Creates a topic and its partition logs.
    pub async fn create_topic(
        &self,
        request: CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let admin = self.clone();
        to_the_end(async move { admin.create_topic_and_logs(request, validate_only).await }).await
    }

    async fn create_topic_and_logs(
        &self,
        request: CreateTopic,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let topic = self
            .controller
            .create_topic(&request, validate_only)
            .await?;
        if validate_only {
            return Ok(topic);
        }
        if !self.wait_until_reconciled().await {
            // Shutting down: the topic is committed, and the reconciler creates its
            // logs at the next start.
            return Ok(topic);
        }
        if !self.still_current(&topic) {
            // Deleted (or deleted and re-created) meanwhile by another request: not
            // this creation's to undo.
            return Ok(topic);
        }
        if let Some(error) = self.missing_log(&topic) {
            self.undo_topic(&topic).await;
            return Err(error.into());
        }
        Ok(topic)
    }

    /// Whether the metadata still holds `topic` under its name, with its id.
    fn still_current(&self, topic: &TopicImage) -> bool {
        let image = self.partitions.metadata().current();
        image
            .topic(&topic.name)
            .is_some_and(|current| current.topic_id == topic.topic_id)
    }

    /// Waits until this broker's reconciler has brought its logs in line with the
    /// image the controller published last (which holds the change just made), so that
    /// a topic is usable here as soon as its creation returns.
    /// `false` when the reconciler stopped first (at shutdown).
    pub async fn wait_until_reconciled(&self) -> bool {
        let position = self.partitions.metadata().current().applied_position();
        let reconciled = self.reconciler.wait_for(position).await;
        if !reconciled {
            tracing::warn!("the reconciler stopped before it reconciled a topic change");
        }
        reconciled
    }

    /// Why a partition of the new `topic` that this broker holds has no log: the
    /// reconciler could not create it and took it offline.
    fn missing_log(&self, topic: &TopicImage) -> Option<StorageError> {
        let logs = self.partitions.logs();
        topic
            .partitions
            .iter()
            .filter(|partition| partition.replicas.contains(&self.partitions.node_id()))
            .map(|partition| TopicPartition::new(topic.name.clone(), partition.partition))
            .find(|partition| logs.get_of(partition, topic.topic_id).is_none())
            .map(|partition| StorageError::Offline {
                path: logs.data_dir().join(partition.to_string()),
                reason: logs
                    .offline_reason(&partition)
                    .unwrap_or_else(|| "its log was not created".to_owned()),
            })
    }

    /// Removes a topic whose partition logs could not all be created (the reconciler
    /// removes the logs it did create). Left in the metadata it would be listed but
    /// unusable.
    async fn undo_topic(&self, topic: &Arc<TopicImage>) {
        if !self.still_current(topic) {
            return;
        }
        if let Err(error) = self.controller.delete_topic(&topic.name).await {
            tracing::error!(topic = %topic.name, %error, "cannot undo a topic whose logs failed");
        }
        self.wait_until_reconciled().await;
    }

    /// Deletes a topic and its data. The broker's own topics (the committed offsets of
    /// consumer groups) cannot be deleted this way.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if self.protected.iter().any(|protected| protected == name) {
            return Err(TopicError::Protected(name.to_owned()));
        }
        let admin = self.clone();
        let name = name.to_owned();
        to_the_end(async move { admin.delete_topic_and_logs(&name).await }).await
    }

    async fn delete_topic_and_logs(&self, name: &str) -> Result<(), TopicError> {
        self.controller.delete_topic(name).await?;
        self.wait_until_reconciled().await;
        Ok(())
    }

    /// Changes a topic's config overrides incrementally (`Some` sets a key, `None`
    /// removes its override; see [`Controller::alter_topic_config`]) and applies the
    /// result to the topic's open logs.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let admin = self.clone();
        let name = name.to_owned();
        to_the_end(async move { admin.alter_config_and_logs(&name, changes).await }).await
    }

    async fn alter_config_and_logs(
        &self,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<Arc<TopicImage>, TopicError> {
        let topic = self.controller.alter_topic_config(name, &changes).await?;
        self.wait_until_reconciled().await;
        Ok(topic)
    }

    /// The topic, created on the fly when automatic creation is on.
    pub async fn topic_or_auto_create(&self, name: &str) -> Result<Arc<TopicImage>, ErrorCode> {
        let metadata = self.partitions.metadata();
        if let Some(topic) = metadata.current().topic(name) {
            return Ok(topic.clone());
        }
        // An invalid name is INVALID_TOPIC whether or not topics are created on demand.
        validate_topic_name(name).map_err(|error| error.error_code())?;
        if !self.auto_create {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        match self
            .create_topic(
                CreateTopic {
                    name: name.to_owned(),
                    ..Default::default()
                },
                false,
            )
            .await
        {
            Ok(topic) => Ok(topic),
            Err(TopicError::AlreadyExists(_)) => metadata
                .current()
                .topic(name)
                .cloned()
                .ok_or(ErrorCode::UnknownTopicOrPartition),
            Err(error) => Err(error.error_code()),
        }
    }

    /// Carries out an operator's decision for an offline partition (see
    /// [`crate::storage::LogManager::recover`]); `accept_loss` also bumps the
    /// partition's leader epoch.
    pub async fn recover_partition(
        &self,
        topic: &str,
        partition: i32,
        action: RecoveryAction,
    ) -> Result<Arc<PartitionLog>, RecoverError> {
        let admin = self.clone();
        let topic = topic.to_owned();
        to_the_end(async move { admin.recover_and_bump_epoch(topic, partition, action).await })
            .await
    }

    async fn recover_and_bump_epoch(
        &self,
        topic: String,
        partition: i32,
        action: RecoveryAction,
    ) -> Result<Arc<PartitionLog>, RecoverError> {
        let admin = self.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let image = admin.partitions.metadata().current();
            let topic_image = image
                .topic(&topic)
                .filter(|image| image.partition(partition).is_some())
                .ok_or_else(|| RecoverError::NotOffline(format!("{topic}-{partition}")))?;
            let config = admin.partitions.topic_config(topic_image).log;
            let partition_id = TopicPartition::new(topic.clone(), partition);
            let logs = admin.partitions.logs();
            let log = logs.recover(&partition_id, topic_image.topic_id, action, config)?;
            // The recovered log is a new one: a leader takes it up at once (the high
            // watermark follows from what it holds and the in-sync set).
            if let Some(held) = topic_image.partition(partition)
                && held.leader == admin.partitions.node_id()
            {
                admin.partitions.replicas().lead(
                    &partition_id,
                    topic_image.topic_id,
                    held,
                    admin.partitions.min_insync(topic_image, held),
                    log.clone(),
                );
            }
            if let Err(error) = logs.write_log_ends() {
                tracing::warn!(%error, "recording log ends failed");
            }
            Ok::<_, RecoverError>((log, topic))
        })
        .await
        .expect("partition recovery panicked");
        let (log, topic) = recovered?;
        if action == RecoveryAction::AcceptLoss
            && let Err(error) = self.controller.bump_leader_epoch(&topic, partition).await
        {
            tracing::error!(%topic, partition, %error, "cannot bump the leader epoch of a recreated partition");
        }
        Ok(log)
    }
}

/// Runs `work` on a task of its own and waits for it: dropping the caller does not
/// stop the work half way.
async fn to_the_end<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    tokio::spawn(work)
        .await
        .expect("a topic administration task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::metadata::MetadataLog;
    use crate::storage::{LogManager, SystemClock};
    use crate::topics::MetadataView;

    /// What a `TopicAdmin` stands on, over real files in `dir`: a log manager, a quorum of
    /// one, its controller and the partitions found through its images.
    struct Pieces {
        logs: Arc<LogManager>,
        metadata_log: Arc<MetadataLog>,
        controller: Arc<Controller>,
        partitions: Partitions,
    }

    async fn pieces(dir: &std::path::Path) -> Pieces {
        let config = BrokerConfig::for_tests(dir);
        let logs = Arc::new(LogManager::open(dir, Arc::new(SystemClock)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metadata_log = Arc::new(MetadataLog::start(&config, listener).await.unwrap());
        let controller = Arc::new(
            Controller::start_registered(&config, metadata_log.clone(), "127.0.0.1", 9192).await,
        );
        let view = MetadataView::new(controller.subscribe());
        let partitions = Partitions::new(view, logs.clone(), Arc::new(config));
        Pieces {
            logs,
            metadata_log,
            controller,
            partitions,
        }
    }

    /// A reconciler following the images of `partitions`, until the sender is dropped.
    fn running_reconciler(
        partitions: &Partitions,
    ) -> (Reconciler, tokio::sync::watch::Sender<bool>) {
        let reconciler = Reconciler::new(partitions.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let start = partitions.metadata().current();
        reconciler.reconcile(&Default::default(), &start);
        tokio::spawn(reconciler.clone().run(start, stopped));
        (reconciler, stop)
    }

    /// A topic created through the admin has its logs at once, found through
    /// `Partitions`; a protected topic is refused deletion; deleting a topic removes its
    /// logs; a topic is created on demand only when the setting allows it.
    #[tokio::test]
    async fn changes_reach_the_logs_and_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let Pieces {
            logs,
            metadata_log,
            controller,
            partitions,
        } = pieces(dir.path()).await;
        let (reconciler, _stop) = running_reconciler(&partitions);
        let admin = TopicAdmin::new(
            controller.clone(),
            partitions.clone(),
            reconciler.clone(),
            false,
            ["__internal".to_owned()],
        );

        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(2),
            ..Default::default()
        };
        admin.create_topic(request, false).await.unwrap();
        let (topic, partition, log) = partitions.leader_log("orders", 1).unwrap();
        assert_eq!((topic.name.as_str(), partition.partition), ("orders", 1));
        assert_eq!(log.high_watermark(), log.log_end_offset());
        assert_eq!(
            partitions.leader_log("orders", 2).unwrap_err(),
            ErrorCode::UnknownTopicOrPartition
        );

        assert_eq!(
            admin.topic_or_auto_create("events").await.unwrap_err(),
            ErrorCode::UnknownTopicOrPartition
        );
        assert_eq!(
            admin.topic_or_auto_create("a/b").await.unwrap_err(),
            ErrorCode::InvalidTopic
        );
        let auto_creating =
            TopicAdmin::new(controller, partitions.clone(), reconciler.clone(), true, []);
        auto_creating.topic_or_auto_create("events").await.unwrap();
        assert!(partitions.leader_log("events", 0).is_ok());

        assert!(matches!(
            admin.delete_topic("__internal").await,
            Err(TopicError::Protected(_))
        ));
        admin.delete_topic("orders").await.unwrap();
        assert!(partitions.metadata().current().topic("orders").is_none());
        assert!(logs.get(&TopicPartition::new("orders", 0)).is_none());
        assert_eq!(
            partitions.leader_log("orders", 0).unwrap_err(),
            ErrorCode::UnknownTopicOrPartition
        );
        logs.close_all().unwrap();
        metadata_log.shutdown().await;
    }

    /// A creation whose caller gives up at once (a client gone, a request timed out)
    /// still finishes: the topic gets its logs, not only its metadata.
    #[tokio::test]
    async fn an_abandoned_creation_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let Pieces {
            logs,
            metadata_log,
            controller,
            partitions,
        } = pieces(dir.path()).await;
        let (reconciler, _stop) = running_reconciler(&partitions);
        let admin = TopicAdmin::new(
            controller,
            partitions.clone(),
            reconciler.clone(),
            false,
            [],
        );
        let request = CreateTopic {
            name: "orders".into(),
            partitions: Some(2),
            ..Default::default()
        };
        // Polled once, then dropped.
        let abandoned = tokio::time::timeout(
            std::time::Duration::ZERO,
            admin.create_topic(request, false),
        );
        assert!(abandoned.await.is_err(), "the creation finished at once");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while partitions.leader_log("orders", 1).is_err() {
            assert!(std::time::Instant::now() < deadline, "orders-1 has no log");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        logs.close_all().unwrap();
        metadata_log.shutdown().await;
    }
}
