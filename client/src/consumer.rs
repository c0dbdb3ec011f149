//! The consumer: reads records from partitions the application assigns.
//!
//! - `config`: [`ConsumerConfig`] and the [`OffsetReset`] policy.
//! - `record`: [`ConsumerRecord`].
//! - `fetching`: the fetch pipeline: starting fetches per leader, handling their
//!   answers.
//! - `decode`: fetched bytes → records, skipping those before the position.
//!
//! Positions. Each assigned partition has a *position* (the offset of the next record
//! the application gets) and a *fetch offset* (the next offset to fetch). They differ
//! while fetched records wait in the consumer's buffer. A seek sets both, drops the
//! partition's buffered records and bumps the partition's *generation*, so that the
//! answer to a fetch started before the seek is recognised and discarded.
//!
//! Pipelining. Partitions are fetched per leader, one fetch per leader in flight,
//! each in its own task. `poll` starts the next fetches *before* it returns records,
//! so the broker is already working on the next response while the application
//! handles this one. Fetching pauses while `buffered_records_max` records wait.
//!
//! Errors. `OFFSET_OUT_OF_RANGE` applies the `auto_offset_reset` policy; errors that
//! mean the leader moved refresh metadata and retry after a backoff; a lost
//! connection backs that broker off; anything else is returned from `poll`.

mod config;
mod decode;
mod fetching;
mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use fjord_protocol::messages::OffsetSpec;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use self::config::{ConsumerConfig, OffsetReset};
use self::fetching::FetchOutcome;
pub use self::record::ConsumerRecord;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::offsets::list_offsets;
use crate::topic_partition::TopicPartition;

/// Reads records from assigned partitions.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fjord_client::{Client, ClientConfig, Consumer, ConsumerConfig, TopicPartition};
///
/// # async fn example() -> fjord_client::Result<()> {
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
/// let mut consumer = Consumer::new(&client, ConsumerConfig::default())?;
/// let partition = TopicPartition::new("orders", 0);
/// consumer.assign([partition.clone()]);
/// consumer.seek_to_beginning(&[partition]).await?;
/// loop {
///     for record in consumer.poll(Duration::from_millis(500)).await? {
///         println!("{}@{}: {:?}", record.partition, record.offset, record.value);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    backoff: Backoff,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    buffered: VecDeque<ConsumerRecord>,
    /// Leader address → the task fetching from it.
    fetches: HashMap<String, AbortHandle>,
    /// Leader address → (consecutive failures, not before).
    broker_backoff: HashMap<String, (u32, Instant)>,
    outcomes: mpsc::Receiver<FetchOutcome>,
    outcome_sender: mpsc::Sender<FetchOutcome>,
}

#[derive(Debug)]
struct PartitionState {
    /// The next offset the application gets; `None` until a seek or reset sets it.
    position: Option<i64>,
    /// The next offset to fetch.
    fetch_offset: i64,
    /// Records of this partition in the consumer's buffer.
    buffered_records: usize,
    /// Bumped by every seek and reset.
    generation: u64,
    in_flight: bool,
    /// A reset to look up at the next poll.
    pending_reset: Option<OffsetSpec>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    retry_at: Option<Instant>,
}

impl PartitionState {
    fn new(reset: OffsetReset) -> Self {
        Self {
            position: None,
            fetch_offset: 0,
            buffered_records: 0,
            generation: 0,
            in_flight: false,
            pending_reset: reset_spec(reset),
            failures: 0,
            retry_at: None,
        }
    }

    fn seek(&mut self, offset: i64) {
        self.position = Some(offset);
        self.fetch_offset = offset;
        self.buffered_records = 0;
        self.generation += 1;
        self.pending_reset = None;
        self.failures = 0;
        self.retry_at = None;
    }
}

fn reset_spec(reset: OffsetReset) -> Option<OffsetSpec> {
    match reset {
        OffsetReset::Earliest => Some(OffsetSpec::Earliest),
        OffsetReset::Latest => Some(OffsetSpec::Latest),
        OffsetReset::Error => None,
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for fetch in self.fetches.values() {
            fetch.abort();
        }
    }
}

impl Consumer {
    /// A consumer on `client`'s connections, with nothing assigned.
    pub fn new(client: &Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let (outcome_sender, outcomes) = mpsc::channel(fetching::FETCHES_IN_FLIGHT_MAX);
        Ok(Consumer {
            client: client.clone(),
            backoff: Backoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms),
            config,
            partitions: BTreeMap::new(),
            buffered: VecDeque::new(),
            fetches: HashMap::new(),
            broker_backoff: HashMap::new(),
            outcomes,
            outcome_sender,
        })
    }

    /// Replaces the assignment. Partitions that stay keep their position; new ones
    /// start per `auto_offset_reset` unless sought before the next poll.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let wanted: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions
            .retain(|partition, _| wanted.contains(partition));
        self.buffered.retain(|record| {
            wanted.contains(&TopicPartition::new(record.topic.clone(), record.partition))
        });
        for partition in wanted {
            self.partitions
                .entry(partition)
                .or_insert_with(|| PartitionState::new(self.config.auto_offset_reset));
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The offset of the next record `poll` returns for `partition`, once known.
    pub fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.partitions
            .get(partition)
            .and_then(|state| state.position)
    }

    /// Continues `partition` from `offset`.
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<()> {
        let state = self.state_mut(partition)?;
        state.seek(offset);
        self.drop_buffered(partition);
        Ok(())
    }

    /// Continues each partition from its oldest record.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetSpec::Earliest)
            .await
            .map(drop)
    }

    /// Continues each partition from its end: only records produced later.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to(partitions, OffsetSpec::Latest).await.map(drop)
    }

    /// Continues each partition from its first record with a timestamp at or after
    /// `timestamp_ms`, or from its end when there is none. Returns the offsets chosen.
    pub async fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        if timestamp_ms < 0 {
            return Err(Error::Config(format!(
                "timestamp {timestamp_ms} is negative"
            )));
        }
        let mut chosen = self
            .seek_to(partitions, OffsetSpec::Timestamp(timestamp_ms))
            .await?;
        let past_end: Vec<TopicPartition> = chosen
            .iter()
            .filter(|(_, offset)| **offset < 0)
            .map(|(partition, _)| partition.clone())
            .collect();
        if !past_end.is_empty() {
            chosen.extend(self.seek_to(&past_end, OffsetSpec::Latest).await?);
        }
        Ok(chosen)
    }

    /// The first offset of each partition.
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        self.offsets(partitions, OffsetSpec::Earliest).await
    }

    /// The end offset (the high watermark: one past the last readable record) of each
    /// partition.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        self.offsets(partitions, OffsetSpec::Latest).await
    }

    /// Returns the records available within `timeout`, at most `poll_records_max`,
    /// in offset order per partition; an empty vector when none arrived in time.
    ///
    /// Cancel-safe: a poll dropped before it completes (a branch of `tokio::select!`
    /// that lost, a timeout) loses no record; the records it would have returned come
    /// with the next poll.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_until(Some(Instant::now() + timeout), self.config.poll_records_max)
            .await
    }

    /// The records of the assigned partitions, one by one, without end. A failed poll
    /// yields its error; the stream goes on after it.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # use fjord_client::{Client, ClientConfig, Consumer, ConsumerConfig, TopicPartition};
    ///
    /// # async fn example(mut consumer: Consumer) -> fjord_client::Result<()> {
    /// let mut records = std::pin::pin!(consumer.stream());
    /// while let Some(record) = records.next().await {
    ///     println!("{:?}", record?.value);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(self, |consumer| async move {
            let next = consumer.next_record().await;
            Some((next, consumer))
        })
    }

    async fn next_record(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(record) = self.poll_until(None, 1).await?.pop() {
                return Ok(record);
            }
        }
    }

    /// The poll loop; `deadline` `None` waits as long as it takes.
    async fn poll_until(
        &mut self,
        deadline: Option<Instant>,
        records_max: usize,
    ) -> Result<Vec<ConsumerRecord>> {
        loop {
            if !self.buffered.is_empty() {
                // Pipelining: the next fetch runs while the caller handles these. It
                // starts first, since it may wait (a metadata refresh): records leave
                // the buffer, and positions move past them, only in the step that
                // returns them, so a poll dropped at an await loses none.
                self.start_fetches().await;
                return Ok(self.take_buffered(records_max));
            }
            self.apply_resets().await?;
            self.start_fetches().await;
            let outcome = if self.fetches.is_empty() {
                // Nothing in flight: wait for the next retry time, if any, or the deadline.
                let wake_at = [deadline, self.next_retry()].into_iter().flatten().min();
                match wake_at {
                    Some(wake_at) => tokio::time::sleep_until(wake_at).await,
                    None => std::future::pending::<()>().await,
                }
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return Ok(Vec::new());
                }
                continue;
            } else {
                let next = self.outcomes.recv();
                match deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                        Ok(outcome) => outcome,
                        Err(_elapsed) => return Ok(Vec::new()),
                    },
                    None => next.await,
                }
            };
            let outcome = outcome.expect("the consumer holds a sender of its own channel");
            self.handle_outcome(outcome).await?;
        }
    }

    fn take_buffered(&mut self, records_max: usize) -> Vec<ConsumerRecord> {
        let count = records_max.min(self.buffered.len());
        let records: Vec<ConsumerRecord> = self.buffered.drain(..count).collect();
        for record in &records {
            let partition = TopicPartition::new(record.topic.clone(), record.partition);
            if let Some(state) = self.partitions.get_mut(&partition) {
                state.buffered_records -= 1;
                state.position = Some(if state.buffered_records == 0 {
                    state.fetch_offset
                } else {
                    record.offset + 1
                });
            }
        }
        records
    }

    /// Looks up offsets for partitions waiting for a reset.
    async fn apply_resets(&mut self) -> Result<()> {
        let now = Instant::now();
        let mut queries = Vec::new();
        for (partition, state) in &self.partitions {
            if state.position.is_some() || state.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            match state.pending_reset {
                Some(spec) => queries.push((partition.clone(), spec)),
                None => {
                    return Err(Error::NoPosition {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                    });
                }
            }
        }
        if queries.is_empty() {
            return Ok(());
        }
        match list_offsets(&self.client, &queries).await {
            Ok(offsets) => {
                for (partition, listed) in offsets {
                    if let Some(state) = self.partitions.get_mut(&partition) {
                        tracing::debug!(%partition, offset = listed.offset, "position reset");
                        state.seek(listed.offset);
                    }
                }
                Ok(())
            }
            Err(error) if error.is_retriable() => {
                tracing::debug!(%error, "offset reset failed; will retry");
                for (partition, _) in &queries {
                    self.back_off_partition(partition);
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn back_off_partition(&mut self, partition: &TopicPartition) {
        if let Some(state) = self.partitions.get_mut(partition) {
            state.failures = state.failures.saturating_add(1);
            state.retry_at = Some(Instant::now() + self.backoff.delay(state.failures));
        }
    }

    async fn seek_to(
        &mut self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        for partition in partitions {
            self.state_mut(partition)?;
        }
        let offsets = self.offsets(partitions, spec).await?;
        for (partition, offset) in &offsets {
            if *offset >= 0 {
                self.seek(partition, *offset)?;
            }
        }
        Ok(offsets)
    }

    async fn offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let queries: Vec<(TopicPartition, OffsetSpec)> = partitions
            .iter()
            .map(|partition| (partition.clone(), spec))
            .collect();
        Ok(list_offsets(&self.client, &queries)
            .await?
            .into_iter()
            .map(|(partition, listed)| (partition, listed.offset))
            .collect())
    }

    fn state_mut(&mut self, partition: &TopicPartition) -> Result<&mut PartitionState> {
        self.partitions
            .get_mut(partition)
            .ok_or_else(|| Error::NotAssigned {
                topic: partition.topic.clone(),
                partition: partition.partition,
            })
    }

    fn drop_buffered(&mut self, partition: &TopicPartition) {
        self.buffered.retain(|record| {
            record.partition != partition.partition || record.topic != partition.topic
        });
    }
}
