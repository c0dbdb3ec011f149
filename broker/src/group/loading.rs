//! Start-up and leadership of the group coordinator: the offsets topic is created when
//! missing, and each partition of it is replayed when this broker comes to lead it
//! (at start-up or on a failover) and forgotten when it stops leading it, so that
//! every group's committed offsets survive restarts and move with its coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use fjord_protocol::batch::RecordBatches;

use super::records::OffsetRecord;
use super::service::{GroupService, topic_infos};
use super::{OFFSETS_TOPIC, offsets_partition};
use crate::metadata::{CreateTopic, TopicError};
use crate::storage::{PartitionLog, TopicPartition};

/// How long after a failed load of an offsets partition (a damaged batch) it is tried
/// again, while its groups stay unavailable.
const LOAD_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes read at a time while replaying the offsets topic.
const REPLAY_READ_BYTES: u64 = 1 << 20;

/// Topic config of `__consumer_offsets`: offsets must outlive any retention (nothing
/// compacts the topic yet), and a commit is acknowledged only once it is on disk.
fn offsets_topic_config() -> BTreeMap<String, String> {
    [
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("durability", "fsync"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

impl GroupService {
    /// Creates `__consumer_offsets` if it does not exist (a single broker; a cluster
    /// creates it at the first FindCoordinator, when its brokers have registered, so
    /// that it gets three replicas), then loads the groups of the partitions of it this
    /// broker leads already ([`Self::follow_leadership`] loads the others as
    /// leadership comes).
    ///
    /// A broker that cannot create the topic (say, its partition budget is spent)
    /// still starts: groups are then unavailable (`COORDINATOR_NOT_AVAILABLE`) and
    /// FindCoordinator tries the creation again, so that data can be served either way.
    pub async fn load(self: &Arc<Self>) -> anyhow::Result<()> {
        if self.offsets_topic_at_start
            && let Err(error) = self.ensure_offsets_topic().await
        {
            tracing::warn!(%error, "cannot create {OFFSETS_TOPIC}; consumer groups are unavailable until it exists");
        }
        let effects = self
            .lock()
            .set_topics(topic_infos(&self.partitions.metadata().current()));
        self.started.store(true, Ordering::Release);
        self.execute(effects).await;
        // The partitions this broker leads at start-up are loaded before it is ready;
        // one that cannot be (a damaged batch) stops the start, as it always has.
        self.admin.wait_until_reconciled().await;
        if let Some((partition, error)) = self.follow_leadership().await.into_iter().next() {
            return Err(error.context(format!("cannot load the groups of {partition}")));
        }
        Ok(())
    }

    /// Makes the loaded partitions of the offsets topic those this broker leads:
    /// a partition it has come to lead (or leads in a new leader epoch) has its groups
    /// replayed from its log, one it no longer leads has its groups forgotten, since
    /// their coordinator is now the new leader. Until a partition is loaded, requests
    /// for its groups are answered `COORDINATOR_NOT_AVAILABLE` (retriable). Returns the
    /// partitions that could not be loaded, which are tried again at the next call
    /// [`LOAD_RETRY_INTERVAL`] later.
    pub async fn follow_leadership(self: &Arc<Self>) -> Vec<(TopicPartition, anyhow::Error)> {
        let mut failures = Vec::new();
        let image = self.partitions.metadata().current();
        let count = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |topic| topic.partitions.len() as i32);
        let loaded = self.loaded_lock().clone();
        for partition in 0..count.max(loaded.keys().last().map_or(0, |last| last + 1)) {
            let id = TopicPartition::new(OFFSETS_TOPIC, partition);
            let leader = (partition < count)
                .then(|| self.partitions.replicas().leader(&id))
                .flatten();
            let was = loaded.get(&partition).copied();
            match leader {
                Some(leader) if was == Some(leader.leader_epoch()) => {}
                Some(_) if self.failed_lately(partition) => {}
                Some(leader) => {
                    self.unload(partition, count);
                    let replaying = self.clone();
                    let log = leader.log().clone();
                    let replayed = tokio::task::spawn_blocking(move || {
                        replaying.replay_log(&TopicPartition::new(OFFSETS_TOPIC, partition), &log)
                    })
                    .await;
                    let replayed = replayed
                        .map_err(anyhow::Error::from)
                        .and_then(|replayed| replayed);
                    match replayed {
                        Ok(records) => {
                            self.loaded_lock().insert(partition, leader.leader_epoch());
                            self.load_failures_lock().remove(&partition);
                            tracing::info!(%id, leader_epoch = leader.leader_epoch(), records, "loaded the groups of an offsets partition");
                        }
                        Err(error) => {
                            // Whatever the failed replay applied is forgotten again.
                            self.unload(partition, count);
                            self.load_failures_lock()
                                .insert(partition, std::time::Instant::now());
                            failures.push((id, error));
                        }
                    }
                }
                None if was.is_some() => {
                    let forgotten = self.unload(partition, count);
                    tracing::info!(%id, groups = forgotten, "no longer coordinating the groups of an offsets partition");
                }
                None => {}
            }
        }
        failures
    }

    /// Whether loading `partition` failed less than [`LOAD_RETRY_INTERVAL`] ago.
    fn failed_lately(&self, partition: i32) -> bool {
        self.load_failures_lock()
            .get(&partition)
            .is_some_and(|failed| failed.elapsed() < LOAD_RETRY_INTERVAL)
    }

    /// Forgets the groups of offsets partition `partition` (of `count`).
    fn unload(&self, partition: i32, count: i32) -> usize {
        self.loaded_lock().remove(&partition);
        self.lock()
            .unload_groups(|group_id| count == 0 || offsets_partition(group_id, count) == partition)
    }

    /// Creates `__consumer_offsets` unless it exists.
    pub(super) async fn ensure_offsets_topic(&self) -> Result<(), TopicError> {
        if self
            .partitions
            .metadata()
            .current()
            .topic(OFFSETS_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        let request = CreateTopic {
            name: OFFSETS_TOPIC.to_owned(),
            partitions: Some(self.offsets_topic_partitions),
            replication_factor: None,
            config: offsets_topic_config(),
        };
        match self.admin.create_topic(request, false).await {
            Ok(_) | Err(TopicError::AlreadyExists(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Applies every record of one partition of the offsets topic; returns how many
    /// were applied.
    fn replay_log(&self, partition: &TopicPartition, log: &PartitionLog) -> anyhow::Result<u64> {
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        let mut applied = 0u64;
        while offset < end {
            let read = log
                .read(offset, REPLAY_READ_BYTES, end)
                .with_context(|| format!("cannot read {partition} at offset {offset}"))?;
            if read.records.is_empty() {
                break;
            }
            let mut coordinator = self.lock();
            for batch in RecordBatches::new(read.records) {
                let batch = batch.with_context(|| format!("corrupt batch in {partition}"))?;
                for record in batch.records() {
                    let record =
                        record.with_context(|| format!("corrupt record in {partition}"))?;
                    offset = record.offset + 1;
                    if record.offset < log.log_start_offset() {
                        continue;
                    }
                    match OffsetRecord::decode(record.key.as_ref(), record.value.as_ref()) {
                        Ok(Some(decoded)) => {
                            coordinator.apply_record(&decoded, record.offset);
                            applied += 1;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(%partition, offset = record.offset, %error, "skipping unreadable offsets record")
                        }
                    }
                }
                offset = offset.max(batch.next_offset());
            }
        }
        Ok(applied)
    }
}
