//! Record peek: `GET /v1/topics/{name}/partitions/{partition}/records` shows a few
//! committed records of a partition as JSON, for people debugging a topic. It is not
//! a consumer API: it is bounded in records and bytes, and a client pages on with
//! `next_offset`.
//!
//! Keys, values and header values are shown as text when they are valid UTF-8 and as
//! base64 otherwise, with the encoding named, so binary data survives the round trip.
//! Batches are CRC-verified like a consumer verifies them: a damaged batch is a
//! `500 storage_error` naming the partition directory, never altered data.

use axum::Json;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fjord_protocol::batch::{RecordBatches, TimestampType};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{PathParameters, QueryParameters, Ready};
use crate::storage::{PartitionLog, StorageError};

/// Most records one peek returns.
pub const PEEK_RECORDS_MAX: u32 = 1000;
/// Records one peek returns when the query names no limit.
pub const PEEK_RECORDS_DEFAULT: u32 = 10;
/// Bytes of keys, values and headers after which a peek stops early (it always
/// returns at least one record), so that a page of large records stays a page.
pub const PEEK_PAYLOAD_BYTES_MAX: usize = 4 << 20;
/// Bytes asked of the log per read; a read returns at least one whole batch.
const READ_CHUNK_BYTES: u64 = 256 << 10;

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PartitionPath {
    /// The topic's name.
    pub name: String,
    /// The partition's index.
    #[param(minimum = 0)]
    pub partition: i32,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// First offset to show. Default: the log start offset.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// Most records to show, 1 to 1000. Default: 10.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of records.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordsPage {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    /// The page ends here at the latest: records at or above it are not committed.
    pub high_watermark: i64,
    /// The offset to ask for next: after the last record shown, or the offset asked
    /// for when there was nothing to show.
    pub next_offset: i64,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the Unix epoch: the producer's time, or the broker's when the
    /// batch uses log-append time.
    pub timestamp_ms: i64,
    /// Null when the record has no key.
    pub key: Option<Payload>,
    /// Null for a tombstone.
    pub value: Option<Payload>,
    pub headers: Vec<RecordHeader>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Payload>,
}

/// Bytes as text, or as base64 when they are not valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Payload {
    pub encoding: PayloadEncoding,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    /// `data` is the bytes themselves.
    Utf8,
    /// `data` is the bytes in standard base64 with padding.
    Base64,
}

impl Payload {
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self {
                encoding: PayloadEncoding::Utf8,
                data: text.to_owned(),
            },
            Err(_) => Self {
                encoding: PayloadEncoding::Base64,
                data: BASE64.encode(bytes),
            },
        }
    }
}

/// A page of a partition's committed records.
///
/// From `offset` (default: the log start), at most `limit` records (default 10, at
/// most 1000) and about 4 MiB of keys and values; continue from `next_offset`.
#[utoipa::path(
    get,
    path = "/v1/topics/{name}/partitions/{partition}/records",
    tag = "topics",
    params(PartitionPath, RecordsQuery),
    responses(
        (status = OK, body = RecordsPage),
        (status = NOT_FOUND, description = "No such topic or partition, or no records at \
            that offset (`offset_out_of_range`: the message gives the log's range).",
            body = ErrorBody),
        (status = MISDIRECTED_REQUEST, description = "This broker does not lead the partition.", body = ErrorBody),
    )
)]
pub async fn peek_records(
    Ready(api): Ready,
    PathParameters(path): PathParameters<PartitionPath>,
    QueryParameters(query): QueryParameters<RecordsQuery>,
) -> Result<Json<RecordsPage>, ApiError> {
    let limit = query.limit.unwrap_or(PEEK_RECORDS_DEFAULT);
    if !(1..=PEEK_RECORDS_MAX).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("limit must be between 1 and {PEEK_RECORDS_MAX}, got {limit}"),
        ));
    }
    let image = api.partitions.metadata().current();
    let topic = image.topic(&path.name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TopicNotFound,
            format!("topic '{}' does not exist", path.name),
        )
    })?;
    if topic.partition(path.partition).is_none() {
        return Err(ApiError::new(
            ErrorCode::PartitionNotFound,
            format!(
                "topic '{}' has no partition {} (it has {})",
                path.name,
                path.partition,
                topic.partitions.len()
            ),
        ));
    }
    let (_, _, log) = api
        .partitions
        .leader_log(&path.name, path.partition)
        .map_err(|code| {
            ApiError::new(
                ErrorCode::NotLeader,
                format!(
                    "this broker cannot serve {}-{}: {}",
                    path.name,
                    path.partition,
                    code.name()
                ),
            )
        })?;
    let offset = query.offset.unwrap_or_else(|| log.log_start_offset());
    let peeked = tokio::task::spawn_blocking(move || peek(&log, offset, limit as usize))
        .await
        .map_err(|error| {
            ApiError::new(
                ErrorCode::InternalError,
                format!("reading records failed: {error}"),
            )
        })??;
    Ok(Json(RecordsPage {
        topic: path.name,
        partition: path.partition,
        log_start_offset: peeked.log_start_offset,
        high_watermark: peeked.high_watermark,
        next_offset: peeked.next_offset,
        records: peeked.records,
    }))
}

/// What [`peek`] read.
#[derive(Debug)]
struct Peeked {
    records: Vec<Record>,
    next_offset: i64,
    /// The log's offsets when the peek began.
    log_start_offset: i64,
    high_watermark: i64,
}

/// Reads committed records from `offset` (blocking file reads): at most `limit`, and
/// stopping once [`PEEK_PAYLOAD_BYTES_MAX`] bytes are shown. Every batch's CRC-32C is
/// verified, as the native consumer does: a damaged batch is an error, never shown.
/// Control batches (transaction markers) are skipped, as a consumer would.
fn peek(log: &PartitionLog, offset: i64, limit: usize) -> Result<Peeked, ApiError> {
    let (log_start_offset, log_end_offset) = (log.log_start_offset(), log.log_end_offset());
    if offset < log_start_offset || offset > log_end_offset {
        return Err(StorageError::OffsetOutOfRange {
            offset,
            log_start_offset,
            log_end_offset,
        }
        .into());
    }
    let high_watermark = log.high_watermark();
    let mut records = Vec::new();
    let mut payload_bytes = 0usize;
    let mut next_offset = offset;
    let page_full = |records: &Vec<Record>, payload_bytes: usize| {
        records.len() >= limit || payload_bytes >= PEEK_PAYLOAD_BYTES_MAX
    };
    'reading: while next_offset < high_watermark && !page_full(&records, payload_bytes) {
        let read = log.read(next_offset, READ_CHUNK_BYTES, high_watermark)?;
        let read_from = next_offset;
        for batch in RecordBatches::new(read.records) {
            let batch = batch.map_err(|error| corrupt(log, &error))?;
            // Like a consumer, show nothing a stored batch's CRC does not vouch for.
            batch.verify_crc().map_err(|error| corrupt(log, &error))?;
            if batch.is_control() {
                next_offset = next_offset.max(batch.next_offset());
                continue;
            }
            for record in batch.records() {
                let record = record.map_err(|error| corrupt(log, &error))?;
                if record.offset < next_offset {
                    continue;
                }
                if record.offset >= high_watermark || page_full(&records, payload_bytes) {
                    break 'reading;
                }
                let timestamp_ms = match batch.timestamp_type() {
                    TimestampType::LogAppendTime => batch.max_timestamp(),
                    TimestampType::CreateTime => record.timestamp_ms,
                };
                let (shown, bytes) = show(record, timestamp_ms);
                payload_bytes += bytes;
                next_offset = shown.offset + 1;
                records.push(shown);
            }
            // Offsets a batch covers but holds no record for (compaction) are skipped.
            next_offset = next_offset.max(batch.next_offset());
        }
        if next_offset == read_from {
            // The log returned nothing past the offset; never spin on it.
            break;
        }
    }
    Ok(Peeked {
        records,
        next_offset,
        log_start_offset,
        high_watermark,
    })
}

/// A record as JSON, with the bytes of its key, value and headers.
fn show(record: fjord_protocol::batch::Record, timestamp_ms: i64) -> (Record, usize) {
    let mut bytes = 0;
    let mut payload = |value: Option<&[u8]>| {
        value.map(|value| {
            bytes += value.len();
            Payload::of(value)
        })
    };
    let key = payload(record.key.as_deref());
    let value = payload(record.value.as_deref());
    let headers = record
        .headers
        .iter()
        .map(|header| RecordHeader {
            key: header.key.clone(),
            value: payload(header.value.as_deref()),
        })
        .collect();
    (
        Record {
            offset: record.offset,
            timestamp_ms,
            key,
            value,
            headers,
        },
        bytes,
    )
}

fn corrupt(log: &PartitionLog, error: &fjord_protocol::batch::RecordBatchError) -> ApiError {
    StorageError::Corrupt {
        path: log.dir().to_owned(),
        reason: format!("stored batch fails verification: {error}"),
    }
    .into()
}
