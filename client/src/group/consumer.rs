//! [`GroupConsumer`]: a consumer whose partitions are chosen by its group's
//! coordinator.
//!
//! It wraps a [`Consumer`] with manual assignment and drives that assignment from the
//! heartbeat task's updates ([`super::membership`]). Every change is acted on inside
//! `poll`, before any record of the new assignment is returned:
//!
//! 1. revoked partitions: with auto-commit, their positions are committed; without,
//!    the offsets the application marked processed ([`GroupConsumer::mark_processed`]);
//!    the listener hears [`RebalanceEvent::Revoked`]; their buffered records are
//!    dropped;
//! 2. added partitions: their committed offsets are fetched and sought (partitions
//!    without one start per `auto_offset_reset`); the listener hears
//!    [`RebalanceEvent::Assigned`];
//! 3. the new owned set is reported to the heartbeat task, which tells the coordinator
//!    at once, so that released partitions reach their next owner quickly.
//!
//! Because a revoked partition is released only after step 1, and an added one is
//! given only after its previous owner released it, no two members ever consume the
//! same partition at once (as long as each processes a record before polling again).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::GroupConsumerConfig;
use super::commit::{self, Offsets};
use super::coordinator::CoordinatorLink;
use super::event::RebalanceEvent;
use super::membership::{
    self, AssignmentChange, AssignmentUpdate, LEAVE_TIMEOUT, Membership, OwnedReport,
};
use crate::client::Client;
use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// How long one poll of [`GroupConsumer::stream`] waits before it looks again.
const STREAM_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The application's rebalance listener.
type Listener = Box<dyn FnMut(&RebalanceEvent) + Send>;

/// Consumes the partitions its group's coordinator assigns to it.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fjord_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig};
///
/// # async fn example() -> fjord_client::Result<()> {
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
/// let mut consumer = GroupConsumer::new(&client, GroupConsumerConfig::new("shipping"))?;
/// consumer.on_rebalance(|event| println!("{event:?}"));
/// consumer.subscribe(["orders"])?;
/// for _ in 0..10 {
///     for record in consumer.poll(Duration::from_millis(500)).await? {
///         println!("{}@{}: {:?}", record.partition, record.offset, record.value);
///     }
/// }
/// consumer.close().await?; // commits and leaves the group
/// # Ok(())
/// # }
/// ```
///
/// Dropping it without [`GroupConsumer::close`] stops its heartbeats without leaving:
/// the coordinator reassigns its partitions once its session times out.
///
/// **At-least-once with manual commits.** With `auto_commit_interval_ms` set to `None`,
/// call [`GroupConsumer::mark_processed`] for each record once it is processed, and
/// [`GroupConsumer::commit_processed`] when it suits you. A partition taken away in a
/// rebalance has its marked offset committed before it is released (where the Java
/// client would have the application commit in `onPartitionsRevoked`; the rebalance
/// listener here is a plain function and cannot wait for a commit), and so does
/// [`GroupConsumer::close`]: its next owner starts right after the last record marked,
/// neither skipping a record nor reading a processed one again.
///
/// ```no_run
/// # use std::time::Duration;
/// # use fjord_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig};
/// # async fn example(client: &Client) -> fjord_client::Result<()> {
/// let mut config = GroupConsumerConfig::new("billing");
/// config.auto_commit_interval_ms = None;
/// let mut consumer = GroupConsumer::new(client, config)?;
/// consumer.subscribe(["orders"])?;
/// loop {
///     for record in consumer.poll(Duration::from_millis(500)).await? {
///         // ... process the record ...
///         consumer.mark_processed(&record);
///     }
///     consumer.commit_processed().await?;
/// }
/// # }
/// ```
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    consumer: Consumer,
    membership: Arc<Membership>,
    heartbeat: Option<JoinHandle<()>>,
    updates: watch::Receiver<AssignmentUpdate>,
    /// The partitions this member owns (has acted on).
    owned: BTreeSet<TopicPartition>,
    /// The update `owned` reflects.
    acknowledged: u64,
    listener: Option<Listener>,
    next_auto_commit: Option<Instant>,
    /// What was committed last, so that only changed positions are committed.
    committed: Offsets,
    /// The offsets after the records the application marked processed, of owned
    /// partitions.
    processed: Offsets,
    /// An auto-commit in flight and the offsets it carries.
    in_flight: Option<(JoinHandle<Result<()>>, Offsets)>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group_id", &self.config.group_id)
            .field("owned", &self.owned)
            .field("identity", &self.membership.identity())
            .finish_non_exhaustive()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
        if let Some((commit, _)) = &self.in_flight {
            commit.abort();
        }
    }
}

/// An offset commit started by [`GroupConsumer::commit_async`]; await it for the
/// outcome. It completes whether or not it is awaited.
#[derive(Debug)]
pub struct CommitHandle {
    task: JoinHandle<Result<()>>,
}

impl Future for CommitHandle {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(context)
            .map(|joined| joined.unwrap_or(Err(Error::ConsumerClosed)))
    }
}

impl GroupConsumer {
    /// A group consumer on `client`'s connections; it joins its group on
    /// [`GroupConsumer::subscribe`].
    pub fn new(client: &Client, config: GroupConsumerConfig) -> Result<GroupConsumer> {
        config.validate()?;
        let membership = Arc::new(Membership::new(
            CoordinatorLink::new(client, &config.group_id),
            i32::try_from(config.rebalance_timeout_ms).unwrap_or(i32::MAX),
        ));
        Ok(GroupConsumer {
            consumer: Consumer::new(client, config.consumer.clone())?,
            updates: membership.updates.subscribe(),
            membership,
            config,
            heartbeat: None,
            owned: BTreeSet::new(),
            acknowledged: 0,
            listener: None,
            next_auto_commit: None,
            committed: Offsets::new(),
            processed: Offsets::new(),
            in_flight: None,
        })
    }

    /// Calls `listener` for every [`RebalanceEvent`], during `poll`.
    pub fn on_rebalance(&mut self, listener: impl FnMut(&RebalanceEvent) + Send + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// Joins the group (or changes the subscription) and starts heartbeating in the
    /// background. Partitions arrive during the following polls.
    pub fn subscribe<T: Into<String>>(
        &mut self,
        topics: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if topics.is_empty() {
            return Err(Error::Config("subscribe to at least one topic".into()));
        }
        self.membership
            .subscription
            .send_replace(topics.into_iter().collect());
        if self.heartbeat.is_none() {
            self.heartbeat = Some(tokio::spawn(membership::run(self.membership.clone())));
            self.next_auto_commit = self
                .config
                .auto_commit_interval_ms
                .map(|interval| Instant::now() + Duration::from_millis(interval));
        }
        Ok(())
    }

    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// This member's id, once it has joined.
    pub fn member_id(&self) -> Option<String> {
        Some(self.membership.identity().member_id).filter(|id| !id.is_empty())
    }

    /// The member epoch of the latest heartbeat response.
    pub fn member_epoch(&self) -> i32 {
        self.membership.identity().member_epoch
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// The offset of the next record `poll` returns for an owned partition.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.consumer.position(partition)
    }

    /// Continues an owned partition from `offset`.
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<()> {
        self.consumer.seek(partition, offset)
    }

    /// Returns the records available within `timeout` (at most `poll_records_max`),
    /// after acting on any assignment change; auto-commits when due.
    ///
    /// Cancel-safe: a poll dropped before it completes (a branch of `tokio::select!`
    /// that lost, a timeout) loses no record, and an assignment change it was acting
    /// on is acted on again, from where it stood, by the next poll (the change is
    /// acknowledged to the coordinator only once done). A commit it started in the
    /// background goes on.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reconcile().await?;
            self.auto_commit().await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Vec::new());
            }
            let Self {
                consumer, updates, ..
            } = self;
            tokio::select! {
                records = consumer.poll(remaining) => return records,
                // A new assignment: act on it now rather than at the next poll.
                _ = updates.changed() => {}
            }
        }
    }

    /// The records of the owned partitions, one by one, without end. A failed poll
    /// yields its error; the stream goes on after it.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(
            (self, VecDeque::new()),
            |(consumer, mut buffered)| async move {
                loop {
                    if let Some(record) = buffered.pop_front() {
                        return Some((Ok(record), (consumer, buffered)));
                    }
                    match consumer.poll(STREAM_POLL_INTERVAL).await {
                        Ok(records) => buffered.extend(records),
                        Err(error) => return Some((Err(error), (consumer, buffered))),
                    }
                }
            },
        )
    }

    /// Commits the positions of every owned partition and waits for the outcome.
    pub async fn commit(&mut self) -> Result<()> {
        self.finish_in_flight().await;
        let offsets = self.positions(&self.owned, false);
        commit::commit(&self.membership, offsets.clone()).await?;
        self.committed.extend(offsets);
        Ok(())
    }

    /// Starts committing the positions of every owned partition and returns at once.
    pub fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.positions(&self.owned, false);
        let membership = self.membership.clone();
        CommitHandle {
            task: tokio::spawn(async move { commit::commit(&membership, offsets).await }),
        }
    }

    /// Marks `record` processed: [`GroupConsumer::commit_processed`], a rebalance that
    /// takes its partition away and [`GroupConsumer::close`] commit the offset after
    /// it (when auto-commit is off). A record of a partition this member no longer
    /// owns is ignored: its next owner reads it again.
    pub fn mark_processed(&mut self, record: &ConsumerRecord) {
        let partition = TopicPartition::new(record.topic.clone(), record.partition);
        if self.owned.contains(&partition) {
            self.processed.insert(partition, record.offset + 1);
        }
    }

    /// Commits the offsets marked with [`GroupConsumer::mark_processed`] that changed
    /// since they were last committed, and waits for the outcome.
    pub async fn commit_processed(&mut self) -> Result<()> {
        let offsets = self.processed_of(&self.owned);
        if offsets.is_empty() {
            return Ok(());
        }
        commit::commit(&self.membership, offsets.clone()).await?;
        self.committed.extend(offsets);
        Ok(())
    }

    /// Commits the given offsets (each the next offset to consume) of owned partitions.
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, i64>) -> Result<()> {
        commit::commit(&self.membership, offsets.clone()).await?;
        self.committed.extend(offsets);
        Ok(())
    }

    /// Leaves the group in an orderly way: waits for a commit in flight, commits the
    /// positions (with auto-commit on) or the offsets marked processed (with it off),
    /// tells the listener the partitions are revoked, and leaves, so the coordinator
    /// reassigns them at once.
    pub async fn close(mut self) -> Result<()> {
        self.finish_in_flight().await;
        let mut result = Ok(());
        if self.member_id().is_some() {
            let offsets = self.releasing(&self.owned);
            if !offsets.is_empty() {
                result = commit::commit(&self.membership, offsets).await;
            }
        }
        let revoked: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        self.consumer.assign(std::iter::empty());
        if !revoked.is_empty() {
            self.notify(&RebalanceEvent::Revoked(revoked));
        }
        self.membership.leave.send_replace(true);
        if let Some(heartbeat) = self.heartbeat.take()
            && tokio::time::timeout(LEAVE_TIMEOUT + Duration::from_secs(1), heartbeat)
                .await
                .is_err()
        {
            tracing::debug!("the heartbeat task did not stop in time");
        }
        result
    }

    // ----- inside ---------------------------------------------------------------

    fn notify(&mut self, event: &RebalanceEvent) {
        if let Some(listener) = &mut self.listener {
            listener(event);
        }
    }

    /// What to commit for `partitions` when this member lets them go: with auto-commit
    /// on their changed positions, else their changed offsets marked processed.
    fn releasing(&self, partitions: &BTreeSet<TopicPartition>) -> Offsets {
        if self.config.auto_commit_interval_ms.is_some() {
            self.positions(partitions, true)
        } else {
            self.processed_of(partitions)
        }
    }

    /// The offsets marked processed of `partitions` that differ from the last commit.
    fn processed_of(&self, partitions: &BTreeSet<TopicPartition>) -> Offsets {
        self.processed
            .iter()
            .filter(|(partition, offset)| {
                partitions.contains(*partition) && self.committed.get(*partition) != Some(*offset)
            })
            .map(|(partition, offset)| (partition.clone(), *offset))
            .collect()
    }

    /// The positions of `partitions`; with `changed_only`, those that differ from
    /// the last commit.
    fn positions(&self, partitions: &BTreeSet<TopicPartition>, changed_only: bool) -> Offsets {
        partitions
            .iter()
            .filter_map(|partition| Some((partition.clone(), self.consumer.position(partition)?)))
            .filter(|(partition, position)| {
                !changed_only || self.committed.get(partition) != Some(position)
            })
            .collect()
    }

    fn report(&self) {
        self.membership.owned.send_replace(OwnedReport {
            partitions: self.owned.clone(),
            acknowledged: self.acknowledged,
        });
    }

    /// Waits for the auto-commit in flight, if any, and records its outcome.
    async fn finish_in_flight(&mut self) {
        let Some((task, offsets)) = self.in_flight.take() else {
            return;
        };
        match task.await {
            Ok(Ok(())) => self.committed.extend(offsets),
            Ok(Err(error)) => {
                tracing::warn!(group = %self.config.group_id, %error, "auto-commit failed")
            }
            Err(error) => {
                tracing::warn!(group = %self.config.group_id, %error, "auto-commit task failed")
            }
        }
    }

    /// Starts an auto-commit of the changed positions when one is due.
    async fn auto_commit(&mut self) {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(task, _)| task.is_finished())
        {
            self.finish_in_flight().await;
        }
        let (Some(interval), Some(due)) =
            (self.config.auto_commit_interval_ms, self.next_auto_commit)
        else {
            return;
        };
        if self.in_flight.is_some() || Instant::now() < due {
            return;
        }
        self.next_auto_commit = Some(Instant::now() + Duration::from_millis(interval));
        let offsets = self.positions(&self.owned, true);
        if offsets.is_empty() {
            return;
        }
        let membership = self.membership.clone();
        let carried = offsets.clone();
        let task = tokio::spawn(async move { commit::commit(&membership, carried).await });
        self.in_flight = Some((task, offsets));
    }

    /// Acts on the latest assignment update unless it has been acted on. (Comparing
    /// sequence numbers rather than asking the channel whether it changed, because
    /// `poll` also waits on the channel, which marks updates as seen.)
    async fn reconcile(&mut self) -> Result<()> {
        let update = self.updates.borrow_and_update().clone();
        if update.sequence == self.acknowledged {
            return Ok(());
        }
        match update.change {
            // Never acknowledged: every later poll reports it too.
            AssignmentChange::Failed(error) => Err(error),
            AssignmentChange::Lost => {
                if let Some((task, _)) = self.in_flight.take() {
                    task.abort();
                }
                let lost: Vec<TopicPartition> =
                    std::mem::take(&mut self.owned).into_iter().collect();
                self.consumer.assign(std::iter::empty());
                self.committed.clear();
                self.processed.clear();
                if !lost.is_empty() {
                    self.notify(&RebalanceEvent::Lost(lost));
                }
                self.acknowledged = update.sequence;
                self.report();
                Ok(())
            }
            AssignmentChange::Assigned(target) => self.reassign(update.sequence, target).await,
        }
    }

    async fn reassign(&mut self, sequence: u64, target: BTreeSet<TopicPartition>) -> Result<()> {
        let revoked: BTreeSet<TopicPartition> = self.owned.difference(&target).cloned().collect();
        let added: BTreeSet<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if !revoked.is_empty() {
            self.finish_in_flight().await;
            let offsets = self.releasing(&revoked);
            if !offsets.is_empty()
                && let Err(error) = commit::commit(&self.membership, offsets).await
            {
                tracing::warn!(group = %self.config.group_id, %error, "committing revoked partitions failed");
            }
            self.notify(&RebalanceEvent::Revoked(revoked.iter().cloned().collect()));
            for partition in &revoked {
                self.committed.remove(partition);
                self.processed.remove(partition);
                self.owned.remove(partition);
            }
        }
        if added.is_empty() {
            self.consumer.assign(self.owned.iter().cloned());
        } else {
            let link = &self.membership.link;
            let committed = match commit::committed(link, &added).await {
                Ok(committed) => committed,
                Err(error) => {
                    // Without the committed offsets the new partitions cannot start;
                    // keep the rest going, and try again at the next poll. The update
                    // stays unacknowledged, so the coordinator keeps them for us.
                    self.consumer.assign(self.owned.iter().cloned());
                    self.report();
                    return Err(error);
                }
            };
            self.consumer.assign(target.iter().cloned());
            for (partition, offset) in committed {
                self.consumer.seek(&partition, offset)?;
                self.committed.insert(partition, offset);
            }
            self.notify(&RebalanceEvent::Assigned(added.into_iter().collect()));
        }
        self.owned = target;
        self.acknowledged = sequence;
        self.report();
        Ok(())
    }
}
