//! API keys and the version range of each API this build speaks.
//!
//! Key ranges leave room for the parts that come later:
//!
//! ```text
//!     0 –  99   data and topic administration (this crate today)
//!   100 – 199   consumer groups (find coordinator, membership, offsets, listing)
//!   200 – 299   replication and broker-internal traffic
//!   300 – 399   cluster controller (Raft, broker registration, heartbeats)
//! ```
//!
//! Versioning rule: a client sends ApiVersions first (any version of it is answered with
//! version 0 of the response) and then uses, for each API, the highest version that both
//! sides support. A request with a version outside the broker's range is answered with
//! `UNSUPPORTED_VERSION` in the response header.

/// The APIs of the protocol.
#[repr(i16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKey {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    ApiVersions = 10,
    CreateTopics = 20,
    DeleteTopics = 21,
    FindCoordinator = 100,
    ConsumerGroupHeartbeat = 101,
    OffsetCommit = 102,
    OffsetFetch = 103,
    ListGroups = 104,
    DescribeGroups = 105,
}

/// An API and the versions a peer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: i16,
    pub max: i16,
}

impl ApiKey {
    pub const ALL: [ApiKey; 13] = [
        Self::Produce,
        Self::Fetch,
        Self::ListOffsets,
        Self::Metadata,
        Self::ApiVersions,
        Self::CreateTopics,
        Self::DeleteTopics,
        Self::FindCoordinator,
        Self::ConsumerGroupHeartbeat,
        Self::OffsetCommit,
        Self::OffsetFetch,
        Self::ListGroups,
        Self::DescribeGroups,
    ];

    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.code() == code)
    }

    /// The versions of this API that this build encodes and decodes.
    pub fn versions(self) -> VersionRange {
        match self {
            // Version 1 adds each partition's `current_leader_epoch`.
            Self::Produce => VersionRange { min: 0, max: 1 },
            _ => VersionRange { min: 0, max: 0 },
        }
    }

    pub fn supports(self, version: i16) -> bool {
        let range = self.versions();
        (range.min..=range.max).contains(&version)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Fetch => "fetch",
            Self::ListOffsets => "list_offsets",
            Self::Metadata => "metadata",
            Self::ApiVersions => "api_versions",
            Self::CreateTopics => "create_topics",
            Self::DeleteTopics => "delete_topics",
            Self::FindCoordinator => "find_coordinator",
            Self::ConsumerGroupHeartbeat => "consumer_group_heartbeat",
            Self::OffsetCommit => "offset_commit",
            Self::OffsetFetch => "offset_fetch",
            Self::ListGroups => "list_groups",
            Self::DescribeGroups => "describe_groups",
        }
    }
}
