//! Partition replication. Each partition is a log kept by its leader and copied by
//! its followers, which fetch from the leader over the internal listener.
//!
//! - [`leader`]: the pure state machine of one leader (events in, effects out): what
//!   each follower holds, the high watermark, in-sync set changes to propose.
//! - [`PartitionLeader`]: its shell, one per partition this broker leads. It is the
//!   only path that appends to a partition (produce requests and the group
//!   coordinator's offset commits both go through it) and the only writer of a
//!   leader's high watermark.
//! - [`fetch_service`]: the leader's side of replica fetches.
//! - [`fetcher`]: the follower's side: one fetcher per leader broker, batching all
//!   the partitions this broker follows there; it truncates a diverging log, appends
//!   what the leader sends, makes it durable and reports it in its next fetch.
//! - [`wire`]: the replica fetch on the wire.
//! - [`Replicas`]: all of it for one broker, driven by the reconciler as the metadata
//!   moves leadership.

pub mod fetch_service;
pub mod fetcher;
pub mod leader;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fjord_protocol::RecordBatch;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::metadata::{IsrChange, MetadataImage, PartitionImage};
use crate::storage::{AppendInfo, PartitionLog, StorageError, TopicPartition};
use fetcher::{FetchSettings, Fetchers};
use leader::{Effect, Event, FetchRefused, LeaderStart, LeaderState};

/// An in-sync set change a leader asks the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub partition: TopicPartition,
    pub change: IsrChange,
}

/// The partitions this broker leads and follows.
#[derive(Debug)]
pub struct Replicas {
    node_id: i32,
    replica_lag_ms: i64,
    leaders: Mutex<HashMap<TopicPartition, Arc<PartitionLeader>>>,
    /// Bumped whenever a led partition's log end or high watermark moves, so that
    /// replica fetches waiting for news look again.
    changes: Arc<watch::Sender<u64>>,
    proposals: mpsc::UnboundedSender<Proposal>,
    proposals_receiver: Mutex<Option<mpsc::UnboundedReceiver<Proposal>>>,
    fetchers: Arc<Fetchers>,
}

impl Replicas {
    /// `images` gives the metadata (where leaders are reached).
    pub fn new(
        node_id: i32,
        replica_lag_ms: u64,
        images: watch::Receiver<Arc<MetadataImage>>,
        fetch: FetchSettings,
    ) -> Self {
        let (proposals, proposals_receiver) = mpsc::unbounded_channel();
        Self {
            node_id,
            replica_lag_ms: replica_lag_ms as i64,
            leaders: Mutex::new(HashMap::new()),
            changes: Arc::new(watch::Sender::new(0)),
            proposals,
            proposals_receiver: Mutex::new(Some(proposals_receiver)),
            fetchers: Arc::new(Fetchers::new(node_id, images, fetch)),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicPartition, Arc<PartitionLeader>>> {
        self.leaders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leads `partition` (its log `log`) as the metadata describes it, from its
    /// leader epoch on: a new leader epoch starts a new leader; the same one takes the
    /// metadata's in-sync set and replicas, and the topic's `min_insync` (in-sync
    /// replicas the high watermark needs to move). Stops following it first, so that
    /// no fetched batch lands in the log once it leads.
    pub fn lead(
        &self,
        partition: &TopicPartition,
        topic_id: Uuid,
        image: &PartitionImage,
        min_insync: usize,
        log: Arc<PartitionLog>,
    ) {
        self.fetchers.unfollow(partition);
        let mut leaders = self.lock();
        if let Some(leader) = leaders.get(partition)
            && leader.topic_id == topic_id
            && Arc::ptr_eq(&leader.log, &log)
            && leader.leader_epoch() == image.leader_epoch
        {
            leader.metadata_changed(image, min_insync);
            return;
        }
        let leader = PartitionLeader::start(
            self.node_id,
            self.replica_lag_ms,
            partition.clone(),
            topic_id,
            image,
            min_insync,
            log,
            self.changes.clone(),
            self.proposals.clone(),
        );
        if let Some(previous) = leaders.insert(partition.clone(), Arc::new(leader)) {
            previous.depose();
        }
        drop(leaders);
        self.changes.send_modify(|count| *count += 1);
    }

    /// Follows `partition` from its leader in `image` (no leader: waits for one).
    pub fn follow(
        &self,
        partition: &TopicPartition,
        topic_id: Uuid,
        image: &PartitionImage,
        log: Arc<PartitionLog>,
    ) {
        self.stop_leading(partition);
        if image.leader < 0 {
            self.fetchers.unfollow(partition);
        } else {
            self.fetchers
                .follow(partition, topic_id, image.leader, image.leader_epoch, log);
        }
    }

    /// Neither leads nor follows `partition` any more (it is gone, or offline).
    pub fn stop(&self, partition: &TopicPartition) {
        self.stop_leading(partition);
        self.fetchers.unfollow(partition);
    }

    fn stop_leading(&self, partition: &TopicPartition) {
        let removed = self.lock().remove(partition);
        if let Some(leader) = removed {
            leader.depose();
            self.changes.send_modify(|count| *count += 1);
        }
    }

    /// The leader of `partition` on this broker, if it leads it.
    pub fn leader(&self, partition: &TopicPartition) -> Option<Arc<PartitionLeader>> {
        self.lock().get(partition).cloned()
    }

    /// Every partition this broker leads.
    pub fn leaders(&self) -> Vec<(TopicPartition, Arc<PartitionLeader>)> {
        self.lock()
            .iter()
            .map(|(partition, leader)| (partition.clone(), leader.clone()))
            .collect()
    }

    /// Tells waiting replica fetches that something may have changed.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The in-sync set changes leaders propose, for the task that takes them to the
    /// controller; `None` after the first call.
    pub fn take_proposals(&self) -> Option<mpsc::UnboundedReceiver<Proposal>> {
        self.proposals_receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// The controller refused `proposal` outright (not because the partition moved
    /// on, which the metadata brings): its leader may propose again.
    pub fn proposal_refused(&self, proposal: &Proposal) {
        if let Some(leader) = self.leader(&proposal.partition)
            && leader.leader_epoch() == proposal.change.leader_epoch
        {
            leader.apply(Event::ProposalFailed);
        }
    }

    /// Whether `proposal`'s leader still leads in its epoch (a proposal of a
    /// deposed leader is not worth retrying).
    pub fn still_leads(&self, proposal: &Proposal) -> bool {
        self.leader(&proposal.partition)
            .is_some_and(|leader| leader.leader_epoch() == proposal.change.leader_epoch)
    }

    /// Lets time pass for every leader: followers that lag too long are proposed out
    /// of their in-sync sets.
    pub fn tick(&self) {
        let now_ms = now_ms();
        for (_, leader) in self.leaders() {
            leader.apply(Event::Tick { now_ms });
        }
    }

    /// The follower side, for the fetchers' tasks and status.
    pub fn fetchers(&self) -> &Arc<Fetchers> {
        &self.fetchers
    }

    /// Ticks every `interval` until `shutdown` turns true.
    pub async fn run_ticks(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.tick(),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerView {
    pub replica: i32,
    /// Where it fetched last in this leader epoch (its log end then); `None` before its
    /// first fetch.
    pub fetch_offset: Option<i64>,
    /// Offsets between its fetch offset and the leader's log end.
    pub lag_offsets: i64,
    /// Milliseconds since it was last caught up with the leader's log end.
    pub since_caught_up_ms: i64,
    /// Whether the high watermark waits for it.
    pub in_sync: bool,
}

/// Counts a request waiting for the in-sync replicas while it lives.
struct Waiting;

impl Waiting {
    fn start() -> Self {
        metrics::gauge!("fjord_replication_waiting_requests").increment(1.0);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!("fjord_replication_waiting_requests").decrement(1.0);
    }
}

/// Why an acks=all append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The in-sync set had fewer members than the topic's minimum when the records
    /// were committed: they are stored, but on fewer replicas than asked.
    #[error("{isr} in-sync replicas after the append, min.insync.replicas is {min}")]
    NotEnoughReplicasAfterAppend { isr: usize, min: usize },
    /// This broker stopped leading the partition before the records were committed;
    /// they may or may not survive.
    #[error("leadership moved before the records were replicated")]
    NotLeader,
    #[error("not replicated to the in-sync replicas within {0:?}")]
    TimedOut(Duration),
}

/// One partition this broker leads, in one leader epoch.
/// How a wait for the in-sync replicas ended.
enum Waited {
    Committed,
    Deposed,
    Shrunk,
}

#[derive(Debug)]
pub struct PartitionLeader {
    partition: TopicPartition,
    topic_id: Uuid,
    log: Arc<PartitionLog>,
    leader_epoch: i32,
    state: Mutex<LeaderState>,
    changes: Arc<watch::Sender<u64>>,
    proposals: mpsc::UnboundedSender<Proposal>,
    node_id: i32,
    /// Turns true when this leader is replaced or stopped: its waiters give up.
    deposed: watch::Sender<bool>,
    /// The size of the in-sync set as the metadata has it: a waiter whose topic needs
    /// more gives up.
    isr_size: watch::Sender<usize>,
}

impl PartitionLeader {
    #[allow(clippy::too_many_arguments)]
    fn start(
        node_id: i32,
        replica_lag_ms: i64,
        partition: TopicPartition,
        topic_id: Uuid,
        image: &PartitionImage,
        min_insync: usize,
        log: Arc<PartitionLog>,
        changes: Arc<watch::Sender<u64>>,
        proposals: mpsc::UnboundedSender<Proposal>,
    ) -> Self {
        let (state, effects) = LeaderState::new(LeaderStart {
            node_id,
            leader_epoch: image.leader_epoch,
            partition_epoch: image.partition_epoch,
            replicas: image.replicas.clone(),
            isr: image.isr.clone(),
            min_insync,
            log_end: log.log_end_offset(),
            durable_end: log.durable_end(),
            high_watermark: log.high_watermark(),
            replica_lag_ms,
            now_ms: now_ms(),
        });
        tracing::info!(%partition, leader_epoch = image.leader_epoch, isr = ?image.isr, log_end = log.log_end_offset(), "leading partition");
        metrics::counter!("fjord_replication_leaderships_started_total").increment(1);
        let leader = Self {
            partition,
            topic_id,
            log,
            leader_epoch: image.leader_epoch,
            state: Mutex::new(state),
            changes,
            proposals,
            node_id,
            deposed: watch::Sender::new(false),
            isr_size: watch::Sender::new(image.isr.len()),
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

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The in-sync set the high watermark waits for (the metadata's, with a proposed
    /// addition).
    pub fn counted_isr(&self) -> Vec<i32> {
        self.state().counted_isr()
    }

    /// Each follower's replication state, by node id.
    pub fn followers(&self) -> Vec<FollowerView> {
        let state = self.state();
        let now_ms = now_ms();
        let counted = state.counted_isr();
        state
            .followers()
            .filter_map(|replica| {
                let (lag_offsets, since_caught_up_ms) = state.follower_lag(replica, now_ms)?;
                Some(FollowerView {
                    replica,
                    fetch_offset: state.follower_fetch_offset(replica),
                    lag_offsets,
                    since_caught_up_ms,
                    in_sync: counted.contains(&replica),
                })
            })
            .collect()
    }

    /// Whether the metadata's in-sync set lacks some of the partition's replicas.
    pub fn under_replicated(&self) -> bool {
        let state = self.state();
        state.isr().len() < state.followers().count() + 1
    }

    /// Appends validated batches in this leader's epoch; they become visible once
    /// [`commit`](Self::commit) returns.
    pub fn append(&self, batches: &[RecordBatch]) -> Result<AppendInfo, StorageError> {
        let mut state = self.state();
        let info = self.log.append(batches, self.leader_epoch)?;
        self.handle(
            &mut state,
            Event::Appended {
                log_end: info.last_offset + 1,
            },
        );
        drop(state);
        self.changes.send_modify(|count| *count += 1);
        Ok(info)
    }

    /// Waits until `info`'s batches are durable on this broker under the log's
    /// policy (acks=leader), letting the high watermark cover them as far as the
    /// in-sync set allows.
    pub async fn commit(&self, info: &AppendInfo) -> Result<(), StorageError> {
        self.log.commit(info).await?;
        let durable_end = self.log.durable_end();
        self.apply(Event::Durable { durable_end });
        Ok(())
    }

    /// [`commit`](Self::commit), then waits until the high watermark covers the
    /// batches (acks=all), at most `timeout`. Succeeds only if the in-sync set then
    /// has at least `min_insync` members.
    pub async fn commit_replicated(
        &self,
        info: &AppendInfo,
        min_insync: usize,
        timeout: Duration,
    ) -> Result<(), CommitError> {
        let _waiting = Waiting::start();
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.commit(info))
            .await
            .map_err(|_| CommitError::TimedOut(timeout))??;
        let end = info.last_offset + 1;
        let mut high_watermark = self.log.watch_high_watermark();
        let mut deposed = self.deposed.subscribe();
        let mut isr_size = self.isr_size.subscribe();
        // The high watermark does not move while the in-sync set is below the
        // topic's minimum: a shrink below it ends the wait.
        let waited = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                reached = high_watermark.wait_for(|offset| *offset >= end) => {
                    reached.map_or(Waited::Deposed, |_| Waited::Committed)
                }
                _ = deposed.wait_for(|deposed| *deposed) => Waited::Deposed,
                _ = isr_size.wait_for(|size| *size < min_insync) => Waited::Shrunk,
            }
        })
        .await;
        let isr = self.state().isr().len();
        match waited {
            Err(_) => Err(CommitError::TimedOut(timeout)),
            Ok(Waited::Deposed) => Err(CommitError::NotLeader),
            Ok(Waited::Committed) if isr >= min_insync => Ok(()),
            Ok(Waited::Committed | Waited::Shrunk) => {
                Err(CommitError::NotEnoughReplicasAfterAppend {
                    isr,
                    min: min_insync,
                })
            }
        }
    }

    /// A follower fetched from `fetch_offset` with everything below `durable_end`
    /// durable.
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        durable_end: i64,
    ) -> Result<(), FetchRefused> {
        let mut state = self.state();
        let effects = state.handle(Event::FollowerFetched {
            replica,
            fetch_offset,
            durable_end,
            now_ms: now_ms(),
        })?;
        self.run(&effects);
        Ok(())
    }

    fn metadata_changed(&self, image: &PartitionImage, min_insync: usize) {
        let mut state = self.state();
        let before = state.isr().to_vec();
        self.handle(
            &mut state,
            Event::Metadata {
                replicas: image.replicas.clone(),
                isr: image.isr.clone(),
                min_insync,
                partition_epoch: image.partition_epoch,
                now_ms: now_ms(),
            },
        );
        let after = state.isr();
        self.isr_size.send_replace(after.len());
        if after.iter().any(|replica| !before.contains(replica)) {
            metrics::counter!("fjord_replication_isr_expands_total").increment(1);
        }
        if before.iter().any(|replica| !after.contains(replica)) {
            metrics::counter!("fjord_replication_isr_shrinks_total").increment(1);
        }
    }

    fn apply(&self, event: Event) {
        let mut state = self.state();
        self.handle(&mut state, event);
    }

    /// Applies an event under the state's lock and runs its effects before the lock
    /// is let go, so that effects take place in the order they were decided.
    fn handle(&self, state: &mut LeaderState, event: Event) {
        match state.handle(event) {
            Ok(effects) => self.run(&effects),
            Err(refused) => {
                tracing::debug!(partition = %self.partition, %refused, "replication event refused")
            }
        }
    }

    fn run(&self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::HighWatermark(offset) => {
                    self.log.set_high_watermark(*offset);
                    self.changes.send_modify(|count| *count += 1);
                }
                Effect::ProposeIsr {
                    isr,
                    leader_epoch,
                    partition_epoch,
                } => {
                    tracing::info!(partition = %self.partition, ?isr, "proposing an in-sync set change");
                    let proposal = Proposal {
                        partition: self.partition.clone(),
                        change: IsrChange {
                            topic_id: self.topic_id,
                            partition: self.partition.partition,
                            leader: self.node_id,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                            isr: isr.clone(),
                        },
                    };
                    // Closed only when the broker stops: nothing to propose to then.
                    if self.proposals.send(proposal).is_err() {
                        tracing::debug!(partition = %self.partition, "stopping: change not proposed");
                    }
                }
            }
        }
    }

    /// This leader no longer leads: requests waiting for its high watermark give up.
    fn depose(&self) {
        self.deposed.send_replace(true);
    }
}

/// Milliseconds on a monotonic clock (since the first call), the time the state
/// machines are given: a wall-clock jump must not make every follower lag at once.
fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}
