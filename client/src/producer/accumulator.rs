//! Per-partition batching: records in, ready batches out.
//!
//! ```text
//!  send ──▶ open batch ──(full, linger over, flush, close)──▶ queued ──▶ in flight
//!               ▲ one per partition                            FIFO       at most one
//!               │                                                          per partition
//!  retry ───────┴──────────────── back to the front of queued ◀─── retriable failure
//! ```
//!
//! This module is pure state: time comes in as an argument and nothing here does I/O,
//! so every rule is unit-tested step by step. The sender task
//! ([`super::sender`]) drives it.
//!
//! Ordering: a partition has at most one batch in flight, and a batch that must be
//! retried goes back to the *front* of its partition's queue, so batches reach the log
//! in the order their records were sent, retries included.
//!
//! Flush: every batch has a sequence number; [`Accumulator::flush_target`] makes every
//! existing batch ready at once and names the first number it does not cover. The
//! `progress` watch publishes the lowest number not yet completed, so a flush waits
//! until it reaches its target, however many records are sent meanwhile.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::buffer::Reservation;
use super::delivery::{DeliveryFuture, DeliveryResult};
use crate::error::Error;
use crate::topic_partition::TopicPartition;

/// The accumulator's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccumulatorSettings {
    pub batch_bytes_max: usize,
    pub linger: Duration,
    pub delivery_timeout: Duration,
}

/// A batch of records for one partition, with the senders that resolve each record's
/// delivery and the buffer bytes its records hold.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub id: u64,
    pub topic_partition: TopicPartition,
    content: BatchContent,
    deliveries: Vec<oneshot::Sender<DeliveryResult>>,
    /// Released (dropped) when the batch is completed or failed.
    reservation: Reservation,
    pub created_at: Instant,
    pub deadline: Instant,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be sent again before this instant.
    pub retry_at: Option<Instant>,
    pub last_error: Option<Error>,
    /// The leader epoch of the partition's leader it is sent to, from the metadata
    /// (-1 until it is sent): a broker with another epoch refuses it.
    pub leader_epoch: i32,
}

#[derive(Debug)]
enum BatchContent {
    Open(BatchBuilder),
    Sealed(Bytes),
}

impl ProducerBatch {
    fn new(id: u64, topic_partition: TopicPartition, now: Instant, deadline: Instant) -> Self {
        Self {
            id,
            topic_partition,
            content: BatchContent::Open(BatchBuilder::new()),
            deliveries: Vec::new(),
            reservation: Reservation::default(),
            created_at: now,
            deadline,
            attempts: 0,
            retry_at: None,
            last_error: None,
            leader_epoch: -1,
        }
    }

    #[cfg(test)]
    pub(crate) fn record_count(&self) -> usize {
        self.deliveries.len()
    }

    pub(crate) fn size_bytes(&self) -> usize {
        match &self.content {
            BatchContent::Open(builder) => builder.size_bytes(),
            BatchContent::Sealed(bytes) => bytes.len(),
        }
    }

    /// Whether `record` may join this batch without taking it past `batch_bytes_max`.
    /// An empty batch takes any record, so a large record travels alone.
    fn fits(&self, record: &RecordInput<'_>, batch_bytes_max: usize) -> bool {
        match &self.content {
            BatchContent::Open(builder) => {
                builder.is_empty()
                    || builder.size_bytes() + builder.record_size_bytes(record) <= batch_bytes_max
            }
            BatchContent::Sealed(_) => false,
        }
    }

    fn push(
        &mut self,
        record: &RecordInput<'_>,
        reservation: Reservation,
    ) -> oneshot::Receiver<DeliveryResult> {
        let BatchContent::Open(builder) = &mut self.content else {
            panic!("record pushed into a sealed batch");
        };
        builder.push(record);
        self.reservation.merge(reservation);
        let (sender, receiver) = oneshot::channel();
        self.deliveries.push(sender);
        receiver
    }

    fn seal(&mut self) {
        if let BatchContent::Open(builder) = &mut self.content {
            let builder = std::mem::take(builder);
            self.content = BatchContent::Sealed(builder.finish());
        }
    }

    /// The finished batch bytes.
    ///
    /// # Panics
    ///
    /// When the batch is still open; only sealed batches leave the accumulator.
    pub(crate) fn records(&self) -> &Bytes {
        match &self.content {
            BatchContent::Sealed(bytes) => bytes,
            BatchContent::Open(_) => panic!("an open batch has no final bytes"),
        }
    }

    /// Resolves every record: record `i` is at `base_offset + i`, or -1 when the
    /// broker gave no offset (`acks = none`). The buffer bytes are released first, so
    /// that a resolved record no longer counts in `buffered_bytes`.
    fn resolve_stored(&mut self, base_offset: Option<i64>) {
        drop(std::mem::take(&mut self.reservation));
        let partition = self.topic_partition.partition;
        for (index, sender) in self.deliveries.drain(..).enumerate() {
            let offset = base_offset.map_or(-1, |base| base + index as i64);
            notify(sender, Ok((partition, offset)));
        }
    }

    fn resolve_failed(&mut self, error: &Error) {
        drop(std::mem::take(&mut self.reservation));
        for sender in self.deliveries.drain(..) {
            notify(sender, Err(error.clone()));
        }
    }
}

/// Resolves a delivery whose future may have been dropped, which is fine.
fn notify(sender: oneshot::Sender<DeliveryResult>, outcome: DeliveryResult) {
    if sender.send(outcome).is_err() {
        tracing::trace!("delivery future dropped before its outcome");
    }
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<ProducerBatch>,
    queued: VecDeque<ProducerBatch>,
    in_flight: bool,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.queued.is_empty() && !self.in_flight
    }
}

/// What [`Accumulator::append`] did.
#[derive(Debug)]
pub(crate) struct Appended {
    pub delivery: DeliveryFuture,
    /// A batch became ready or a new batch started its linger: the sender must look.
    pub wake_sender: bool,
}

/// What [`Accumulator::drain`] found.
#[derive(Debug)]
pub(crate) struct Drained {
    /// Sealed batches to send, at most one per partition.
    pub ready: Vec<ProducerBatch>,
    /// When the next batch becomes ready if nothing else happens.
    pub next_wake: Option<Instant>,
}

/// The batches of every partition of one producer.
#[derive(Debug)]
pub(crate) struct Accumulator {
    settings: AccumulatorSettings,
    queues: BTreeMap<TopicPartition, PartitionQueue>,
    next_batch_id: u64,
    incomplete: BTreeSet<u64>,
    /// Batches with a smaller id are sent without waiting for their linger.
    flush_below: u64,
    closing: bool,
    progress: watch::Sender<u64>,
}

impl Accumulator {
    /// An empty accumulator and the receiver of its progress (the lowest incomplete
    /// batch id).
    pub(crate) fn new(settings: AccumulatorSettings) -> (Self, watch::Receiver<u64>) {
        let (progress, receiver) = watch::channel(0);
        let accumulator = Self {
            settings,
            queues: BTreeMap::new(),
            next_batch_id: 0,
            incomplete: BTreeSet::new(),
            flush_below: 0,
            closing: false,
            progress,
        };
        (accumulator, receiver)
    }

    /// Adds a record to its partition's open batch, starting a new batch when there is
    /// none or the record does not fit.
    pub(crate) fn append(
        &mut self,
        topic_partition: TopicPartition,
        record: &RecordInput<'_>,
        reservation: Reservation,
        now: Instant,
    ) -> Appended {
        let batch_bytes_max = self.settings.batch_bytes_max;
        let queue = self.queues.entry(topic_partition.clone()).or_default();
        let mut wake_sender = false;
        if queue
            .open
            .as_ref()
            .is_some_and(|open| !open.fits(record, batch_bytes_max))
        {
            seal_open(queue);
            wake_sender = true;
        }
        let open = queue.open.get_or_insert_with(|| {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            self.incomplete.insert(id);
            wake_sender = true;
            ProducerBatch::new(
                id,
                topic_partition,
                now,
                now + self.settings.delivery_timeout,
            )
        });
        let receiver = open.push(record, reservation);
        if open.size_bytes() >= batch_bytes_max {
            seal_open(queue);
            wake_sender = true;
        }
        Appended {
            delivery: DeliveryFuture::new(receiver),
            wake_sender,
        }
    }

    /// Takes the batches to send now: for every partition without a batch in flight,
    /// its first queued batch (once its retry time has come), or else its open batch
    /// once lingered, flushed or closing. Batches past their delivery deadline are
    /// failed here instead.
    pub(crate) fn drain(&mut self, now: Instant) -> Drained {
        let mut ready = Vec::new();
        let mut expired = Vec::new();
        let mut next_wake: Option<Instant> = None;
        let mut wake_at = |at: Instant| next_wake = Some(next_wake.map_or(at, |next| next.min(at)));
        for queue in self.queues.values_mut() {
            if queue.in_flight {
                continue;
            }
            while queue
                .queued
                .front()
                .is_some_and(|batch| batch.deadline <= now)
            {
                expired.extend(queue.queued.pop_front());
            }
            if queue.queued.is_empty()
                && queue
                    .open
                    .as_ref()
                    .is_some_and(|batch| batch.deadline <= now)
            {
                seal_open(queue);
                expired.extend(queue.queued.pop_front());
            }
            if let Some(front) = queue.queued.front() {
                match front.retry_at {
                    Some(retry_at) if retry_at > now => wake_at(retry_at),
                    _ => {
                        ready.extend(queue.queued.pop_front());
                        queue.in_flight = true;
                    }
                }
                continue;
            }
            if let Some(open) = &queue.open {
                let due = open.created_at + self.settings.linger;
                if due <= now || open.id < self.flush_below || self.closing {
                    seal_open(queue);
                    ready.extend(queue.queued.pop_front());
                    queue.in_flight = true;
                } else {
                    wake_at(due);
                }
            }
        }
        for mut batch in expired {
            let last_error = batch.last_error.as_ref().map_or_else(
                || "none; it waited behind earlier batches".to_owned(),
                Error::to_string,
            );
            batch.resolve_failed(&Error::DeliveryTimeout {
                topic: batch.topic_partition.topic.clone(),
                partition: batch.topic_partition.partition,
                timeout_ms: self.settings.delivery_timeout.as_millis() as u64,
                last_error,
            });
            self.retire(batch.id);
        }
        self.queues.retain(|_, queue| !queue.is_idle());
        Drained { ready, next_wake }
    }

    /// A batch was stored: resolves its records and frees its partition.
    pub(crate) fn complete(&mut self, mut batch: ProducerBatch, base_offset: Option<i64>) {
        batch.resolve_stored(base_offset);
        self.release(&batch.topic_partition);
        self.retire(batch.id);
    }

    /// A batch failed for good: fails its records and frees its partition.
    pub(crate) fn fail(&mut self, mut batch: ProducerBatch, error: &Error) {
        batch.resolve_failed(error);
        self.release(&batch.topic_partition);
        self.retire(batch.id);
    }

    /// A batch will be tried again: it goes back to the front of its partition, ahead
    /// of every later batch, and its partition is free to send it at `retry_at`.
    pub(crate) fn requeue(&mut self, batch: ProducerBatch) {
        let queue = self
            .queues
            .entry(batch.topic_partition.clone())
            .or_default();
        queue.in_flight = false;
        queue.queued.push_front(batch);
    }

    /// Makes every existing batch ready now and returns the id the progress watch must
    /// reach for all of them to be complete.
    pub(crate) fn flush_target(&mut self) -> u64 {
        self.flush_below = self.next_batch_id;
        self.publish_progress();
        self.next_batch_id
    }

    /// Sends everything without lingering from now on.
    pub(crate) fn close(&mut self) {
        self.closing = true;
    }

    /// Whether every batch ever started has been completed or failed.
    pub(crate) fn is_empty(&self) -> bool {
        self.incomplete.is_empty()
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    fn release(&mut self, topic_partition: &TopicPartition) {
        if let Some(queue) = self.queues.get_mut(topic_partition) {
            queue.in_flight = false;
            if queue.is_idle() {
                self.queues.remove(topic_partition);
            }
        }
    }

    fn retire(&mut self, batch_id: u64) {
        self.incomplete.remove(&batch_id);
        self.publish_progress();
    }

    fn publish_progress(&self) {
        let lowest = self
            .incomplete
            .first()
            .copied()
            .unwrap_or(self.next_batch_id);
        self.progress.send_replace(lowest);
    }
}

/// Moves a queue's open batch, sealed, to the back of its queued batches.
fn seal_open(queue: &mut PartitionQueue) {
    if let Some(mut batch) = queue.open.take() {
        batch.seal();
        queue.queued.push_back(batch);
    }
}

#[cfg(test)]
mod tests {
    use fjord_protocol::RecordBatch;

    use super::*;

    const LINGER: Duration = Duration::from_millis(10);

    fn accumulator(batch_bytes_max: usize) -> (Accumulator, watch::Receiver<u64>) {
        Accumulator::new(AccumulatorSettings {
            batch_bytes_max,
            linger: LINGER,
            delivery_timeout: Duration::from_secs(60),
        })
    }

    fn record(value: &[u8]) -> RecordInput<'_> {
        RecordInput {
            key: None,
            value: Some(value),
            headers: &[],
            timestamp_ms: 1_000,
        }
    }

    fn partition(index: i32) -> TopicPartition {
        TopicPartition::new("t", index)
    }

    fn append(accumulator: &mut Accumulator, index: i32, value: &[u8], now: Instant) -> Appended {
        accumulator.append(
            partition(index),
            &record(value),
            Reservation::default(),
            now,
        )
    }

    /// Values of the records in a sealed batch, decoded with the protocol's view.
    fn values(batch: &ProducerBatch) -> Vec<Vec<u8>> {
        RecordBatch::new(batch.records().clone())
            .unwrap()
            .records()
            .map(|record| record.unwrap().value.unwrap().to_vec())
            .collect()
    }

    /// An open batch is held for its linger time and sent after it; the drain says
    /// when to look again.
    #[test]
    fn linger_holds_a_batch() {
        let (mut accumulator, _) = accumulator(1_000);
        let start = Instant::now();
        assert!(append(&mut accumulator, 0, b"a", start).wake_sender);
        assert!(!append(&mut accumulator, 0, b"b", start).wake_sender);
        let early = accumulator.drain(start + LINGER / 2);
        assert!(early.ready.is_empty());
        assert_eq!(early.next_wake, Some(start + LINGER));
        let due = accumulator.drain(start + LINGER);
        assert_eq!(due.ready.len(), 1);
        assert_eq!(values(&due.ready[0]), [b"a".to_vec(), b"b".to_vec()]);
    }

    /// A batch that reaches batch_bytes_max is ready at once, and a record that does
    /// not fit starts the next batch; a record larger than the limit travels alone.
    #[test]
    fn full_batches_are_ready_without_linger() {
        let (mut accumulator, _) = accumulator(200);
        let now = Instant::now();
        let value = [7u8; 60];
        for _ in 0..3 {
            append(&mut accumulator, 0, &value, now);
        }
        let drained = accumulator.drain(now);
        assert_eq!(drained.ready.len(), 1);
        let first = &drained.ready[0];
        assert!(first.size_bytes() <= 200, "{}", first.size_bytes());
        assert_eq!(first.record_count(), 2);
        accumulator.complete(drained.ready.into_iter().next().unwrap(), Some(0));
        let big = [1u8; 500];
        let appended = append(&mut accumulator, 0, &big, now);
        assert!(
            appended.wake_sender,
            "an oversized record seals its batch at once"
        );
        let drained = accumulator.drain(now);
        assert_eq!(
            drained.ready[0].record_count(),
            1,
            "the third 60-byte record"
        );
        accumulator.complete(drained.ready.into_iter().next().unwrap(), Some(2));
        let drained = accumulator.drain(now);
        assert_eq!(values(&drained.ready[0]), [big.to_vec()]);
    }

    /// Only one batch per partition is in flight; the next goes once it completes,
    /// while other partitions proceed independently.
    #[test]
    fn one_batch_in_flight_per_partition() {
        let (mut accumulator, _) = accumulator(100);
        let now = Instant::now();
        for value in [[1u8; 60], [2u8; 60], [3u8; 60]] {
            append(&mut accumulator, 0, &value, now);
        }
        append(&mut accumulator, 1, b"x", now);
        let later = now + LINGER;
        let first = accumulator.drain(later);
        assert_eq!(first.ready.len(), 2, "one batch of each partition");
        assert!(accumulator.drain(later).ready.is_empty());
        let mut batches = first.ready.into_iter();
        let partition_zero = batches.next().unwrap();
        assert_eq!(values(&partition_zero), [vec![1u8; 60]]);
        accumulator.complete(partition_zero, Some(0));
        let second = accumulator.drain(later);
        assert_eq!(values(&second.ready[0]), [vec![2u8; 60]]);
    }

    /// A retried batch goes back ahead of later batches of its partition and waits
    /// for its retry time, so the partition's order survives the retry.
    #[test]
    fn retries_keep_partition_order() {
        let (mut accumulator, _) = accumulator(100);
        let now = Instant::now();
        append(&mut accumulator, 0, &[1u8; 60], now);
        append(&mut accumulator, 0, &[2u8; 60], now);
        let mut failed = accumulator.drain(now).ready.pop().unwrap();
        assert_eq!(values(&failed), [vec![1u8; 60]]);
        failed.attempts += 1;
        failed.retry_at = Some(now + Duration::from_millis(100));
        accumulator.requeue(failed);
        let waiting = accumulator.drain(now + LINGER);
        assert!(
            waiting.ready.is_empty(),
            "the later batch must not overtake"
        );
        assert_eq!(waiting.next_wake, Some(now + Duration::from_millis(100)));
        let retried = accumulator.drain(now + Duration::from_millis(100));
        assert_eq!(values(&retried.ready[0]), [vec![1u8; 60]]);
        accumulator.complete(retried.ready.into_iter().next().unwrap(), Some(0));
        let next = accumulator.drain(now + Duration::from_millis(100));
        assert_eq!(values(&next.ready[0]), [vec![2u8; 60]]);
    }

    /// Offsets are base_offset + index; failures reach every record of the batch.
    #[tokio::test]
    async fn deliveries_resolve_with_offsets_or_errors() {
        let (mut accumulator, _) = accumulator(1_000);
        let now = Instant::now();
        let first = append(&mut accumulator, 3, b"a", now).delivery;
        let second = append(&mut accumulator, 3, b"b", now).delivery;
        let batch = accumulator.drain(now + LINGER).ready.pop().unwrap();
        accumulator.complete(batch, Some(100));
        assert_eq!(first.await.unwrap(), (3, 100));
        assert_eq!(second.await.unwrap(), (3, 101));

        let failing = append(&mut accumulator, 3, b"c", now).delivery;
        let batch = accumulator.drain(now + LINGER).ready.pop().unwrap();
        accumulator.fail(batch, &Error::UnknownTopic { topic: "t".into() });
        assert!(matches!(failing.await, Err(Error::UnknownTopic { .. })));
        assert!(accumulator.is_empty());
    }

    /// A flush makes lingering batches ready and its target is reached only when all
    /// batches that existed at the flush are complete, not batches started after it.
    #[test]
    fn flush_covers_existing_batches_only() {
        let (mut accumulator, progress) = accumulator(1_000);
        let now = Instant::now();
        append(&mut accumulator, 0, b"a", now);
        append(&mut accumulator, 1, b"b", now);
        let target = accumulator.flush_target();
        let ready = accumulator.drain(now).ready;
        assert_eq!(ready.len(), 2, "no linger once flushed");
        append(&mut accumulator, 2, b"later", now);
        for batch in ready {
            assert!(*progress.borrow() < target);
            accumulator.complete(batch, Some(0));
        }
        assert!(*progress.borrow() >= target);
        assert!(!accumulator.is_empty(), "the later batch is still pending");
    }

    /// A batch still queued at its delivery deadline fails with a timeout naming the
    /// last error instead of being sent.
    #[tokio::test]
    async fn expired_batches_fail() {
        let (mut accumulator, _) = accumulator(1_000);
        let now = Instant::now();
        let delivery = append(&mut accumulator, 0, b"a", now).delivery;
        let mut batch = accumulator.drain(now + LINGER).ready.pop().unwrap();
        batch.last_error = Some(Error::ConnectionClosed {
            address: "b:1".into(),
        });
        batch.retry_at = Some(now + Duration::from_secs(1));
        accumulator.requeue(batch);
        let drained = accumulator.drain(now + Duration::from_secs(61));
        assert!(drained.ready.is_empty());
        let error = delivery.await.unwrap_err();
        assert!(matches!(error, Error::DeliveryTimeout { .. }), "{error}");
        assert!(error.to_string().contains("b:1"), "{error}");
        assert!(accumulator.is_empty());
    }
}
