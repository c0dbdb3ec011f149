//! The reconciler: makes this broker's partition logs follow the metadata image. Every
//! broker runs one, so a topic created, deleted or reconfigured through any broker (or
//! by the controller on its own) reaches the logs of every broker that holds one of its
//! replicas, and request handlers change no local state as a side effect of a
//! metadata change.
//!
//! Two parts: [`plan`], a pure diff of two images against the logs this broker has,
//! which says what to do ([`Action`]s); and [`Reconciler`], the thin shell that follows
//! the published images, carries the actions out on a blocking thread (they fsync) and
//! publishes the position of the last image it reconciled, which topic administration
//! waits for.
//!
//! Not reconciled yet: the group coordinator is not moved with the leadership of
//! `__consumer_offsets` partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use super::partitions::Partitions;
use crate::metadata::position::LogPosition;
use crate::metadata::{MetadataImage, PartitionImage, TopicImage};
use crate::storage::{LogManager, PartitionLog, TopicPartition};

/// What this broker has of its partitions before a reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalLogs {
    /// Partitions whose log is open.
    pub open: BTreeSet<TopicPartition>,
    /// Partitions that are offline until an operator recovers them: not touched.
    pub offline: BTreeSet<TopicPartition>,
}

/// One step that brings this broker's logs in line with a new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Removes the logs this broker holds of a topic that is gone (deleted, or replaced
    /// by a topic of the same name with another id).
    DeleteTopicLogs {
        topic: String,
        topic_id: Uuid,
        partitions: Vec<i32>,
    },
    /// Opens or creates the log of a partition this broker holds a replica of.
    CreateLog {
        partition: TopicPartition,
        topic_id: Uuid,
        /// The topic's config overrides (resolved against the broker's defaults when
        /// applied).
        config: BTreeMap<String, String>,
    },
    /// Gives the open logs of a topic its changed config overrides.
    ApplyConfig {
        topic: String,
        config: BTreeMap<String, String>,
    },
    /// This broker leads the partition from `leader_epoch` on.
    BecomeLeader {
        partition: TopicPartition,
        leader_epoch: i32,
    },
    /// Another broker (`leader`, -1 for none) leads the partition; this one keeps its
    /// log but does not serve it.
    BecomeFollower {
        partition: TopicPartition,
        leader: i32,
        leader_epoch: i32,
    },
}

/// What `node_id` must do to go from `previous` to `next`, given the logs it has:
/// deletions first (so a re-created topic's directory is free), then creations, config
/// changes and leadership changes. Topics are compared by id, so a topic deleted and
/// re-created between two images is deleted and created anew. Pure.
pub fn plan(
    previous: &MetadataImage,
    next: &MetadataImage,
    node_id: i32,
    local: &LocalLogs,
) -> Vec<Action> {
    let mut deletions = Vec::new();
    let mut changes = Vec::new();
    for old in previous.topics.values() {
        let same = next
            .topic(&old.name)
            .is_some_and(|new| new.topic_id == old.topic_id);
        let held = held_partitions(old, node_id);
        if !same && !held.is_empty() {
            deletions.push(Action::DeleteTopicLogs {
                topic: old.name.clone(),
                topic_id: old.topic_id,
                partitions: held,
            });
        }
    }
    for topic in next.topics.values() {
        let old = previous
            .topic(&topic.name)
            .filter(|old| old.topic_id == topic.topic_id);
        if let Some(old) = old
            && old.config != topic.config
        {
            changes.push(Action::ApplyConfig {
                topic: topic.name.clone(),
                config: topic.config.clone(),
            });
        }
        for partition in &topic.partitions {
            if !partition.replicas.contains(&node_id) {
                continue;
            }
            let id = TopicPartition::new(topic.name.clone(), partition.partition);
            if local.offline.contains(&id) {
                continue; // an operator decides what becomes of it
            }
            let before = old
                .and_then(|old| old.partition(partition.partition))
                .filter(|before| before.replicas.contains(&node_id));
            let create = before.is_none() || !local.open.contains(&id);
            if create {
                changes.push(Action::CreateLog {
                    partition: id.clone(),
                    topic_id: topic.topic_id,
                    config: topic.config.clone(),
                });
            }
            // A leader also takes up a new in-sync set or replica set of its epoch.
            let changed = before.is_none_or(|before| {
                before.leader != partition.leader
                    || before.leader_epoch != partition.leader_epoch
                    || (partition.leader == node_id
                        && (before.isr != partition.isr || before.replicas != partition.replicas))
            });
            // A new log is taken up by its leader or its fetcher.
            if !changed && !create {
                continue;
            }
            changes.push(if partition.leader == node_id {
                Action::BecomeLeader {
                    partition: id,
                    leader_epoch: partition.leader_epoch,
                }
            } else {
                Action::BecomeFollower {
                    partition: id,
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                }
            });
        }
    }
    deletions.extend(changes);
    deletions
}

/// A partition as `image` has it, with its topic and the log this broker has of it;
/// `None` when the log is not open (offline, or the topic is gone).
fn held_log<'a>(
    image: &'a MetadataImage,
    logs: &LogManager,
    partition: &TopicPartition,
) -> Option<(&'a TopicImage, &'a PartitionImage, Arc<PartitionLog>)> {
    let topic = image.topic(&partition.topic)?;
    let log = logs.get_of(partition, topic.topic_id)?;
    Some((topic, topic.partition(partition.partition)?, log))
}

/// The partitions of `topic` that `node_id` holds a replica of.
fn held_partitions(topic: &TopicImage, node_id: i32) -> Vec<i32> {
    topic
        .partitions
        .iter()
        .filter(|partition| partition.replicas.contains(&node_id))
        .map(|partition| partition.partition)
        .collect()
}

/// How far the reconciler got.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The position of the last image reconciled (`None`: the empty image).
    position: Option<LogPosition>,
    /// The reconciler stopped (shutdown): nothing more will be reconciled.
    stopped: bool,
}

/// The shell around [`plan`]: applies actions to the partition logs and publishes the
/// position of the last image reconciled.
#[derive(Debug, Clone)]
pub struct Reconciler {
    partitions: Partitions,
    reconciled: Arc<watch::Sender<Progress>>,
}

/// Tells waiters the reconciler stopped, when dropped.
struct MarkStopped<'a>(&'a Reconciler);

impl Drop for MarkStopped<'_> {
    fn drop(&mut self) {
        self.0
            .reconciled
            .send_modify(|progress| progress.stopped = true);
    }
}

impl Reconciler {
    pub fn new(partitions: Partitions) -> Self {
        Self {
            partitions,
            reconciled: Arc::new(watch::channel(Progress::default()).0),
        }
    }

    /// The logs this broker has now.
    fn local_logs(&self) -> LocalLogs {
        let logs = self.partitions.logs();
        LocalLogs {
            open: logs
                .logs()
                .into_iter()
                .map(|(partition, _)| partition)
                .collect(),
            offline: logs
                .offline_partitions()
                .into_iter()
                .map(|(partition, _)| partition)
                .collect(),
        }
    }

    /// Brings the logs from `previous` to `next` and records `next` as reconciled.
    /// Blocking (creating and deleting logs fsyncs). A partition whose log cannot be
    /// created goes offline; the others go on.
    pub fn reconcile(&self, previous: &MetadataImage, next: &MetadataImage) {
        let actions = plan(
            previous,
            next,
            self.partitions.node_id(),
            &self.local_logs(),
        );
        for action in actions {
            self.apply(action, next);
        }
        self.reconciled
            .send_modify(|progress| progress.position = next.applied_position());
    }

    fn apply(&self, action: Action, image: &MetadataImage) {
        let logs = self.partitions.logs();
        let replicas = self.partitions.replicas();
        match action {
            Action::DeleteTopicLogs {
                topic, partitions, ..
            } => {
                for partition in partitions {
                    let partition = TopicPartition::new(topic.clone(), partition);
                    replicas.stop(&partition);
                    // A log it opened, or a directory or an offline entry of its own;
                    // a file in the way of a failed creation is not touched.
                    let directory = logs.data_dir().join(partition.to_string());
                    if logs.get(&partition).is_none()
                        && !directory.is_dir()
                        && logs.offline_reason(&partition).is_none()
                    {
                        continue;
                    }
                    tracing::info!(%partition, "deleting the log of a deleted topic");
                    if let Err(error) = logs.delete(&partition) {
                        tracing::error!(%partition, %error, "cannot delete the log of a deleted topic");
                    }
                }
            }
            Action::CreateLog {
                partition,
                topic_id,
                config,
            } => {
                let config = self.log_config(&partition.topic, &config);
                let replicated = image
                    .topic(&partition.topic)
                    .and_then(|topic| topic.partition(partition.partition))
                    .is_some_and(|held| held.replicas.len() > 1);
                if replicated
                    && logs.get(&partition).is_none()
                    && logs.offline_reason(&partition).is_none()
                    && let Some(lost_log_end) = logs.lost_log_end(&partition)
                {
                    // Other replicas hold the log: this one starts again from nothing
                    // and copies it. The controller took it out of the in-sync set
                    // and the eligible leaders when this process registered without
                    // the directory (see `broker::held_replicas`), so it neither
                    // leads nor counts until caught up.
                    tracing::info!(%partition, lost_log_end, "recreating the lost replica empty, to copy the log from the leader");
                    logs.forget_log_end(&partition);
                }
                if let Err(error) = logs.get_or_create(&partition, topic_id, config) {
                    tracing::error!(%partition, %error, "partition is offline");
                    if logs.offline_reason(&partition).is_none() {
                        logs.mark_offline(&partition, error.to_string());
                    }
                }
            }
            Action::ApplyConfig { topic, config } => {
                let config = self.log_config(&topic, &config);
                for (_, log) in logs
                    .logs()
                    .into_iter()
                    .filter(|(partition, _)| partition.topic == topic)
                {
                    log.set_config(config.clone());
                }
                // Leaders take the topic's `min.insync.replicas`, which their high
                // watermark waits for.
                for (partition, _) in replicas
                    .leaders()
                    .into_iter()
                    .filter(|(partition, _)| partition.topic == topic)
                {
                    if let Some((topic, partition_image, log)) = held_log(image, logs, &partition) {
                        let min_insync = self.partitions.min_insync(topic, partition_image);
                        replicas.lead(&partition, topic.topic_id, partition_image, min_insync, log);
                    }
                }
            }
            Action::BecomeLeader {
                partition,
                leader_epoch,
            } => {
                match held_log(image, logs, &partition) {
                    Some((topic, partition_image, log)) => {
                        let min_insync = self.partitions.min_insync(topic, partition_image);
                        replicas.lead(&partition, topic.topic_id, partition_image, min_insync, log);
                        tracing::debug!(%partition, leader_epoch, "leading partition");
                    }
                    // Its log is offline: it is not served until an operator recovers it.
                    None => replicas.stop(&partition),
                }
            }
            Action::BecomeFollower {
                partition,
                leader,
                leader_epoch,
            } => {
                // `Partitions::leader_log` does not serve the log to clients since the
                // image names another leader; the fetcher copies the leader's into it.
                match held_log(image, logs, &partition) {
                    Some((topic, partition_image, log)) => {
                        replicas.follow(&partition, topic.topic_id, partition_image, log);
                        tracing::debug!(%partition, leader, leader_epoch, "following partition");
                    }
                    None => replicas.stop(&partition),
                }
            }
        }
    }

    fn log_config(
        &self,
        topic: &str,
        overrides: &BTreeMap<String, String>,
    ) -> crate::storage::LogConfig {
        self.partitions.config_with_overrides(topic, overrides).log
    }

    /// Follows the published images until the metadata goes away or `shutdown` fires,
    /// reconciling each against the one before (`start`, reconciled at start-up).
    /// Images published while one is being reconciled are taken together.
    pub async fn run(self, start: Arc<MetadataImage>, shutdown: watch::Receiver<bool>) {
        // Whether it returns or panics, waiters learn that it stopped (a panic would
        // otherwise leave every topic operation waiting forever).
        let _stopped = MarkStopped(&self);
        self.follow(start, shutdown).await;
    }

    async fn follow(&self, start: Arc<MetadataImage>, mut shutdown: watch::Receiver<bool>) {
        let mut images = self.partitions.metadata().subscribe();
        let mut previous = start;
        // An image published between start-up's reconciliation and this subscription.
        let current = self.partitions.metadata().current();
        if !Arc::ptr_eq(&current, &previous) {
            previous = self.step(previous, current).await;
        }
        loop {
            tokio::select! {
                changed = images.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = images.borrow_and_update().clone();
                    previous = self.step(previous, next).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn step(
        &self,
        previous: Arc<MetadataImage>,
        next: Arc<MetadataImage>,
    ) -> Arc<MetadataImage> {
        let reconciler = self.clone();
        let reconciled = next.clone();
        tokio::task::spawn_blocking(move || reconciler.reconcile(&previous, &reconciled))
            .await
            .expect("reconciling partition logs panicked");
        next
    }

    /// Waits until an image at or after `position` has been reconciled. `false` when
    /// the reconciler stopped first.
    pub async fn wait_for(&self, position: Option<LogPosition>) -> bool {
        let mut reconciled = self.reconciled.subscribe();
        reconciled
            .wait_for(|progress| progress.stopped || progress.position >= position)
            .await
            .is_ok_and(|progress| progress.position >= position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataRecord, PartitionImage};

    const ME: i32 = 1;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A partition led by the first of `replicas`, at `epoch`.
    fn partition(index: i32, replicas: &[i32], epoch: i32) -> PartitionImage {
        PartitionImage {
            partition: index,
            leader: replicas[0],
            leader_epoch: epoch,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            elr: Vec::new(),
            partition_epoch: 0,
        }
    }

    fn topic(name: &str, topic_id: Uuid, partitions: Vec<PartitionImage>) -> TopicImage {
        TopicImage {
            name: name.to_owned(),
            topic_id,
            config: BTreeMap::new(),
            partitions,
        }
    }

    fn image(topics: Vec<TopicImage>) -> MetadataImage {
        let mut image = MetadataImage::default();
        for topic in topics {
            image.topics.insert(topic.name.clone(), Arc::new(topic));
        }
        image
    }

    fn open(partitions: &[(&str, i32)]) -> LocalLogs {
        LocalLogs {
            open: partitions
                .iter()
                .map(|(topic, partition)| TopicPartition::new(*topic, *partition))
                .collect(),
            offline: BTreeSet::new(),
        }
    }

    fn create(topic: &str, partition: i32, topic_id: Uuid) -> Action {
        Action::CreateLog {
            partition: TopicPartition::new(topic, partition),
            topic_id,
            config: BTreeMap::new(),
        }
    }

    fn lead(topic: &str, partition: i32, leader_epoch: i32) -> Action {
        Action::BecomeLeader {
            partition: TopicPartition::new(topic, partition),
            leader_epoch,
        }
    }

    fn follow(topic: &str, partition: i32, leader: i32, leader_epoch: i32) -> Action {
        Action::BecomeFollower {
            partition: TopicPartition::new(topic, partition),
            leader,
            leader_epoch,
        }
    }

    /// Each case: the image before, the image after, the logs this broker has, and
    /// the actions expected, in order.
    #[test]
    fn plans_follow_the_image() {
        let with_config = |mut topic: TopicImage, key: &str, value: &str| {
            topic.config.insert(key.to_owned(), value.to_owned());
            topic
        };
        let cases: Vec<(&str, MetadataImage, MetadataImage, LocalLogs, Vec<Action>)> = vec![
            (
                "nothing changes: nothing to do",
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                open(&[("a", 0)]),
                vec![],
            ),
            (
                "a new topic: logs of the replicas here only, and their leadership",
                image(vec![]),
                image(vec![topic(
                    "a",
                    id(1),
                    vec![
                        partition(0, &[ME, 2], 0),
                        partition(1, &[2, ME], 0),
                        partition(2, &[2, 3], 0),
                    ],
                )]),
                open(&[]),
                vec![
                    create("a", 0, id(1)),
                    lead("a", 0, 0),
                    create("a", 1, id(1)),
                    follow("a", 1, 2, 0),
                ],
            ),
            (
                "start-up: logs already open are taken up, missing ones created",
                image(vec![]),
                image(vec![topic(
                    "a",
                    id(1),
                    vec![partition(0, &[ME], 3), partition(1, &[ME], 0)],
                )]),
                open(&[("a", 0)]),
                vec![
                    create("a", 0, id(1)),
                    lead("a", 0, 3),
                    create("a", 1, id(1)),
                    lead("a", 1, 0),
                ],
            ),
            (
                "an offline partition is left to the operator",
                image(vec![]),
                image(vec![topic(
                    "a",
                    id(1),
                    vec![partition(0, &[ME], 0), partition(1, &[ME], 0)],
                )]),
                LocalLogs {
                    open: BTreeSet::new(),
                    offline: [TopicPartition::new("a", 0)].into(),
                },
                vec![create("a", 1, id(1)), lead("a", 1, 0)],
            ),
            (
                "a known partition whose log is missing is created again",
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                open(&[]),
                vec![create("a", 0, id(1)), lead("a", 0, 0)],
            ),
            (
                "a deleted topic: the logs of its replicas here go",
                image(vec![
                    topic(
                        "a",
                        id(1),
                        vec![partition(0, &[ME], 0), partition(1, &[2], 0)],
                    ),
                    topic("b", id(2), vec![partition(0, &[2], 0)]),
                ]),
                image(vec![]),
                open(&[("a", 0)]),
                vec![Action::DeleteTopicLogs {
                    topic: "a".into(),
                    topic_id: id(1),
                    partitions: vec![0],
                }],
            ),
            (
                "deleted and re-created between two images: old logs go, new ones come",
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 4)])]),
                image(vec![topic("a", id(2), vec![partition(0, &[ME], 0)])]),
                open(&[("a", 0)]),
                vec![
                    Action::DeleteTopicLogs {
                        topic: "a".into(),
                        topic_id: id(1),
                        partitions: vec![0],
                    },
                    create("a", 0, id(2)),
                    lead("a", 0, 0),
                ],
            ),
            (
                "a config change reaches the topic's logs",
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                image(vec![with_config(
                    topic("a", id(1), vec![partition(0, &[ME], 0)]),
                    "retention.ms",
                    "1000",
                )]),
                open(&[("a", 0)]),
                vec![Action::ApplyConfig {
                    topic: "a".into(),
                    config: [("retention.ms".to_owned(), "1000".to_owned())].into(),
                }],
            ),
            (
                "leadership moves away, and another comes here at a new epoch",
                image(vec![topic(
                    "a",
                    id(1),
                    vec![partition(0, &[ME, 2], 0), partition(1, &[2, ME], 0)],
                )]),
                image(vec![topic(
                    "a",
                    id(1),
                    vec![
                        PartitionImage {
                            leader: 2,
                            ..partition(0, &[ME, 2], 1)
                        },
                        PartitionImage {
                            leader: ME,
                            ..partition(1, &[2, ME], 1)
                        },
                    ],
                )]),
                open(&[("a", 0), ("a", 1)]),
                vec![follow("a", 0, 2, 1), lead("a", 1, 1)],
            ),
            (
                "the same leader at a new epoch leads again",
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 0)])]),
                image(vec![topic("a", id(1), vec![partition(0, &[ME], 1)])]),
                open(&[("a", 0)]),
                vec![lead("a", 0, 1)],
            ),
            (
                "changes to partitions held elsewhere do nothing here",
                image(vec![topic("a", id(1), vec![partition(0, &[2], 0)])]),
                image(vec![topic("a", id(1), vec![partition(0, &[3], 1)])]),
                open(&[]),
                vec![],
            ),
        ];
        for (name, previous, next, local, expected) in cases {
            assert_eq!(plan(&previous, &next, ME, &local), expected, "{name}");
        }
    }

    /// Images built by applying records plan the same as hand-built ones: a topic
    /// created and then moved away by `PartitionChanged`.
    #[test]
    fn plans_images_made_by_records() {
        let mut before = MetadataImage::default();
        let created = MetadataRecord::TopicCreated {
            name: "a".into(),
            topic_id: id(7).to_string(),
            config: BTreeMap::new(),
            replicas: vec![vec![ME, 2]],
        };
        before
            .apply(
                LogPosition {
                    term: 0,
                    leader: 0,
                    index: 1,
                },
                &created,
            )
            .unwrap();
        let mut after = before.clone();
        let moved = MetadataRecord::PartitionChanged {
            topic_id: id(7).to_string(),
            partition: 0,
            leader: 2,
            leader_epoch: 1,
            isr: vec![2],
            elr: Vec::new(),
            partition_epoch: None,
        };
        after
            .apply(
                LogPosition {
                    term: 0,
                    leader: 0,
                    index: 2,
                },
                &moved,
            )
            .unwrap();
        assert_eq!(
            plan(&MetadataImage::default(), &before, ME, &open(&[])),
            vec![create("a", 0, id(7)), lead("a", 0, 0)]
        );
        assert_eq!(
            plan(&before, &after, ME, &open(&[("a", 0)])),
            vec![follow("a", 0, 2, 1)]
        );
    }

    /// The shell on real files, following metadata changed by records proposed to the
    /// metadata log directly (as another broker's controller would): a topic created
    /// gets its logs here, a leadership moved away stops serving the log but keeps it, a
    /// topic deleted and re-created between two images gets a fresh log with the new
    /// topic id, and a deleted topic's logs go.
    #[tokio::test]
    async fn follows_metadata_changed_elsewhere() {
        use fjord_protocol::ErrorCode;
        use fjord_protocol::batch::{BatchBuilder, RecordBatch, RecordInput};

        use crate::config::BrokerConfig;
        use crate::metadata::MetadataLog;
        use crate::storage::{LogManager, SystemClock, topic_id};
        use crate::topics::MetadataView;

        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let me = config.node_id;
        let logs = Arc::new(LogManager::open(dir.path(), Arc::new(SystemClock)).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metadata_log = Arc::new(MetadataLog::start(&config, listener).await.unwrap());
        let view = MetadataView::new(metadata_log.images());
        let partitions = Partitions::new(view, logs.clone(), Arc::new(config.clone()));
        let reconciler = Reconciler::new(partitions.clone());
        let start = partitions.metadata().current();
        reconciler.reconcile(&MetadataImage::default(), &start);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(reconciler.clone().run(start, stopped));
        let apply = |records: Vec<MetadataRecord>| {
            let metadata_log = metadata_log.clone();
            let reconciler = reconciler.clone();
            async move {
                let image = metadata_log.propose(records).await.unwrap();
                assert!(reconciler.wait_for(image.applied_position()).await);
            }
        };
        let created = |topic_id: Uuid| MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: topic_id.to_string(),
            config: BTreeMap::new(),
            replicas: vec![vec![me], vec![me + 1]],
        };
        let deleted = |topic_id: Uuid| MetadataRecord::TopicDeleted {
            topic_id: topic_id.to_string(),
        };
        let first = TopicPartition::new("orders", 0);
        let elsewhere = TopicPartition::new("orders", 1);
        let first_dir = dir.path().join(first.to_string());

        apply(vec![created(id(1))]).await;
        let (_, _, log) = partitions.leader_log("orders", 0).unwrap();
        assert_eq!(topic_id::load(&first_dir).unwrap(), Some(id(1)));
        assert!(
            logs.get(&elsewhere).is_none(),
            "a replica of another broker"
        );
        let mut batch = BatchBuilder::new();
        batch.push(&RecordInput {
            value: Some(b"old"),
            ..Default::default()
        });
        log.append(&[RecordBatch::new(batch.finish()).unwrap()], 0)
            .unwrap();
        assert_eq!(log.log_end_offset(), 1);

        apply(vec![MetadataRecord::PartitionChanged {
            topic_id: id(1).to_string(),
            partition: 0,
            leader: me + 1,
            leader_epoch: 1,
            isr: vec![me + 1],
            elr: Vec::new(),
            partition_epoch: None,
        }])
        .await;
        assert_eq!(
            partitions.leader_log("orders", 0).unwrap_err(),
            ErrorCode::NotLeaderOrFollower
        );
        assert!(logs.get(&first).is_some(), "a follower keeps its log");

        apply(vec![deleted(id(1)), created(id(2))]).await;
        let (_, _, log) = partitions.leader_log("orders", 0).unwrap();
        assert_eq!(log.log_end_offset(), 0, "the old topic's data is gone");
        assert_eq!(topic_id::load(&first_dir).unwrap(), Some(id(2)));

        apply(vec![deleted(id(2))]).await;
        assert!(logs.get(&first).is_none());
        assert!(!first_dir.exists());

        stop.send_replace(true);
        running.await.unwrap();
        assert!(
            !reconciler
                .wait_for(Some(LogPosition {
                    term: u64::MAX,
                    leader: 0,
                    index: 0
                }))
                .await,
            "a stopped reconciler answers that it stopped"
        );
        logs.close_all().unwrap();
        metadata_log.shutdown().await;
    }
}
