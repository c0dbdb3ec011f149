//! The producer: sends records to partition leaders in batches.
//!
//! - [`record`] — [`ProducerRecord`], what the application sends.
//! - [`partitioner`] — explicit, key-hash (murmur2) and sticky
//!   partition choice.
//! - `buffer`: the `buffer_bytes_max` bound and the back-pressure of `send`.
//! - `accumulator`: per-partition batches under `linger_ms` and `batch_bytes_max`,
//!   one batch in flight per partition, retries in order (pure state, unit-tested).
//! - `sender`: the background task that sends ready batches and settles them.
//! - [`delivery`] — [`DeliveryFuture`], how the application learns each record's offset.
//! - [`config`] — [`ProducerConfig`].

pub(crate) mod accumulator;
pub(crate) mod buffer;
pub mod config;
pub mod delivery;
pub mod partitioner;
pub mod record;
mod sender;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fjord_protocol::batch::{HeaderInput, RecordInput};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::accumulator::{Accumulator, AccumulatorSettings};
use self::buffer::BufferLimit;
use self::config::ProducerConfig;
use self::delivery::DeliveryFuture;
use self::partitioner::Partitioner;
use self::record::ProducerRecord;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// Sends records to a Fjord cluster.
///
/// `send` puts a record into its partition's batch and returns at once with a
/// [`DeliveryFuture`]; a background task sends batches when they are full or have
/// waited `linger_ms`. When `buffer_bytes_max` bytes of records are waiting, `send`
/// itself waits. Records of one partition are stored in the order they were sent,
/// retries included.
///
/// ```no_run
/// use fjord_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
///
/// # async fn example() -> fjord_client::Result<()> {
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
/// let producer = Producer::new(&client, ProducerConfig::default())?;
/// let delivery = producer
///     .send(ProducerRecord::new("orders", "created").with_key("order-42"))
///     .await?;
/// let (partition, offset) = delivery.await?;
/// println!("stored at {partition}/{offset}");
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Producer {
    shared: Arc<Shared>,
    sender_task: Mutex<Option<JoinHandle<()>>>,
}

/// State shared by the producer handle, the sender task and its request tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    client: Client,
    config: ProducerConfig,
    retry_backoff: Backoff,
    state: Mutex<State>,
    /// Wakes the sender task: a batch is ready, a request finished, flush or close.
    wake: Notify,
    buffer: BufferLimit,
    /// The lowest incomplete batch id (see the accumulator's flush rule).
    progress: watch::Receiver<u64>,
    closed: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct State {
    accumulator: Accumulator,
    partitioner: Partitioner,
    /// Partitions whose batches keep failing, and when that was last logged.
    failing: std::collections::HashMap<TopicPartition, Instant>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while this lock is held; recovering from poison keeps the
        // producer usable if that ever changes.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Producer {
    /// Starts a producer on `client`'s connections. Must be called inside a tokio
    /// runtime: it spawns the sender task.
    pub fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let (accumulator, progress) = Accumulator::new(AccumulatorSettings {
            batch_bytes_max: config.batch_bytes_max,
            linger: Duration::from_millis(config.linger_ms),
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
        });
        // Only where keyless records start their round-robin depends on this, so the
        // clock is random enough.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let shared = Arc::new(Shared {
            client: client.clone(),
            retry_backoff: Backoff::new(config.retry_backoff_ms, config.retry_backoff_max_ms),
            buffer: BufferLimit::new(config.buffer_bytes_max),
            config,
            state: Mutex::new(State {
                accumulator,
                partitioner: Partitioner::new(seed),
                failing: Default::default(),
            }),
            wake: Notify::new(),
            progress,
            closed: AtomicBool::new(false),
        });
        let sender_task = tokio::spawn(sender::run(shared.clone()));
        Ok(Producer {
            shared,
            sender_task: Mutex::new(Some(sender_task)),
        })
    }

    /// Adds a record to its partition's batch and returns a future of its
    /// `(partition, offset)`.
    ///
    /// Waits while the producer's buffer is full (back-pressure). Fails at once when
    /// the topic or the explicit partition does not exist, the record is larger than
    /// `record_bytes_max` or `buffer_bytes_max`, or the producer is closed.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::ProducerClosed);
        }
        let size_bytes = record.size_bytes_max();
        let limit_bytes = self
            .shared
            .config
            .record_bytes_max
            .min(self.shared.config.buffer_bytes_max);
        if size_bytes > limit_bytes {
            return Err(Error::RecordTooLarge {
                size_bytes,
                limit_bytes,
            });
        }
        let partition_count = self.shared.client.partition_count(&record.topic).await?;
        let partition = match record.partition {
            Some(partition) if partition >= 0 && (partition as usize) < partition_count => {
                partition
            }
            Some(partition) => {
                return Err(Error::UnknownPartition {
                    topic: record.topic,
                    partition,
                });
            }
            None => self.shared.lock().partitioner.partition(
                &record.topic,
                record.key.as_deref(),
                partition_count,
            ),
        };
        let reservation = self.shared.buffer.reserve(size_bytes).await;
        let headers: Vec<HeaderInput<'_>> = record
            .headers
            .iter()
            .map(|header| HeaderInput {
                key: &header.key,
                value: header.value.as_deref(),
            })
            .collect();
        let input = RecordInput {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            timestamp_ms: record.timestamp_ms.unwrap_or_else(now_ms),
        };
        let appended = {
            let mut state = self.shared.lock();
            // Checked again under the lock: close() may have started while this call
            // waited for buffer space, and nothing may join after its final flush.
            if state.accumulator.is_closing() {
                return Err(Error::ProducerClosed);
            }
            state.accumulator.append(
                TopicPartition::new(record.topic.clone(), partition),
                &input,
                reservation,
                Instant::now(),
            )
        };
        if appended.wake_sender {
            self.shared.wake.notify_one();
        }
        Ok(appended.delivery)
    }

    /// Sends every buffered record now and waits until each has been acknowledged or
    /// has failed. Failures are reported through the records' [`DeliveryFuture`]s, not
    /// here; records sent while flushing are not waited for.
    pub async fn flush(&self) -> Result<()> {
        let target = self.shared.lock().accumulator.flush_target();
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.clone();
        progress
            .wait_for(|lowest| *lowest >= target)
            .await
            .map_err(|_closed| Error::ProducerClosed)?;
        Ok(())
    }

    /// Refuses new records, delivers everything buffered (as [`Producer::flush`]) and
    /// stops the sender task. Calling it again does nothing.
    pub async fn close(&self) -> Result<()> {
        self.begin_close();
        self.flush().await?;
        let task = self
            .sender_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            // The task only ends by returning; a join error means it panicked or its
            // runtime is shutting down, and either way it can deliver nothing more.
            tracing::warn!(%error, "producer sender task ended abnormally");
            return Err(Error::ProducerClosed);
        }
        Ok(())
    }

    /// Bytes of records buffered and not yet acknowledged; never above
    /// `buffer_bytes_max`.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.buffer.used_bytes()
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    fn begin_close(&self) {
        let mut state = self.shared.lock();
        self.shared.closed.store(true, Ordering::Release);
        state.accumulator.close();
        drop(state);
        self.shared.wake.notify_one();
    }
}

impl Drop for Producer {
    /// Dropping without `close` still delivers what is buffered, in the background.
    fn drop(&mut self) {
        self.begin_close();
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
