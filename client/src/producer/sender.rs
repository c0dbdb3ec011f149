//! The producer's background task: takes ready batches from the accumulator, sends
//! them to their partition leaders, and completes, retries or fails them.
//!
//! ```text
//!  loop:  drain ready batches ─▶ group by leader address ─▶ one produce request per
//!         (≤ request_bytes_max) chunk, each in its own task ─▶ response per partition:
//!           NONE            → records resolve to base_offset + index
//!           retriable error → refresh metadata if leadership moved, back to the front
//!                             of the partition after backoff (until delivery_timeout_ms)
//!           other error     → records fail
//!         wait for a wake-up (new batch, completed request, flush, close) or the next
//!         linger / retry deadline
//! ```
//!
//! Retries are at-least-once: a request that timed out may have been stored, and is
//! sent again. Idempotent producing (producer ids and sequence numbers) will remove
//! such duplicates once the broker supports it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::ApiKey;
use fjord_protocol::messages::{
    Acks, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
};
use tokio::time::Instant;

use super::Shared;
use super::accumulator::ProducerBatch;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// How far ahead the sender sleeps when nothing is scheduled; a wake-up comes sooner.
const IDLE_WAIT: Duration = Duration::from_secs(3_600);

/// Runs until the producer is closed and every batch is complete.
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let now = Instant::now();
        let (drained, done) = {
            let mut state = shared.lock();
            let drained = state.accumulator.drain(now);
            for batch in &drained.ready {
                state.partitioner.on_batch_sent(&batch.topic_partition);
            }
            let done = state.accumulator.is_closing() && state.accumulator.is_empty();
            (drained, done)
        };
        if done {
            tracing::debug!("producer closed and drained");
            return;
        }
        dispatch(&shared, drained.ready).await;
        let wake_at = drained.next_wake.unwrap_or(now + IDLE_WAIT);
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// Groups ready batches by leader and starts one request per group chunk.
async fn dispatch(shared: &Arc<Shared>, ready: Vec<ProducerBatch>) {
    if ready.is_empty() {
        return;
    }
    let snapshot = shared.client.snapshot();
    let mut by_leader: BTreeMap<String, Vec<ProducerBatch>> = BTreeMap::new();
    for mut batch in ready {
        match snapshot.leader(&batch.topic_partition) {
            Ok(leader) => {
                batch.leader_epoch = leader.leader_epoch;
                by_leader.entry(leader.address).or_default().push(batch);
            }
            Err(failure) => {
                // The leader may be unknown only for now (an election, a restart, a
                // topic the broker is still loading): retry until the deadline.
                let error = failure.into_error(&batch.topic_partition);
                let shared = shared.clone();
                tokio::spawn(async move { retry_or_fail(&shared, batch, error, true).await });
            }
        }
    }
    for (address, batches) in by_leader {
        for chunk in chunk_by_size(batches, shared.config.request_bytes_max) {
            tokio::spawn(produce(shared.clone(), address.clone(), chunk));
        }
    }
}

/// Splits batches into groups of at most `bytes_max` record bytes; every group holds
/// at least one batch, so an oversized batch still goes, alone.
fn chunk_by_size(batches: Vec<ProducerBatch>, bytes_max: usize) -> Vec<Vec<ProducerBatch>> {
    let mut chunks: Vec<Vec<ProducerBatch>> = Vec::new();
    let mut chunk_bytes = 0;
    for batch in batches {
        let size = batch.size_bytes();
        match chunks.last_mut() {
            Some(chunk) if chunk_bytes + size <= bytes_max => {
                chunk_bytes += size;
                chunk.push(batch);
            }
            _ => {
                chunk_bytes = size;
                chunks.push(vec![batch]);
            }
        }
    }
    chunks
}

fn build_request(shared: &Shared, batches: &[ProducerBatch]) -> ProduceRequest {
    let mut topics: BTreeMap<&str, Vec<ProducePartition>> = BTreeMap::new();
    for batch in batches {
        topics
            .entry(&batch.topic_partition.topic)
            .or_default()
            .push(ProducePartition {
                partition: batch.topic_partition.partition,
                current_leader_epoch: batch.leader_epoch,
                records: batch.records().clone(),
            });
    }
    ProduceRequest {
        acks: shared.config.acks.code(),
        timeout_ms: shared.config.produce_timeout_ms as i32,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| ProduceTopic {
                name: name.to_owned(),
                partitions,
            })
            .collect(),
    }
}

/// A batch that failed this many times in a row makes its partition "failing": logged
/// as a warning, then again at most every [`FAILING_WARNING_INTERVAL`] while it lasts.
const ATTEMPTS_BEFORE_WARNING: u32 = 3;
const FAILING_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Sends one produce request and settles each of its batches.
async fn produce(shared: Arc<Shared>, address: String, batches: Vec<ProducerBatch>) {
    let request = build_request(&shared, &batches);
    // The connection's deadline covers the broker's own wait for replicas.
    let timeout = shared.client.config().request_timeout()
        + Duration::from_millis(shared.config.produce_timeout_ms);
    let outcome: Result<Option<ProduceResponse>> = async {
        let connection = shared.client.connection(&address).await?;
        if shared.config.acks == Acks::None {
            connection
                .send_without_response(ApiKey::Produce, &request, timeout)
                .await?;
            Ok(None)
        } else {
            Ok(Some(
                connection
                    .request(ApiKey::Produce, &request, timeout)
                    .await?,
            ))
        }
    }
    .await;
    match outcome {
        Err(error) => {
            for batch in batches {
                retry_or_fail(&shared, batch, error.clone(), error.is_retriable()).await;
            }
        }
        Ok(None) => {
            let mut state = shared.lock();
            for batch in batches {
                state.accumulator.complete(batch, None);
            }
        }
        Ok(Some(response)) => settle(&shared, &address, batches, &response).await,
    }
    shared.wake.notify_one();
}

/// Matches each batch with its partition's result in `response`.
async fn settle(
    shared: &Arc<Shared>,
    address: &str,
    batches: Vec<ProducerBatch>,
    response: &ProduceResponse,
) {
    let results: HashMap<(&str, i32), _> = response
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| ((topic.name.as_str(), partition.partition), partition))
        })
        .collect();
    for batch in batches {
        let key = (
            batch.topic_partition.topic.as_str(),
            batch.topic_partition.partition,
        );
        let Some(result) = results.get(&key).copied() else {
            let error = Error::UnexpectedResponse {
                address: address.to_owned(),
                reason: format!("no result for partition {}", batch.topic_partition),
            };
            shared.lock().accumulator.fail(batch, &error);
            continue;
        };
        if result.error_code.is_ok() {
            let mut state = shared.lock();
            if state.failing.remove(&batch.topic_partition).is_some() {
                tracing::info!(partition = %batch.topic_partition, "produce succeeds again");
            }
            state.accumulator.complete(batch, Some(result.base_offset));
            continue;
        }
        let error = Error::Broker {
            context: format!("produce to {}", batch.topic_partition),
            code: result.error_code,
            message: result.error_message.clone(),
        };
        let retriable = error.is_retriable();
        retry_or_fail(shared, batch, error, retriable).await;
    }
}

/// Says so, as a warning, when a partition's batches keep failing (the application
/// sees nothing until the delivery timeout), once per partition per
/// [`FAILING_WARNING_INTERVAL`].
fn warn_if_failing(shared: &Shared, batch: &ProducerBatch, error: &Error) {
    let warn = should_warn(
        &mut shared.lock().failing,
        &batch.topic_partition,
        batch.attempts,
        Instant::now(),
    );
    if !warn {
        return;
    }
    tracing::warn!(
        partition = %batch.topic_partition,
        attempts = batch.attempts,
        %error,
        "produce keeps failing; retrying until the delivery timeout"
    );
}

/// Whether a batch of `partition` failing for the `attempts`th time is worth a
/// warning at `now`; records the warning in `failing`.
fn should_warn(
    failing: &mut HashMap<TopicPartition, Instant>,
    partition: &TopicPartition,
    attempts: u32,
    now: Instant,
) -> bool {
    if attempts < ATTEMPTS_BEFORE_WARNING {
        return false;
    }
    let last = failing.get(partition).copied();
    if last.is_some_and(|last| now - last < FAILING_WARNING_INTERVAL) {
        return false;
    }
    failing.insert(partition.clone(), now);
    true
}

/// Puts a failed batch back for another attempt when the error allows it and the
/// delivery deadline leaves room for the backoff; fails it otherwise.
async fn retry_or_fail(shared: &Shared, mut batch: ProducerBatch, error: Error, retriable: bool) {
    batch.attempts = batch.attempts.saturating_add(1);
    let delay = shared.retry_backoff.delay(batch.attempts);
    let retry_at = Instant::now() + delay;
    if !retriable || retry_at >= batch.deadline {
        let error = if retriable {
            Error::DeliveryTimeout {
                topic: batch.topic_partition.topic.clone(),
                partition: batch.topic_partition.partition,
                timeout_ms: shared.config.delivery_timeout_ms,
                last_error: error.to_string(),
            }
        } else {
            error
        };
        tracing::debug!(partition = %batch.topic_partition, %error, "batch failed");
        shared.lock().accumulator.fail(batch, &error);
        // The loop may be waiting for this last batch to end a close.
        shared.wake.notify_one();
        return;
    }
    tracing::debug!(
        partition = %batch.topic_partition,
        attempt = batch.attempts,
        %error,
        ?delay,
        "retrying batch"
    );
    warn_if_failing(shared, &batch, &error);
    if error.invalidates_metadata() {
        shared
            .client
            .refresh_metadata_quietly(vec![batch.topic_partition.topic.clone()])
            .await;
    }
    batch.retry_at = Some(retry_at);
    batch.last_error = Some(error);
    shared.lock().accumulator.requeue(batch);
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition is warned about from its third failed attempt, then at most once per
    /// interval, each partition on its own; success (removing it) starts it over.
    #[test]
    fn failing_partitions_are_warned_about_once_per_interval() {
        let mut failing = HashMap::new();
        let orders = TopicPartition::new("orders", 0);
        let other = TopicPartition::new("orders", 1);
        let start = Instant::now();
        assert!(!should_warn(&mut failing, &orders, 1, start));
        assert!(!should_warn(&mut failing, &orders, 2, start));
        assert!(should_warn(&mut failing, &orders, 3, start));
        assert!(!should_warn(
            &mut failing,
            &orders,
            4,
            start + Duration::from_secs(1)
        ));
        assert!(should_warn(
            &mut failing,
            &other,
            3,
            start + Duration::from_secs(1)
        ));
        let later = start + FAILING_WARNING_INTERVAL;
        assert!(should_warn(&mut failing, &orders, 9, later));
        failing.remove(&orders);
        assert!(should_warn(&mut failing, &orders, 3, later));
    }
}
