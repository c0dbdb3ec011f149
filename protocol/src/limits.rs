//! Limits on everything read off the wire.
//!
//! A decoder checks each length and count against one of these constants before it
//! allocates anything, so a hostile or broken peer can never make Fjord reserve more
//! memory than the frame it actually sent.

/// Largest frame (the bytes after the 4-byte length prefix) a peer may send.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest string (topic name, client id, config key or value, host name, message).
pub const STRING_BYTES_MAX: usize = 32 * 1024;
/// Longest client id in a request header.
pub const CLIENT_ID_BYTES_MAX: usize = 255;
/// Most topics in one request or response.
pub const TOPICS_MAX: usize = 10_000;
/// Most partitions of one topic in one request or response.
pub const PARTITIONS_MAX: usize = 100_000;
/// Most brokers in a metadata response.
pub const BROKERS_MAX: usize = 10_000;
/// Most replica ids in one replica or in-sync replica list.
pub const REPLICAS_MAX: usize = 256;
/// Most config entries attached to one topic.
pub const CONFIG_ENTRIES_MAX: usize = 256;
/// Most API entries in an ApiVersions response.
pub const API_ENTRIES_MAX: usize = 1_024;
/// Most records in one record batch.
pub const BATCH_RECORDS_MAX: usize = 1_000_000;
/// Most headers on one record.
pub const RECORD_HEADERS_MAX: usize = 10_000;
/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Longest consumer group id.
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest group member id (the broker makes 36-character UUIDs).
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// Most groups in one ListGroups or DescribeGroups request or response.
pub const GROUPS_MAX: usize = 10_000;
/// Most members of one group in a DescribeGroups response.
pub const GROUP_MEMBERS_MAX: usize = 10_000;
/// Longest metadata string stored with a committed offset. Not a decoding limit (the
/// field is bounded by `STRING_BYTES_MAX` on the wire): the coordinator refuses a
/// longer one with `OFFSET_METADATA_TOO_LARGE` for that partition alone, as Kafka does.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4_096;
/// Longest group or member state name (`Stable`, `Reconciling`, …) on the wire.
pub const GROUP_STATE_BYTES_MAX: usize = 64;

const _: () = assert!(CLIENT_ID_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(TOPIC_NAME_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(GROUP_ID_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(MEMBER_ID_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(OFFSET_METADATA_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(GROUP_STATE_BYTES_MAX <= STRING_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= i32::MAX as usize);
