//! ListOffsets: earliest (log start), latest (high watermark for consumers, log end for
//! replicas) and the first offset at or after a timestamp. The client's leader epoch is
//! checked as Fetch checks it.

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{
    CONSUMER_REPLICA_ID, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopicResponse, OffsetSpec,
};

use crate::server::handles::Handles;
use crate::server::response::ResponseFrame;

pub fn handle(
    handles: &Handles,
    correlation_id: i32,
    request: ListOffsetsRequest,
) -> ResponseFrame {
    let consumer = request.replica_id == CONSUMER_REPLICA_ID;
    let topics = request
        .topics
        .iter()
        .map(|topic| ListOffsetsTopicResponse {
            name: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .map(|entry| {
                    let mut response = ListOffsetsPartitionResponse {
                        partition: entry.partition,
                        error_code: ErrorCode::None,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                    };
                    let (_, partition, log) =
                        match handles.partitions.leader_log(&topic.name, entry.partition) {
                            Ok(found) => found,
                            Err(code) => {
                                response.error_code = code;
                                return response;
                            }
                        };
                    if let Some(code) = super::leader_epoch_error(
                        entry.current_leader_epoch,
                        partition.leader_epoch,
                    ) {
                        response.error_code = code;
                        return response;
                    }
                    response.leader_epoch = partition.leader_epoch;
                    let visible_end = if consumer {
                        log.high_watermark()
                    } else {
                        log.log_end_offset()
                    };
                    match OffsetSpec::from_timestamp(entry.timestamp) {
                        None => response.error_code = ErrorCode::InvalidTimestamp,
                        Some(OffsetSpec::Earliest) => response.offset = log.log_start_offset(),
                        Some(OffsetSpec::Latest) => response.offset = visible_end,
                        Some(OffsetSpec::Timestamp(timestamp)) => {
                            match log.offset_for_timestamp(timestamp) {
                                Ok(Some((offset, found))) if offset < visible_end => {
                                    response.offset = offset;
                                    response.timestamp = found;
                                }
                                Ok(_) => {}
                                Err(error) => response.error_code = error.error_code(),
                            }
                        }
                    }
                    response
                })
                .collect(),
        })
        .collect();
    ResponseFrame::message(correlation_id, &ListOffsetsResponse { topics })
}
