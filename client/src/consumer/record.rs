//! The record the consumer hands to the application.

use bytes::Bytes;

use crate::Header;

/// A record read from a partition. Key, value and header values share the fetched
/// bytes, so holding a record keeps its fetch response in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic read from.
    pub topic: String,
    /// The partition read from.
    pub partition: i32,
    /// The record's position in its partition.
    pub offset: i64,
    /// Create time set by the producer, or the broker's append time for topics that
    /// use log-append time.
    pub timestamp_ms: i64,
    /// The key the producer gave, if any.
    pub key: Option<Bytes>,
    /// The value; `None` for a null value (a tombstone in a compacted topic).
    pub value: Option<Bytes>,
    /// Headers in the order the producer added them.
    pub headers: Vec<Header>,
}
