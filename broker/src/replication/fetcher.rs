//! The follower's side of replication: one fetcher task per leader broker, which
//! fetches every partition this broker follows there in one request, over and over.
//!
//! Each request says, per partition, where the follower's log ends, the epoch of its
//! last batch, what it has durable and the high watermark it knows. With each answer
//! the fetcher, per partition: truncates its log where the leader says the two part
//! (and fetches again from there); or appends the leader's batches as they are (their
//! offsets and epochs are the leader's), fsyncs them under the `fsync` policy before
//! the next request reports them durable, and takes the leader's high watermark as far
//! as its own log reaches. Errors of one partition (a leader that moved, an epoch not
//! known yet) leave the others going; a leader that cannot be reached is asked again
//! after a backoff.
//!
//! Answers are applied under the lock of the followed set, so a partition that stops
//! being followed (it is led here now, or deleted) gets no batch after that.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fjord_protocol::RecordBatch;
use fjord_protocol::batch::RecordBatches;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::wire::{self, FetchError, FetchRequest, PartitionData, PartitionFetch};
use crate::internal::PeerClient;
use crate::internal::frame::kind;
use crate::metadata::MetadataImage;
use crate::storage::{Durability, PartitionLog, TopicPartition};

/// How followers fetch.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// How long a leader may hold a fetch that has nothing new.
    pub max_wait: Duration,
    /// Most record bytes per response.
    pub max_bytes: u64,
    pub connect_timeout: Duration,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(500),
            max_bytes: 8 << 20,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A partition this broker follows.
#[derive(Debug, Clone)]
struct Followed {
    topic_id: Uuid,
    leader: i32,
    leader_epoch: i32,
    log: Arc<PartitionLog>,
}

#[derive(Debug, Default)]
struct FollowState {
    followed: BTreeMap<TopicPartition, Followed>,
    /// Fetcher tasks by leader. A task removes itself, under this lock, when no
    /// partition it fetches is left, so that a partition followed from then on
    /// starts a new one.
    tasks: HashMap<i32, JoinHandle<()>>,
    stopped: bool,
}

/// The partitions this broker follows, and a fetcher per leader.
#[derive(Debug)]
pub struct Fetchers {
    node_id: i32,
    images: watch::Receiver<Arc<MetadataImage>>,
    settings: FetchSettings,
    state: Mutex<FollowState>,
}

impl Fetchers {
    pub fn new(
        node_id: i32,
        images: watch::Receiver<Arc<MetadataImage>>,
        settings: FetchSettings,
    ) -> Self {
        Self {
            node_id,
            images,
            settings,
            state: Mutex::new(FollowState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FollowState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows `partition` from `leader` in `leader_epoch`, starting that leader's
    /// fetcher if it has none.
    pub fn follow(
        self: &Arc<Self>,
        partition: &TopicPartition,
        topic_id: Uuid,
        leader: i32,
        leader_epoch: i32,
        log: Arc<PartitionLog>,
    ) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        tracing::info!(%partition, leader, leader_epoch, log_end = log.log_end_offset(), "following partition");
        state.followed.insert(
            partition.clone(),
            Followed {
                topic_id,
                leader,
                leader_epoch,
                log,
            },
        );
        if let std::collections::hash_map::Entry::Vacant(vacant) = state.tasks.entry(leader) {
            vacant.insert(tokio::spawn(self.clone().fetch_from(leader)));
        }
    }

    /// Stops following `partition`; no fetched batch lands in its log after this.
    pub fn unfollow(&self, partition: &TopicPartition) {
        self.lock().followed.remove(partition);
    }

    /// The partitions followed, with their leader.
    pub fn followed(&self) -> Vec<(TopicPartition, i32)> {
        self.lock()
            .followed
            .iter()
            .map(|(partition, followed)| (partition.clone(), followed.leader))
            .collect()
    }

    /// Stops every fetcher (broker shutdown).
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        state.followed.clear();
        for (_, task) in state.tasks.drain() {
            task.abort();
        }
    }

    /// The partitions followed from `leader`; `None` (and the task is forgotten)
    /// when there are none.
    fn partitions_of(&self, leader: i32) -> Option<Vec<(TopicPartition, Followed)>> {
        let mut state = self.lock();
        let mine: Vec<_> = state
            .followed
            .iter()
            .filter(|(_, followed)| followed.leader == leader)
            .map(|(partition, followed)| (partition.clone(), followed.clone()))
            .collect();
        if mine.is_empty() {
            state.tasks.remove(&leader);
            return None;
        }
        Some(mine)
    }

    fn leader_address(&self, leader: i32) -> Option<String> {
        self.images
            .borrow()
            .brokers
            .get(&leader)
            .map(|broker| broker.internal_address.clone())
            .filter(|address| !address.is_empty())
    }

    /// The fetcher of `leader`: runs until no partition is followed from it.
    async fn fetch_from(self: Arc<Self>, leader: i32) {
        let mut peer: Option<PeerClient> = None;
        let mut backoff = Backoff::default();
        while let Some(partitions) = self.partitions_of(leader) {
            let Some(address) = self.leader_address(leader) else {
                backoff
                    .fail(leader, "its internal address is not in the metadata")
                    .await;
                continue;
            };
            if peer.as_ref().is_none_or(|peer| peer.address() != address) {
                peer = Some(PeerClient::new(address, self.settings.connect_timeout));
            }
            let peer = peer.as_ref().expect("set above");
            let request = FetchRequest {
                replica_id: self.node_id,
                max_wait_ms: self.settings.max_wait.as_millis() as u64,
                max_bytes: self.settings.max_bytes,
                partitions: partitions
                    .iter()
                    .map(|(partition, followed)| position(partition, followed))
                    .collect(),
            };
            let body = serde_json::to_vec(&request).expect("fetch requests serialize");
            // Room for the leader's wait, then for the records' transfer.
            let timeout = self.settings.max_wait + self.settings.connect_timeout * 2;
            let answers = match peer.call(kind::REPLICA_FETCH, body, timeout).await {
                Ok(body) => match wire::decode_response(body) {
                    Ok(answers) => answers,
                    Err(reason) => {
                        backoff.fail(leader, &format!("bad answer: {reason}")).await;
                        continue;
                    }
                },
                Err(error) => {
                    backoff.fail(leader, &error.to_string()).await;
                    continue;
                }
            };
            let fetcher = self.clone();
            let sent = request.partitions;
            let applied =
                tokio::task::spawn_blocking(move || fetcher.apply(leader, &sent, answers)).await;
            match applied {
                Ok(true) => backoff.succeed(leader),
                // Some partition could not go on: do not spin on it.
                Ok(false) => tokio::time::sleep(Backoff::FIRST).await,
                Err(error) => {
                    tracing::error!(leader, %error, "applying fetched records panicked");
                    backoff
                        .fail(leader, "applying fetched records panicked")
                        .await;
                }
            }
        }
    }

    /// Applies a leader's answers to the logs still followed from it in the epoch
    /// the request named. Blocking (appends and fsyncs). False when some partition
    /// had an error.
    fn apply(&self, leader: i32, sent: &[PartitionFetch], answers: Vec<PartitionData>) -> bool {
        let state = self.lock();
        let mut all_well = true;
        for (fetch, answer) in sent.iter().zip(answers) {
            let partition = TopicPartition::new(fetch.topic.clone(), fetch.partition);
            let Some(followed) = state.followed.get(&partition).filter(|followed| {
                followed.leader == leader
                    && followed.leader_epoch == fetch.leader_epoch
                    && followed.topic_id == fetch.topic_id
            }) else {
                continue;
            };
            if answer.topic != fetch.topic || answer.partition != fetch.partition {
                tracing::warn!(leader, %partition, "the leader answered for another partition; ignored");
                all_well = false;
                continue;
            }
            if let Err(reason) = apply_partition(&partition, followed, fetch, answer) {
                tracing::debug!(leader, %partition, %reason, "replica fetch did not go on");
                all_well = false;
            }
        }
        all_well
    }
}

/// Where the follower is in one partition.
fn position(partition: &TopicPartition, followed: &Followed) -> PartitionFetch {
    let log = &followed.log;
    PartitionFetch {
        topic: partition.topic.clone(),
        topic_id: followed.topic_id,
        partition: partition.partition,
        leader_epoch: followed.leader_epoch,
        fetch_offset: log.log_end_offset(),
        last_fetched_epoch: log.latest_epoch(),
        durable_end: log.durable_end(),
        high_watermark: log.high_watermark(),
    }
}

/// Applies one partition's answer; an error says why the partition cannot go on yet.
fn apply_partition(
    partition: &TopicPartition,
    followed: &Followed,
    fetch: &PartitionFetch,
    answer: PartitionData,
) -> Result<(), String> {
    let log = &followed.log;
    if let Some(FetchError::OffsetOutOfRange {
        log_start_offset, ..
    }) = &answer.error
        && *log_start_offset > fetch.fetch_offset
    {
        // Everything this replica would fetch next is gone from the leader (its
        // retention deleted it): start over, empty, at the leader's log start.
        tracing::warn!(
            %partition,
            log_end = fetch.fetch_offset,
            leader_log_start = log_start_offset,
            "this replica's log ends below the leader's log start: starting it again there"
        );
        return log
            .restart_at(*log_start_offset)
            .map_err(|error| format!("restarting the log failed: {error}"));
    }
    if let Some(error) = answer.error {
        if matches!(
            error,
            FetchError::NotAReplica(_)
                | FetchError::OffsetOutOfRange { .. }
                | FetchError::Storage(_)
        ) {
            tracing::warn!(%partition, leader = followed.leader, %error, "the leader refused to serve this replica");
        }
        return Err(error.to_string());
    }
    if let Some(diverging) = answer.diverging {
        tracing::info!(
            %partition,
            log_end = fetch.fetch_offset,
            truncate_to = diverging.end_offset,
            leader_epoch = diverging.epoch,
            "this replica's log parts from the leader's: truncating"
        );
        log.truncate_to(diverging.end_offset)
            .map_err(|error| format!("truncation failed: {error}"))?;
        return Ok(());
    }
    if !answer.records.is_empty() {
        let mut batches: Vec<RecordBatch> = Vec::new();
        for batch in RecordBatches::new(answer.records) {
            let batch = batch.map_err(|error| format!("the leader sent a bad batch: {error}"))?;
            batch
                .verify_crc()
                .map_err(|error| format!("the leader sent a damaged batch: {error}"))?;
            batches.push(batch);
        }
        log.append_replicated(&batches)
            .map_err(|error| format!("append failed: {error}"))?;
        if log.config().durability == Durability::Fsync {
            log.flush()
                .map_err(|error| format!("fsync failed: {error}"))?;
        }
    }
    let high_watermark = answer.high_watermark.min(log.log_end_offset());
    if high_watermark > log.high_watermark() {
        log.set_high_watermark(high_watermark);
    }
    Ok(())
}

/// The wait before asking an unreachable leader again: 100 ms, doubling to 2 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    async fn fail(&mut self, leader: i32, reason: &str) {
        self.failures += 1;
        // The first failure and then every tenth, so a long outage does not flood the log.
        if self.failures % 10 == 1 {
            tracing::warn!(
                leader,
                failures = self.failures,
                reason,
                "cannot fetch from the leader"
            );
        }
        let wait = Self::FIRST
            .saturating_mul(1 << self.failures.min(5))
            .min(Self::MAX);
        tokio::time::sleep(wait).await;
    }

    fn succeed(&mut self, leader: i32) {
        if self.failures > 0 {
            tracing::info!(leader, "fetching from the leader again");
        }
        self.failures = 0;
    }
}
