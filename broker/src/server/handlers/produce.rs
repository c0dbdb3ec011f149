//! Produce: validate every batch, append through the partition's leader, then wait
//! for what `acks` asks: nothing (acks=none), the leader's durability under the
//! topic's policy (acks=leader), or the high watermark passing the records, which
//! means every in-sync replica has them durable (acks=all; with the leader alone in
//! sync that is the same as acks=leader).
//!
//! The batches are validated and stamped as received: no record is decoded into an
//! allocation and no batch is re-encoded (a log-append-time topic's batches are copied
//! once to stamp the time, see [`super::produce_rules`]). The batches of one partition
//! are all-or-nothing: one refused batch refuses the partition's whole `records`.

use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::batch::{RecordBatches, TimestampType};
use fjord_protocol::messages::{
    Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopicResponse,
};
use fjord_protocol::{ErrorCode, RecordBatch};

use super::produce_rules;
use crate::group::OFFSETS_TOPIC;
use crate::replication::{CommitError, PartitionLeader};
use crate::server::handles::Handles;
use crate::server::order::Turn;
use crate::server::response::ResponseFrame;
use crate::storage::{AppendInfo, Clock, SystemClock};

/// A partition's outcome before durability is known.
struct Appended {
    leader: Arc<PartitionLeader>,
    info: AppendInfo,
    /// The broker's append time for a log-append-time topic; -1 for create time.
    log_append_time_ms: i64,
    /// The topic's min.insync.replicas, which acks=all holds to.
    min_insync_replicas: usize,
}

/// A partition index and its append outcome (a ready error response on failure).
type PartitionOutcome = (i32, Result<Appended, ProducePartitionResponse>);

fn failure(
    partition: i32,
    error_code: ErrorCode,
    message: Option<String>,
) -> ProducePartitionResponse {
    ProducePartitionResponse {
        partition,
        error_code,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: message,
    }
}

pub async fn handle(
    handles: &Handles,
    correlation_id: i32,
    request: ProduceRequest,
    mut turn: Turn,
) -> Option<ResponseFrame> {
    let Some(acks) = Acks::from_code(request.acks) else {
        let topics = request
            .topics
            .into_iter()
            .map(|topic| ProduceTopicResponse {
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| failure(p.partition, ErrorCode::InvalidRequiredAcks, None))
                    .collect(),
                name: topic.name,
            })
            .collect();
        return Some(ResponseFrame::message(
            correlation_id,
            &ProduceResponse { topics },
        ));
    };
    // Appends keep the order in which the connection sent its produce requests
    // (acks=none ones included); waiting for durability does not.
    turn.wait().await;
    // Append everything first, so that one fsync can cover all partitions' appends.
    let mut results: Vec<(String, Vec<PartitionOutcome>)> = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let outcome = append(handles, &topic.name, &partition, acks).await;
            partitions.push((partition.partition, outcome));
        }
        results.push((topic.name, partitions));
    }
    drop(turn);
    let timeout = Duration::from_millis(request.timeout_ms as u64);
    let mut topics = Vec::with_capacity(results.len());
    for (name, partitions) in results {
        let mut responses = Vec::with_capacity(partitions.len());
        for (partition, outcome) in partitions {
            let response = match outcome {
                Err(response) => response,
                Ok(appended) if acks == Acks::None => {
                    // Nobody waits for the answer, but the data must still become
                    // durable and visible.
                    tokio::spawn(async move { commit(&appended).await });
                    continue;
                }
                Ok(appended) => match wait(&appended, acks, timeout).await {
                    Ok(()) => ProducePartitionResponse {
                        partition,
                        error_code: ErrorCode::None,
                        base_offset: appended.info.base_offset,
                        log_append_time_ms: appended.log_append_time_ms,
                        log_start_offset: appended.leader.log().log_start_offset(),
                        error_message: None,
                    },
                    Err((code, message)) => failure(partition, code, Some(message)),
                },
            };
            if !response.error_code.is_ok() {
                metrics::counter!("fjord_produce_partition_errors_total", "code" => response.error_code.name()).increment(1);
            }
            responses.push(response);
        }
        topics.push(ProduceTopicResponse {
            name,
            partitions: responses,
        });
    }
    (acks != Acks::None)
        .then(|| ResponseFrame::message(correlation_id, &ProduceResponse { topics }))
}

/// Waits for durability under the log's policy on the leader, which lets the high
/// watermark cover the records as far as the in-sync replicas have them.
async fn commit(appended: &Appended) -> Result<(), crate::storage::StorageError> {
    appended.leader.commit(&appended.info).await
}

/// Waits for what `acks` asks: the leader's durability (acks=leader), or the high
/// watermark passing the records with enough in-sync replicas (acks=all).
async fn wait(
    appended: &Appended,
    acks: Acks,
    timeout: Duration,
) -> Result<(), (ErrorCode, String)> {
    if acks != Acks::All {
        return match tokio::time::timeout(timeout, commit(appended)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err((error.error_code(), error.to_string())),
            Err(_) => Err((
                ErrorCode::RequestTimedOut,
                "not durable within the request timeout".into(),
            )),
        };
    }
    let committed = appended
        .leader
        .commit_replicated(&appended.info, appended.min_insync_replicas, timeout)
        .await;
    committed.map_err(|error| {
        let code = match &error {
            CommitError::Storage(error) => error.error_code(),
            CommitError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend
            }
            CommitError::NotLeader => ErrorCode::NotLeaderOrFollower,
            CommitError::TimedOut(_) => ErrorCode::RequestTimedOut,
        };
        (code, error.to_string())
    })
}

async fn append(
    handles: &Handles,
    topic: &str,
    request: &ProducePartition,
    acks: Acks,
) -> Result<Appended, ProducePartitionResponse> {
    let partition = request.partition;
    let records = request.records.clone();
    let fail = |code: ErrorCode, message: String| failure(partition, code, Some(message));
    let unavailable = |code: ErrorCode| fail(code, format!("{topic}-{partition}: {}", code.name()));
    handles
        .admin
        .topic_or_auto_create(topic)
        .await
        .map_err(unavailable)?;
    let (topic_image, partition_image, leader) = handles
        .partitions
        .leader(topic, partition)
        .map_err(unavailable)?;
    if let Some(code) =
        super::leader_epoch_error(request.current_leader_epoch, partition_image.leader_epoch)
    {
        return Err(fail(
            code,
            format!(
                "{topic}-{partition} is at leader epoch {} here, the request knows {}",
                partition_image.leader_epoch, request.current_leader_epoch
            ),
        ));
    }
    if topic_image.name == OFFSETS_TOPIC {
        return Err(fail(
            ErrorCode::InvalidTopic,
            format!("{topic} is internal: only the group coordinator writes to it"),
        ));
    }
    let config = handles.partitions.topic_config(&topic_image);
    let min_insync_replicas = config.min_insync_for(partition_image.replicas.len());
    if acks == Acks::All && partition_image.isr.len() < min_insync_replicas {
        return Err(fail(
            ErrorCode::NotEnoughReplicas,
            format!(
                "{} in-sync replicas {:?}, acks=all needs {min_insync_replicas} (min.insync.replicas)",
                partition_image.isr.len(),
                partition_image.isr,
            ),
        ));
    }
    if records.is_empty() {
        return Err(fail(
            ErrorCode::CorruptMessage,
            "records is empty: a record batch is at least 61 bytes".into(),
        ));
    }
    let now_ms = SystemClock.now_ms();
    let mut batches: Vec<RecordBatch> = Vec::with_capacity(1);
    let mut record_count = 0u64;
    for batch in RecordBatches::new(records) {
        let batch = batch.map_err(|error| fail(error.error_code(), error.to_string()))?;
        if batch.size_bytes() > config.max_message_bytes as usize {
            return Err(fail(
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes ({})",
                    batch.size_bytes(),
                    config.max_message_bytes
                ),
            ));
        }
        let bounds = batch
            .validate_records()
            .map_err(|error| fail(error.error_code(), error.to_string()))?;
        let batch = produce_rules::admit(batch, bounds, &config, now_ms)
            .map_err(|(code, message)| fail(code, message))?;
        record_count += batch.record_count() as u64;
        batches.push(batch);
    }
    let info = leader
        .append(&batches)
        .map_err(|error| fail(error.error_code(), error.to_string()))?;
    metrics::counter!("fjord_produce_bytes_total").increment(info.bytes);
    metrics::counter!("fjord_produce_records_total").increment(record_count);
    let log_append_time_ms = match config.timestamp_type {
        TimestampType::LogAppendTime => now_ms,
        TimestampType::CreateTime => -1,
    };
    Ok(Appended {
        leader,
        info,
        log_append_time_ms,
        min_insync_replicas,
    })
}
