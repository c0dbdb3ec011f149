//! Building record batches.

use bytes::{BufMut, Bytes, BytesMut};

use super::layout;
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{BATCH_HEADER_BYTES, MAGIC};

/// A header of a record to be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInput<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// A record to be built into a batch; borrowed, so building copies each byte once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordInput<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [HeaderInput<'a>],
    /// Milliseconds since the Unix epoch (create time).
    pub timestamp_ms: i64,
}

impl RecordInput<'_> {
    fn body_len(&self, timestamp_delta: i64, offset_delta: i32) -> usize {
        let mut length = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
        length += optional_len(self.key) + optional_len(self.value);
        length += varint_len(self.headers.len() as i32);
        for header in self.headers {
            length += varint_len(header.key.len() as i32) + header.key.len();
            length += optional_len(header.value);
        }
        length
    }
}

fn optional_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        Some(bytes) => varint_len(bytes.len() as i32) + bytes.len(),
        None => varint_len(-1),
    }
}

fn put_optional(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.put_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// Builds one uncompressed batch, a record at a time, straight into its final bytes.
///
/// The base offset is 0 and the leader epoch -1 until the broker stamps them; the
/// producer id, epoch and base sequence are -1 (no idempotence yet).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    record_count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose buffer is pre-sized for about `bytes` bytes of records.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + bytes);
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        Self {
            buf,
            record_count: 0,
            base_timestamp_ms: 0,
            max_timestamp_ms: -1,
        }
    }

    /// Appends a record. The first record's timestamp becomes the base timestamp.
    ///
    /// Panics when a key, value or header is longer than `i32::MAX` bytes, or the batch
    /// would hold more than `i32::MAX` records: callers bound their batches far below.
    pub fn push(&mut self, record: &RecordInput<'_>) {
        if self.record_count == 0 {
            self.base_timestamp_ms = record.timestamp_ms;
        }
        let offset_delta = self.record_count;
        let timestamp_delta = record.timestamp_ms.wrapping_sub(self.base_timestamp_ms);
        let body_len = record.body_len(timestamp_delta, offset_delta);
        self.buf.reserve(varint_len(body_len as i32) + body_len);
        put_varint(
            &mut self.buf,
            i32::try_from(body_len).expect("record too large"),
        );
        self.buf.put_i8(0);
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        put_optional(&mut self.buf, record.key);
        put_optional(&mut self.buf, record.value);
        put_varint(&mut self.buf, record.headers.len() as i32);
        for header in record.headers {
            put_varint(&mut self.buf, header.key.len() as i32);
            self.buf.put_slice(header.key.as_bytes());
            put_optional(&mut self.buf, header.value);
        }
        self.record_count = self.record_count.checked_add(1).expect("too many records");
        self.max_timestamp_ms = self.max_timestamp_ms.max(record.timestamp_ms);
    }

    pub fn record_count(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes the finished batch will take.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add to this batch, to decide before pushing it.
    pub fn record_size_bytes(&self, record: &RecordInput<'_>) -> usize {
        let base = if self.record_count == 0 {
            record.timestamp_ms
        } else {
            self.base_timestamp_ms
        };
        let body_len = record.body_len(record.timestamp_ms.wrapping_sub(base), self.record_count);
        varint_len(body_len as i32) + body_len
    }

    /// Fills in the header and CRC and returns the batch bytes.
    pub fn finish(mut self) -> Bytes {
        let batch_length = i32::try_from(self.buf.len() - 12).expect("batch too large");
        let header = &mut self.buf[..BATCH_HEADER_BYTES];
        header[layout::BASE_OFFSET..][..8].copy_from_slice(&0i64.to_be_bytes());
        header[layout::BATCH_LENGTH..][..4].copy_from_slice(&batch_length.to_be_bytes());
        header[layout::PARTITION_LEADER_EPOCH..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        header[layout::MAGIC] = MAGIC as u8;
        header[layout::ATTRIBUTES..][..2].copy_from_slice(&0i16.to_be_bytes());
        let last_offset_delta = (self.record_count - 1).max(0);
        header[layout::LAST_OFFSET_DELTA..][..4].copy_from_slice(&last_offset_delta.to_be_bytes());
        header[layout::BASE_TIMESTAMP..][..8]
            .copy_from_slice(&self.base_timestamp_ms.to_be_bytes());
        let max_timestamp = if self.record_count == 0 {
            -1
        } else {
            self.max_timestamp_ms
        };
        header[layout::MAX_TIMESTAMP..][..8].copy_from_slice(&max_timestamp.to_be_bytes());
        header[layout::PRODUCER_ID..][..8].copy_from_slice(&(-1i64).to_be_bytes());
        header[layout::PRODUCER_EPOCH..][..2].copy_from_slice(&(-1i16).to_be_bytes());
        header[layout::BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        header[layout::RECORD_COUNT..][..4].copy_from_slice(&self.record_count.to_be_bytes());
        let crc = crc32c::crc32c(&self.buf[layout::ATTRIBUTES..]);
        self.buf[layout::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
        self.buf.freeze()
    }
}
