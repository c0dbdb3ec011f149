//! Start-up of the group coordinator: the offsets topic is created when missing and
//! replayed, so that every group's committed offsets survive a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use fjord_protocol::batch::RecordBatches;

use super::OFFSETS_TOPIC;
use super::records::OffsetRecord;
use super::service::{GroupService, topic_infos};
use crate::metadata::{CreateTopic, TopicError};
use crate::storage::{PartitionLog, TopicPartition};

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
    /// Creates `__consumer_offsets` if it does not exist, then rebuilds every group's
    /// committed offsets from the partitions this broker leads.
    ///
    /// A broker that cannot create the topic (say, its partition budget is spent)
    /// still starts: groups are then unavailable (`COORDINATOR_NOT_AVAILABLE`) and
    /// FindCoordinator tries the creation again, so that data can be served either way.
    pub async fn load(self: &Arc<Self>) -> anyhow::Result<()> {
        if let Err(error) = self.ensure_offsets_topic().await {
            tracing::warn!(%error, "cannot create {OFFSETS_TOPIC}; consumer groups are unavailable until it exists");
        }
        let replaying = self.clone();
        let records = tokio::task::spawn_blocking(move || replaying.replay())
            .await
            .context("replaying the offsets topic panicked")??;
        let effects = self
            .lock()
            .set_topics(topic_infos(&self.partitions.metadata().current()));
        self.loaded.store(true, Ordering::Release);
        self.execute(effects).await;
        tracing::info!(records, "group coordinator loaded committed offsets");
        Ok(())
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

    /// Applies every record of the offsets partitions this broker leads; returns how
    /// many were applied.
    fn replay(&self) -> anyhow::Result<u64> {
        let image = self.partitions.metadata().current();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return Ok(0);
        };
        let mut applied = 0u64;
        for partition in &topic.partitions {
            if partition.leader != self.partitions.node_id() {
                continue;
            }
            let partition = TopicPartition::new(OFFSETS_TOPIC, partition.partition);
            let Some(log) = self.partitions.logs().get(&partition) else {
                continue;
            };
            applied += self.replay_log(&partition, &log)?;
        }
        Ok(applied)
    }

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
