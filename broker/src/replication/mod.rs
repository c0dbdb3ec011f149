//! Partition replication: the partitions this broker leads, each a [`PartitionLeader`]
//! that owns the leader epoch, the in-sync set, what each follower has, and the high
//! watermark. It is the only path that appends to a partition (produce requests and
//! the group coordinator's offset commits both go through it) and the only writer of
//! its high watermark.
//!
//! - [`leader`]: the pure state machine of one leader (events in, effects out).
//! - [`Replicas`]: the partitions this broker leads, started and stopped by the
//!   reconciler as the metadata moves leadership.

pub mod leader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use fjord_protocol::RecordBatch;
use uuid::Uuid;

use crate::metadata::PartitionImage;
use crate::storage::{AppendInfo, PartitionLog, StorageError, TopicPartition};
use leader::{Effect, Event, LeaderStart, LeaderState};

/// The partitions this broker leads.
#[derive(Debug)]
pub struct Replicas {
    node_id: i32,
    replica_lag_ms: i64,
    leaders: Mutex<HashMap<TopicPartition, Arc<PartitionLeader>>>,
}

impl Replicas {
    pub fn new(node_id: i32, replica_lag_ms: u64) -> Self {
        Self {
            node_id,
            replica_lag_ms: replica_lag_ms as i64,
            leaders: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicPartition, Arc<PartitionLeader>>> {
        self.leaders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leads `partition` (its log `log`) as the metadata describes it, from its
    /// leader epoch on: a new leader epoch starts a new leader; the same one takes the
    /// metadata's in-sync set and replicas.
    pub fn lead(
        &self,
        partition: &TopicPartition,
        topic_id: Uuid,
        image: &PartitionImage,
        log: Arc<PartitionLog>,
    ) {
        let mut leaders = self.lock();
        if let Some(leader) = leaders.get(partition)
            && leader.topic_id == topic_id
            && Arc::ptr_eq(&leader.log, &log)
            && leader.state().leader_epoch() == image.leader_epoch
        {
            leader.metadata_changed(image);
            return;
        }
        let leader =
            PartitionLeader::start(self.node_id, self.replica_lag_ms, topic_id, image, log);
        leaders.insert(partition.clone(), Arc::new(leader));
    }

    /// Stops leading `partition` (another broker leads it, or it is gone).
    pub fn stop_leading(&self, partition: &TopicPartition) {
        self.lock().remove(partition);
    }

    /// The leader of `partition` on this broker, if it leads it.
    pub fn leader(&self, partition: &TopicPartition) -> Option<Arc<PartitionLeader>> {
        self.lock().get(partition).cloned()
    }
}

/// One partition this broker leads, in one leader epoch.
#[derive(Debug)]
pub struct PartitionLeader {
    topic_id: Uuid,
    log: Arc<PartitionLog>,
    state: Mutex<LeaderState>,
}

impl PartitionLeader {
    fn start(
        node_id: i32,
        replica_lag_ms: i64,
        topic_id: Uuid,
        image: &PartitionImage,
        log: Arc<PartitionLog>,
    ) -> Self {
        let (state, effects) = LeaderState::new(LeaderStart {
            node_id,
            leader_epoch: image.leader_epoch,
            partition_epoch: 0,
            replicas: image.replicas.clone(),
            isr: image.isr.clone(),
            log_end: log.log_end_offset(),
            durable_end: log.durable_end(),
            high_watermark: log.high_watermark(),
            replica_lag_ms,
            now_ms: now_ms(),
        });
        let leader = Self {
            topic_id,
            log,
            state: Mutex::new(state),
        };
        leader.run(&effects);
        leader
    }

    fn state(&self) -> MutexGuard<'_, LeaderState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state().leader_epoch()
    }

    /// Appends validated batches in this leader's epoch; they become visible once
    /// [`commit`](Self::commit) returns.
    pub fn append(&self, batches: &[RecordBatch]) -> Result<AppendInfo, StorageError> {
        let mut state = self.state();
        let info = self.log.append(batches, state.leader_epoch())?;
        self.handle(
            &mut state,
            Event::Appended {
                log_end: info.last_offset + 1,
            },
        );
        Ok(info)
    }

    /// Waits until `info`'s batches are durable on this broker under the log's policy,
    /// then lets the high watermark cover them as far as the in-sync set allows.
    pub async fn commit(&self, info: &AppendInfo) -> Result<(), StorageError> {
        self.log.commit(info).await?;
        let durable_end = self.log.durable_end();
        let mut state = self.state();
        self.handle(&mut state, Event::Durable { durable_end });
        Ok(())
    }

    fn metadata_changed(&self, image: &PartitionImage) {
        let mut state = self.state();
        let event = Event::Metadata {
            replicas: image.replicas.clone(),
            isr: image.isr.clone(),
            partition_epoch: 0,
            now_ms: now_ms(),
        };
        self.handle(&mut state, event);
    }

    /// Applies an event under the state's lock and runs its effects before the lock
    /// is let go, so that effects take place in the order they were decided.
    fn handle(&self, state: &mut LeaderState, event: Event) {
        match state.handle(event) {
            Ok(effects) => self.run(&effects),
            Err(refused) => tracing::debug!(%refused, "replication event refused"),
        }
    }

    fn run(&self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::HighWatermark(offset) => self.log.set_high_watermark(*offset),
                Effect::ProposeIsr { isr, .. } => {
                    tracing::debug!(?isr, "in-sync set change not proposed: single replica");
                }
            }
        }
    }
}

/// Milliseconds on a monotonic clock (since the first call), the time the state
/// machines are given: a wall-clock jump must not make every follower lag at once.
fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}
