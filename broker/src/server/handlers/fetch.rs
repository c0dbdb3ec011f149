//! Fetch: reads stored batches as they are, up to the high watermark (consumers) or
//! the log end (followers), long-polling until `min_bytes` are available or `max_wait_ms`
//! passes. Waiting is driven by the logs' high-watermark notifications, never by polling.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::RecordBatches;
use fjord_protocol::messages::{
    CONSUMER_REPLICA_ID, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
};
use futures::future::select_all;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use super::RequestContext;
use crate::server::handles::Handles;
use crate::server::order::Turn;
use crate::server::response::ResponseFrame;

/// One read of every requested partition, with the response memory its records hold.
struct Read {
    response: FetchResponse,
    /// Record bytes in the response.
    bytes: usize,
    /// Whether any partition failed.
    errors: bool,
    /// High-watermark receivers subscribed before the reads, so that no append between
    /// read and wait can be missed.
    changes: Vec<watch::Receiver<i64>>,
    memory: OwnedSemaphorePermit,
}

/// Answers a fetch. It waits for its turn first: a connection reads one fetch response
/// at a time, the next once the previous one has been written, so a client that does
/// not read holds at most one response. A long-poll ends early, with what there is,
/// when the broker begins to shut down.
pub async fn handle(
    handles: &Handles,
    context: &RequestContext,
    request: FetchRequest,
    mut turn: Turn,
) -> ResponseFrame {
    turn.wait().await;
    let mut shutdown = context.shutdown.clone();
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms as u64);
    let read = loop {
        let mut read = read_once(handles, &request).await;
        let satisfied =
            read.bytes >= request.min_bytes as usize || read.errors || read.changes.is_empty();
        if satisfied || Instant::now() >= deadline || *shutdown.borrow() {
            break read;
        }
        // Hold no response memory while parked.
        let mut changes = std::mem::take(&mut read.changes);
        drop(read);
        let any_change = select_all(
            changes
                .iter_mut()
                .map(|receiver| Box::pin(receiver.changed())),
        );
        let parked = Parked::new(handles);
        let woken = tokio::select! {
            changed = tokio::time::timeout_at(deadline, any_change) => changed.is_ok(),
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        drop(parked);
        if !woken {
            // Deadline or shutdown: answer with whatever is there now.
            break read_once(handles, &request).await;
        }
    };
    let mut frame = respond(context.correlation_id, &read.response, read.bytes);
    frame.held.memory = Some(read.memory);
    frame.held.turn = Some(turn);
    frame
}

/// Reads every requested partition once, holding response memory for the records:
/// the request's budget is reserved first (waiting while other responses hold the
/// broker's `response_memory_bytes`), and what the read did not use is released. A
/// read returns at least one batch, which may be larger than a small budget; then the
/// reservation is given up, the batch's size reserved and the read repeated, so no
/// fetch waits for memory while holding some.
async fn read_once(handles: &Handles, request: &FetchRequest) -> Read {
    let capacity = handles.settings.response_memory_bytes;
    // The client's budget, capped so that a response always fits in a frame.
    let budget = (request.max_bytes as usize).min(FETCH_RESPONSE_RECORDS_BYTES_MAX);
    let mut reservation = budget.min(capacity);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut memory = reserve(handles, reservation).await;
        let (response, bytes, errors, changes) =
            read_partitions(handles, request, budget.min(reservation)).await;
        if bytes > reservation && attempts < 2 {
            reservation = bytes.min(capacity);
            continue;
        }
        if let Some(unused) = memory.num_permits().checked_sub(bytes).filter(|n| *n > 0) {
            drop(memory.split(unused));
        }
        return Read {
            response,
            bytes,
            errors,
            changes,
            memory,
        };
    }
}

/// Reserves `bytes` of the broker's response memory.
async fn reserve(handles: &Handles, bytes: usize) -> OwnedSemaphorePermit {
    let bytes = u32::try_from(bytes).expect("a fetch reserves at most a frame");
    handles
        .response_memory
        .clone()
        .acquire_many_owned(bytes)
        .await
        .expect("the response memory semaphore is never closed")
}

/// Counts a fetch in [`Handles::fetches_waiting`] while it exists.
struct Parked<'a>(&'a Handles);

impl<'a> Parked<'a> {
    fn new(handles: &'a Handles) -> Self {
        handles.fetches_waiting.fetch_add(1, Ordering::AcqRel);
        Self(handles)
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

/// Reads every requested partition once, with `budget` record bytes in all. Returns the
/// response, the record bytes in it, whether any partition failed, and high-watermark
/// receivers subscribed before the reads.
async fn read_partitions(
    handles: &Handles,
    request: &FetchRequest,
    mut budget: usize,
) -> (FetchResponse, usize, bool, Vec<watch::Receiver<i64>>) {
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
            // Followers fetch on the internal listener; here a replica id would read
            // past the high watermark, records that are not committed.
            let leader_log = if request.replica_id != CONSUMER_REPLICA_ID {
                Err(ErrorCode::InvalidRequest)
            } else {
                handles.partitions.leader_log(&topic.name, fetch.partition)
            };
            match leader_log {
                Err(code) => response.error_code = code,
                Ok((_, partition, log)) => {
                    if let Some(code) = super::leader_epoch_error(
                        fetch.current_leader_epoch,
                        partition.leader_epoch,
                    ) {
                        response.error_code = code;
                    } else {
                        changes.push(log.watch_high_watermark());
                        let limit = log.high_watermark();
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
