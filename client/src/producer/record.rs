//! The record an application hands to the producer.

use bytes::Bytes;

use super::buffer::{HEADER_OVERHEAD_BYTES_MAX, RECORD_OVERHEAD_BYTES_MAX};
use crate::Header;

/// A record to send.
///
/// ```
/// use fjord_client::ProducerRecord;
///
/// let record = ProducerRecord::new("orders", "{\"total\": 12}")
///     .with_key("order-42")
///     .with_header("source", "web");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic to send to; it must exist.
    pub topic: String,
    /// `None` lets the partitioner choose: by key hash, or the sticky partition for
    /// records without a key.
    pub partition: Option<i32>,
    /// Records with equal keys go to one partition, in order.
    pub key: Option<Bytes>,
    /// The payload; `None` sends a null value.
    pub value: Option<Bytes>,
    /// Name/value pairs carried with the record.
    pub headers: Vec<Header>,
    /// Create time in milliseconds since the Unix epoch; `None` means now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value, no key, no headers, timestamped when sent.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// Sets the key, which picks the partition unless one is given explicitly.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition, bypassing the partitioner.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the create time, in milliseconds since the Unix epoch.
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// An upper bound of the bytes this record takes inside a batch; what it reserves
    /// of the producer's buffer.
    pub fn size_bytes_max(&self) -> usize {
        let optional = |bytes: &Option<Bytes>| bytes.as_ref().map_or(0, Bytes::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|header| header.key.len() + optional(&header.value) + HEADER_OVERHEAD_BYTES_MAX)
            .sum();
        RECORD_OVERHEAD_BYTES_MAX + optional(&self.key) + optional(&self.value) + headers
    }
}
