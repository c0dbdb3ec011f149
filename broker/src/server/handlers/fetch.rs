//! Fetch: reads stored batches as they are, up to the high watermark (consumers) or
//! the log end (followers), long-polling until `min_bytes` are available or `max_wait_ms`
//! passes. Waiting is driven by the logs' high-watermark notifications, never by polling.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::RecordBatches;
use fjord_protocol::messages::{
    CONSUMER_REPLICA_ID, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
};
use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::server::response::ResponseFrame;

pub async fn handle(
    broker: &Arc<Broker>,
    correlation_id: i32,
    request: FetchRequest,
) -> ResponseFrame {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms as u64);
    loop {
        let (response, bytes, errors, mut changes) = read_once(broker, &request).await;
        let satisfied = bytes >= request.min_bytes as usize || errors || changes.is_empty();
        if satisfied || Instant::now() >= deadline {
            return respond(correlation_id, &response, bytes);
        }
        let any_change = select_all(
            changes
                .iter_mut()
                .map(|receiver| Box::pin(receiver.changed())),
        );
        let parked = Parked::new(broker);
        let woken = tokio::time::timeout_at(deadline, any_change).await;
        drop(parked);
        if woken.is_err() {
            // Deadline: answer with whatever is there now.
            let (response, bytes, _, _) = read_once(broker, &request).await;
            return respond(correlation_id, &response, bytes);
        }
    }
}

/// Counts a fetch in [`Broker::fetches_waiting`] while it exists.
struct Parked<'a>(&'a Broker);

impl<'a> Parked<'a> {
    fn new(broker: &'a Broker) -> Self {
        broker.fetches_waiting.fetch_add(1, Ordering::AcqRel);
        Self(broker)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetches_waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts what the response carries and encodes it.
fn respond(correlation_id: i32, response: &FetchResponse, bytes: usize) -> ResponseFrame {
    metrics::counter!("fjord_fetch_bytes_total").increment(bytes as u64);
    metrics::counter!("fjord_fetch_records_total").increment(record_count(response));
    ResponseFrame::fetch(correlation_id, response)
}

/// Records in the response's batches, read from each batch header (no record is
/// decoded). Batches are whole, so records before a mid-batch fetch offset count too.
fn record_count(response: &FetchResponse) -> u64 {
    response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .flat_map(|partition| RecordBatches::new(partition.records.clone()))
        .map_while(Result::ok)
        .map(|batch| u64::try_from(batch.record_count()).unwrap_or(0))
        .sum()
}

/// Most record bytes in one fetch response, whatever the request asks: half a frame, so
/// that the headers of even the largest request fit beside them. A single batch can
/// exceed it only up to `max_request_bytes`, which configuration bounds by the same half.
pub const FETCH_RESPONSE_RECORDS_BYTES_MAX: usize = fjord_protocol::limits::FRAME_BYTES_MAX / 2;

/// Reads every requested partition once. Returns the response, the record bytes in it,
/// whether any partition failed, and high-watermark receivers subscribed before the
/// reads (so no append between read and wait can be missed).
async fn read_once(
    broker: &Arc<Broker>,
    request: &FetchRequest,
) -> (FetchResponse, usize, bool, Vec<watch::Receiver<i64>>) {
    // The client's budget, capped so that a response always fits in a frame.
    let mut budget = (request.max_bytes as usize).min(FETCH_RESPONSE_RECORDS_BYTES_MAX);
    let mut total = 0usize;
    let mut errors = false;
    let mut changes = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for fetch in &topic.partitions {
            let mut response = FetchPartitionResponse {
                partition: fetch.partition,
                error_code: ErrorCode::None,
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            };
            match broker.leader_log(&topic.name, fetch.partition, false).await {
                Err(code) => response.error_code = code,
                Ok((_, partition, log)) => {
                    let epoch = fetch.current_leader_epoch;
                    if epoch >= 0 && epoch < partition.leader_epoch {
                        response.error_code = ErrorCode::FencedLeaderEpoch;
                    } else if epoch > partition.leader_epoch {
                        response.error_code = ErrorCode::UnknownLeaderEpoch;
                    } else {
                        changes.push(log.watch_high_watermark());
                        let limit = if request.replica_id == CONSUMER_REPLICA_ID {
                            log.high_watermark()
                        } else {
                            i64::MAX
                        };
                        let max_bytes = (fetch.partition_max_bytes as usize).min(budget);
                        let read = if max_bytes == 0 && total > 0 {
                            // The total budget is spent; report offsets only.
                            Ok(crate::storage::ReadResult {
                                records: Bytes::new(),
                                log_start_offset: log.log_start_offset(),
                                log_end_offset: log.log_end_offset(),
                                high_watermark: log.high_watermark(),
                            })
                        } else {
                            log.read(fetch.fetch_offset, max_bytes as u64, limit)
                        };
                        match read {
                            Ok(mut read) => {
                                response.high_watermark = read.high_watermark;
                                response.log_start_offset = read.log_start_offset;
                                // A read returns at least one batch; past the budget that is
                                // only right for the first data of the response, otherwise
                                // the batch waits for the next fetch.
                                if total > 0 && read.records.len() > max_bytes {
                                    read.records = Bytes::new();
                                }
                                total += read.records.len();
                                budget = budget.saturating_sub(read.records.len());
                                response.records = read.records;
                            }
                            Err(error) => {
                                response.error_code = error.error_code();
                                response.high_watermark = log.high_watermark();
                                response.log_start_offset = log.log_start_offset();
                            }
                        }
                    }
                }
            }
            errors |= !response.error_code.is_ok();
            partitions.push(response);
        }
        topics.push(FetchTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    (FetchResponse { topics }, total, errors, changes)
}
