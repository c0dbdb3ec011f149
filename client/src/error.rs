//! The errors of the client library.
//!
//! One enum for the whole library, because the layers are stacked: a producer's delivery
//! can fail with a connection error, a timeout or a broker error code, and the caller
//! wants to match on all of them in one place. Every variant says which broker, topic
//! or partition it is about, so that its one-line `Display` is enough for a person
//! (the `fjord` tool prints exactly that line).
//!
//! The type is `Clone` because one failed produce request fails every record of the
//! batches it carried; I/O errors are kept behind an `Arc` for that reason.
//!
//! Wire error codes stay their own type ([`ErrorCode`]) and are wrapped, never mixed
//! with client-side conditions.

use std::sync::Arc;

use fjord_protocol::{DecodeError, ErrorCode, RecordBatchError};

/// The result type of the client library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Opening a TCP connection to a broker failed (refused, unreachable, timed out).
    #[error("cannot reach broker at {address}: {}", describe_io(source))]
    Connect {
        address: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// An established connection failed while reading or writing.
    #[error("connection to broker at {address} failed: {}", describe_io(source))]
    Io {
        address: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The broker closed the connection, or the connection was already broken when the
    /// request was made.
    #[error("connection to broker at {address} was closed")]
    ConnectionClosed { address: String },

    /// A request got no response within its deadline.
    #[error("{api} request to {address} timed out after {timeout_ms} ms")]
    Timeout {
        address: String,
        api: &'static str,
        timeout_ms: u64,
    },

    /// The broker answered with an error code; `context` names the request and the
    /// topic or partition it is about.
    #[error("{context}: {code}{}", optional_message(message))]
    Broker {
        context: String,
        code: ErrorCode,
        message: Option<String>,
    },

    /// An offset commit that can no longer apply: this member lost the partitions it
    /// was committing for, because the coordinator no longer knows it (its
    /// coordinator moved or restarted, or its session expired: `code` is
    /// `UNKNOWN_MEMBER_ID` or `FENCED_MEMBER_EPOCH`). Nothing was committed; the
    /// member joins the group again by itself, at once, and whoever owns the partitions next
    /// starts from the last committed offsets, so records processed since then are
    /// delivered again (at least once). Not retriable as such: keep polling.
    #[error(
        "commit for group '{group}' no longer applies: this member lost its partitions ({code})"
    )]
    CommitFailed { group: String, code: ErrorCode },

    /// A response body could not be decoded.
    #[error("malformed response from {address}: {source}")]
    Decode {
        address: String,
        #[source]
        source: DecodeError,
    },

    /// A record batch received from a broker is corrupt.
    #[error("corrupt record batch from {topic}-{partition}: {source}")]
    CorruptBatch {
        topic: String,
        partition: i32,
        #[source]
        source: RecordBatchError,
    },

    /// A response was well formed but did not match its request (for example a
    /// partition missing from a produce response).
    #[error("unexpected response from {address}: {reason}")]
    UnexpectedResponse { address: String, reason: String },

    /// The broker and this client share no version of an API.
    #[error("broker at {address} speaks no version of the {api} API that this client speaks")]
    UnsupportedApi { address: String, api: &'static str },

    /// The topic does not exist.
    #[error("topic '{topic}' does not exist")]
    UnknownTopic { topic: String },

    /// The topic exists but has no partition with this index.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },

    /// A topic to create exists already.
    #[error("topic '{topic}' already exists")]
    TopicAlreadyExists { topic: String },

    /// The partition has no leader right now; retried by the producer and consumer.
    #[error("partition {topic}-{partition} has no leader right now")]
    LeaderNotAvailable { topic: String, partition: i32 },

    /// A fetch position is outside the partition's log and the consumer's
    /// `auto_offset_reset` policy is `Error`.
    #[error("offset {offset} is out of range for partition {topic}-{partition}")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },

    /// An assigned partition has no position: nothing was sought and the consumer's
    /// `auto_offset_reset` policy is `Error`.
    #[error("partition {topic}-{partition} has no position: seek first, or set auto_offset_reset")]
    NoPosition { topic: String, partition: i32 },

    /// The consumer was asked about a partition it has not been assigned.
    #[error("partition {topic}-{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: i32 },

    /// A record is larger than the producer accepts.
    #[error("record of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },

    /// A record could not be delivered within the producer's `delivery_timeout_ms`;
    /// `last_error` is why the last attempt failed.
    #[error(
        "delivery to {topic}-{partition} timed out after {timeout_ms} ms (last error: {last_error})"
    )]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        timeout_ms: u64,
        last_error: String,
    },

    /// The producer was closed (or dropped) before the operation could complete.
    #[error("the producer is closed")]
    ProducerClosed,

    /// The group consumer was closed (or dropped) before the operation could complete.
    #[error("the group consumer is closed")]
    ConsumerClosed,

    /// The consumer group has neither members nor committed offsets.
    #[error("group '{group_id}' does not exist")]
    GroupNotFound { group_id: String },

    /// The operation needs a group without members (resetting offsets).
    #[error("group '{group_id}' has active members; stop them before resetting its offsets")]
    GroupNotEmpty { group_id: String },
}

impl Error {
    /// Whether the same operation may succeed if tried again later: connection
    /// failures, timeouts and retriable broker codes.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Io { .. }
            | Self::ConnectionClosed { .. }
            | Self::Timeout { .. }
            | Self::LeaderNotAvailable { .. } => true,
            Self::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether the client's view of partition leadership may be stale, so that
    /// metadata should be refreshed before trying again.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Io { .. }
            | Self::ConnectionClosed { .. }
            | Self::LeaderNotAvailable { .. }
            | Self::UnknownPartition { .. } => true,
            Self::Broker { code, .. } => code_invalidates_metadata(*code),
            _ => false,
        }
    }

    /// The wire error code, when the broker sent one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn connect(address: &str, source: std::io::Error) -> Self {
        Self::Connect {
            address: address.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn io(address: &str, source: std::io::Error) -> Self {
        Self::Io {
            address: address.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn broker(context: impl Into<String>, code: ErrorCode) -> Self {
        Self::Broker {
            context: context.into(),
            code,
            message: None,
        }
    }
}

/// The error codes that mean "the leader you asked is not (or no longer) the right
/// one", which a metadata refresh can fix.
pub(crate) fn code_invalidates_metadata(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::BrokerShuttingDown
    )
}

/// A short lowercase reason for an I/O error ("connection refused"), without the
/// operating system's error number, for one-line messages.
fn describe_io(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        // These kinds describe themselves well; the raw OS text adds only noise.
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::TimedOut
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::AddrNotAvailable
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable => error.kind().to_string(),
        _ => error.to_string(),
    }
}

fn optional_message(message: &Option<String>) -> String {
    match message {
        Some(message) if !message.is_empty() => format!(": {message}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-line messages the `fjord` tool prints read as the issue specifies.
    #[test]
    fn messages_are_one_readable_line() {
        let refused = Error::connect(
            "127.0.0.1:9192",
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert_eq!(
            refused.to_string(),
            "cannot reach broker at 127.0.0.1:9192: connection refused"
        );
        let unknown = Error::UnknownTopic { topic: "x".into() };
        assert_eq!(unknown.to_string(), "topic 'x' does not exist");
        let broker = Error::Broker {
            context: "produce to orders-1".into(),
            code: ErrorCode::NotEnoughReplicas,
            message: Some("1 of 2 in sync".into()),
        };
        assert_eq!(
            broker.to_string(),
            "produce to orders-1: NOT_ENOUGH_REPLICAS (19): 1 of 2 in sync"
        );
    }

    /// Retriability follows the wire code for broker errors and is true for transport
    /// failures, which a reconnect can fix.
    #[test]
    fn retriable_classification() {
        assert!(Error::broker("x", ErrorCode::NotLeaderOrFollower).is_retriable());
        assert!(!Error::broker("x", ErrorCode::InvalidTopic).is_retriable());
        assert!(
            Error::ConnectionClosed {
                address: "a".into()
            }
            .is_retriable()
        );
        assert!(!Error::UnknownTopic { topic: "t".into() }.is_retriable());
        assert!(Error::broker("x", ErrorCode::FencedLeaderEpoch).invalidates_metadata());
        assert!(!Error::broker("x", ErrorCode::RequestTimedOut).invalidates_metadata());
    }
}
