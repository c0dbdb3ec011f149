//! A zero-copy view over stored or received record batches.

use bytes::Bytes;

use super::varint::{VARLONG_BYTES_MAX, read_varint, read_varlong};
use super::{BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, MAGIC, layout};
use crate::error::ErrorCode;
use crate::limits::{BATCH_RECORDS_MAX, RECORD_HEADERS_MAX};

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordBatchError {
    #[error("batch is {available} bytes, shorter than its {needed}-byte header or declared length")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is invalid")]
    InvalidLength(i32),
    #[error("record batch magic {0} is not supported (only 2)")]
    UnsupportedMagic(i8),
    #[error("CRC-32C mismatch: header says {stored:#010x}, content is {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("compression {0:?} is not supported by this broker")]
    UnsupportedCompression(Compression),
    #[error("record count {0} is invalid")]
    InvalidRecordCount(i32),
    #[error("record {index}: {reason}")]
    InvalidRecord { index: usize, reason: &'static str },
}

impl RecordBatchError {
    /// The wire error code a producer gets for this batch.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::CrcMismatch { .. } | Self::Truncated { .. } | Self::InvalidLength(_) => {
                ErrorCode::CorruptMessage
            }
            Self::UnsupportedCompression(_) => ErrorCode::UnsupportedCompressionType,
            Self::UnsupportedMagic(_)
            | Self::InvalidRecordCount(_)
            | Self::InvalidRecord { .. } => ErrorCode::InvalidRecord,
        }
    }
}

/// The compression codec in attribute bits 0–2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Values 5–7 of bits 0–2, which no codec uses.
    Unknown(u8),
}

impl Compression {
    fn from_attributes(attributes: i16) -> Self {
        match attributes & 0x07 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => Self::Unknown(other as u8),
        }
    }
}

/// The timestamp type in attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// One record batch, exactly: `bytes` holds the header and all records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

macro_rules! field {
    ($name:ident, $type:ty, $offset:expr) => {
        pub fn $name(&self) -> $type {
            <$type>::from_be_bytes(
                self.bytes[$offset..][..size_of::<$type>()]
                    .try_into()
                    .unwrap(),
            )
        }
    };
}

impl RecordBatch {
    /// Reads the first batch of `bytes`: the view (sharing `bytes`) and its size.
    /// Only the frame of the batch is checked here; call [`RecordBatch::validate`] for
    /// the CRC and records.
    pub fn split_first(bytes: &Bytes) -> Result<(RecordBatch, usize), RecordBatchError> {
        let size = Self::size_at(bytes)?;
        Ok((
            RecordBatch {
                bytes: bytes.slice(..size),
            },
            size,
        ))
    }

    /// The total size of the batch at the start of `bytes`, from its length field.
    pub fn size_at(bytes: &[u8]) -> Result<usize, RecordBatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(RecordBatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let length = i32::from_be_bytes(bytes[layout::BATCH_LENGTH..][..4].try_into().unwrap());
        let header_rest = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;
        if length < header_rest {
            return Err(RecordBatchError::InvalidLength(length));
        }
        let size = BATCH_LENGTH_PREFIX_BYTES + length as usize;
        if bytes.len() < size {
            return Err(RecordBatchError::Truncated {
                needed: size,
                available: bytes.len(),
            });
        }
        Ok(size)
    }

    /// A view over bytes that hold exactly one batch.
    pub fn new(bytes: Bytes) -> Result<RecordBatch, RecordBatchError> {
        let size = Self::size_at(&bytes)?;
        if size != bytes.len() {
            return Err(RecordBatchError::InvalidLength(bytes.len() as i32));
        }
        Ok(RecordBatch { bytes })
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }

    field!(base_offset, i64, layout::BASE_OFFSET);
    field!(batch_length, i32, layout::BATCH_LENGTH);
    field!(partition_leader_epoch, i32, layout::PARTITION_LEADER_EPOCH);
    field!(magic, i8, layout::MAGIC);
    field!(crc, u32, layout::CRC);
    field!(attributes, i16, layout::ATTRIBUTES);
    field!(last_offset_delta, i32, layout::LAST_OFFSET_DELTA);
    field!(base_timestamp, i64, layout::BASE_TIMESTAMP);
    field!(max_timestamp, i64, layout::MAX_TIMESTAMP);
    field!(producer_id, i64, layout::PRODUCER_ID);
    field!(producer_epoch, i16, layout::PRODUCER_EPOCH);
    field!(base_sequence, i32, layout::BASE_SEQUENCE);
    field!(record_count, i32, layout::RECORD_COUNT);

    /// The offset of the batch's last record. The base offset comes off the wire, so
    /// the sum wraps instead of overflowing.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }

    /// The offset right after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes())
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & LOG_APPEND_TIME_ATTRIBUTE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    /// The CRC-32C of the covered bytes, computed now.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[layout::ATTRIBUTES..])
    }

    pub fn verify_crc(&self) -> Result<(), RecordBatchError> {
        let (stored, computed) = (self.crc(), self.compute_crc());
        if stored != computed {
            return Err(RecordBatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// Full validation of a batch a producer sent: magic, CRC, supported compression,
    /// and a walk over every record proving it is well formed with consecutive offset
    /// deltas. The walk allocates nothing.
    pub fn validate(&self) -> Result<(), RecordBatchError> {
        self.validate_records().map(drop)
    }

    /// [`RecordBatch::validate`], also returning the smallest and largest record
    /// timestamps met on the walk (`base_timestamp + timestamp_delta`, wrapping), so
    /// that a broker can check them without walking the records again.
    pub fn validate_records(&self) -> Result<TimestampBounds, RecordBatchError> {
        if self.magic() != MAGIC {
            return Err(RecordBatchError::UnsupportedMagic(self.magic()));
        }
        self.verify_crc()?;
        let compression = self.compression();
        if compression != Compression::None {
            return Err(RecordBatchError::UnsupportedCompression(compression));
        }
        let count = self.record_count();
        if count <= 0 || count as usize > BATCH_RECORDS_MAX || self.last_offset_delta() != count - 1
        {
            return Err(RecordBatchError::InvalidRecordCount(count));
        }
        let base_timestamp = self.base_timestamp();
        let mut bounds = TimestampBounds {
            min_ms: i64::MAX,
            max_ms: i64::MIN,
        };
        let mut position = BATCH_HEADER_BYTES;
        for index in 0..count as usize {
            let record = parse_record(&self.bytes, position, index, false)?;
            if record.offset_delta != index as i32 {
                return Err(RecordBatchError::InvalidRecord {
                    index,
                    reason: "offset delta out of sequence",
                });
            }
            let timestamp = base_timestamp.wrapping_add(record.timestamp_delta);
            bounds.min_ms = bounds.min_ms.min(timestamp);
            bounds.max_ms = bounds.max_ms.max(timestamp);
            position = record.end;
        }
        if position != self.bytes.len() {
            return Err(RecordBatchError::InvalidRecord {
                index: count as usize,
                reason: "bytes after the last record",
            });
        }
        Ok(bounds)
    }

    /// Iterates the records lazily, decoding one per step.
    pub fn records(&self) -> Records<'_> {
        Records {
            batch: self,
            position: BATCH_HEADER_BYTES,
            index: 0,
        }
    }
}

/// The smallest and largest record timestamp of a batch, in ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    pub min_ms: i64,
    pub max_ms: i64,
}

/// Attribute bit 3: the batch's timestamps are the broker's log-append time.
const LOG_APPEND_TIME_ATTRIBUTE: i16 = 0x08;

/// Turns the batch at the start of `batch` into a log-append-time batch stamped with
/// `append_time_ms`: sets attribute bit 3 and `max_timestamp`, which readers then take
/// as every record's timestamp, and recomputes the CRC (both fields are covered by it).
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    let attributes = i16::from_be_bytes(batch[layout::ATTRIBUTES..][..2].try_into().unwrap());
    batch[layout::ATTRIBUTES..][..2]
        .copy_from_slice(&(attributes | LOG_APPEND_TIME_ATTRIBUTE).to_be_bytes());
    batch[layout::MAX_TIMESTAMP..][..8].copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES..]);
    batch[layout::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
}

/// Stamps the base offset of the batch at the start of `batch` in place.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[layout::BASE_OFFSET..][..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the partition leader epoch of the batch at the start of `batch` in place.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[layout::PARTITION_LEADER_EPOCH..][..4].copy_from_slice(&epoch.to_be_bytes());
}

/// Iterates the batches stored back to back in one byte string.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    bytes: Bytes,
}

impl RecordBatches {
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

impl Iterator for RecordBatches {
    type Item = Result<RecordBatch, RecordBatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        match RecordBatch::split_first(&self.bytes) {
            Ok((batch, size)) => {
                let _consumed = self.bytes.split_to(size);
                Some(Ok(batch))
            }
            Err(error) => {
                self.bytes.clear();
                Some(Err(error))
            }
        }
    }
}

/// A header of a decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A decoded record; key, value and header values share the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Lazy iterator over a batch's records.
#[derive(Debug)]
pub struct Records<'a> {
    batch: &'a RecordBatch,
    position: usize,
    index: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, RecordBatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let count = self.batch.record_count().max(0) as usize;
        if self.index >= count {
            return None;
        }
        let bytes = &self.batch.bytes;
        let parsed = match parse_record(bytes, self.position, self.index, true) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.index = count;
                return Some(Err(error));
            }
        };
        self.position = parsed.end;
        self.index += 1;
        let slice =
            |range: Option<(usize, usize)>| range.map(|(start, end)| bytes.slice(start..end));
        Some(Ok(Record {
            offset: self
                .batch
                .base_offset()
                .wrapping_add(i64::from(parsed.offset_delta)),
            timestamp_ms: self
                .batch
                .base_timestamp()
                .wrapping_add(parsed.timestamp_delta),
            key: slice(parsed.key),
            value: slice(parsed.value),
            headers: parsed
                .headers
                .into_iter()
                .map(|(key, value)| Header {
                    key: String::from_utf8_lossy(&bytes[key.0..key.1]).into_owned(),
                    value: slice(value),
                })
                .collect(),
        }))
    }
}

type Span = (usize, usize);

struct ParsedRecord {
    end: usize,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<Span>,
    value: Option<Span>,
    headers: Vec<(Span, Option<Span>)>,
}

/// Parses the record at `start`. With `keep_headers` false the header spans are checked
/// but not collected, so validation does not allocate.
fn parse_record(
    bytes: &[u8],
    start: usize,
    index: usize,
    keep_headers: bool,
) -> Result<ParsedRecord, RecordBatchError> {
    let invalid = |reason| RecordBatchError::InvalidRecord { index, reason };
    let (length, used) = read_varint(&bytes[start..]).ok_or(invalid("bad length varint"))?;
    let body_start = start + used;
    if length < 0 || length as usize > bytes.len() - body_start {
        return Err(invalid("length runs past the batch"));
    }
    let end = body_start + length as usize;
    let body = &bytes[..end];
    let mut position = body_start;
    let next_varlong = |position: &mut usize, reason| {
        let (value, used) =
            read_varlong(&body[*position..], VARLONG_BYTES_MAX).ok_or(invalid(reason))?;
        *position += used;
        Ok::<i64, RecordBatchError>(value)
    };
    if position >= end {
        return Err(invalid("empty record"));
    }
    position += 1; // attributes: unused in v2
    let timestamp_delta = next_varlong(&mut position, "bad timestamp delta")?;
    let offset_delta = next_varlong(&mut position, "bad offset delta")?;
    let offset_delta = i32::try_from(offset_delta).map_err(|_| invalid("bad offset delta"))?;
    let span = |position: &mut usize, reason| -> Result<Option<Span>, RecordBatchError> {
        let length = next_varlong(position, reason)?;
        if length == -1 {
            return Ok(None);
        }
        if length < 0 || length as usize > end - *position {
            return Err(invalid(reason));
        }
        let start = *position;
        *position += length as usize;
        Ok(Some((start, *position)))
    };
    let key = span(&mut position, "bad key")?;
    let value = span(&mut position, "bad value")?;
    let header_count = next_varlong(&mut position, "bad header count")?;
    if header_count < 0 || header_count as usize > RECORD_HEADERS_MAX {
        return Err(invalid("bad header count"));
    }
    let mut headers = Vec::new();
    for _ in 0..header_count {
        let key = span(&mut position, "bad header key")?.ok_or(invalid("null header key"))?;
        if std::str::from_utf8(&body[key.0..key.1]).is_err() {
            return Err(invalid("header key is not UTF-8"));
        }
        let value = span(&mut position, "bad header value")?;
        if keep_headers {
            headers.push((key, value));
        }
    }
    if position != end {
        return Err(invalid("length does not match the fields"));
    }
    Ok(ParsedRecord {
        end,
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}
