//! The stable wire error codes.
//!
//! These numbers are part of the protocol and never change meaning. Where Kafka has the
//! same condition, Fjord uses Kafka's number, so that operators can read them with the
//! knowledge they already have and a Kafka-compatible listener can pass them through.
//! Internal error types of the broker and client are converted to these at the edge.

/// An error code carried in responses (request level and per partition).
#[repr(i16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The server failed in a way it could not classify; see its log.
    UnknownServerError = -1,
    None = 0,
    /// The requested offset is outside the range of the partition's log.
    OffsetOutOfRange = 1,
    /// A record batch failed its CRC or structural checks.
    CorruptMessage = 2,
    /// The topic or partition does not exist on this broker.
    UnknownTopicOrPartition = 3,
    /// A fetch size is negative or otherwise unusable.
    InvalidFetchSize = 4,
    /// The partition has no leader right now (for example during an election).
    LeaderNotAvailable = 5,
    /// This broker is not the leader (or follower) of the partition.
    NotLeaderOrFollower = 6,
    /// The request did not complete within its timeout.
    RequestTimedOut = 7,
    /// A record batch is larger than the topic's `max_message_bytes`.
    MessageTooLarge = 10,
    /// The API key is not one this broker knows.
    UnsupportedApiKey = 11,
    /// The metadata string of a committed offset exceeds `OFFSET_METADATA_BYTES_MAX`.
    OffsetMetadataTooLarge = 12,
    /// The group coordinator is not available (its offsets partition has no leader, or
    /// is still being loaded).
    CoordinatorNotAvailable = 15,
    /// This broker is not the coordinator of the group; find the coordinator again.
    NotCoordinator = 16,
    /// The topic name is invalid (characters, length) or the topic is internal.
    InvalidTopic = 17,
    /// The records of one partition in a produce request exceed the limit.
    RecordListTooLarge = 18,
    /// Fewer in-sync replicas than `min_insync_replicas`.
    NotEnoughReplicas = 19,
    /// The records were appended and replicated, but the in-sync set had shrunk below
    /// `min_insync_replicas` by then: they are on fewer replicas than asked. A retry
    /// may store them twice.
    NotEnoughReplicasAfterAppend = 20,
    /// `acks` is not -1, 0 or 1.
    InvalidRequiredAcks = 21,
    /// The group id is empty or too long.
    InvalidGroupId = 24,
    /// The member id is not a member of the group (it left, or was removed after its
    /// session timed out); join again with member epoch 0.
    UnknownMemberId = 25,
    /// A timestamp in a batch or a request is invalid.
    InvalidTimestamp = 32,
    /// The API version is outside the range this broker speaks.
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    /// The partition count is invalid (zero, negative or above the limit).
    InvalidPartitions = 37,
    /// The replication factor is invalid or larger than the number of brokers.
    InvalidReplicationFactor = 38,
    /// A topic config key is unknown or its value is invalid.
    InvalidConfig = 40,
    /// The request is malformed: it could not be decoded, or its fields contradict.
    InvalidRequest = 42,
    /// The broker's storage failed (I/O error, full disk); the partition is offline.
    StorageError = 56,
    /// The operation needs a group without members (resetting offsets), and the group
    /// has some.
    NonEmptyGroup = 68,
    /// The group does not exist: it has neither members nor committed offsets.
    GroupIdNotFound = 69,
    /// The request carried a leader epoch older than the partition's.
    FencedLeaderEpoch = 74,
    /// The request carried a leader epoch newer than the broker knows.
    UnknownLeaderEpoch = 75,
    /// The batch uses a compression codec this broker does not support.
    UnsupportedCompressionType = 76,
    /// The group has as many members as the broker's `group_members_max` allows.
    GroupMaxSizeReached = 81,
    /// A record inside a batch is malformed.
    InvalidRecord = 87,
    /// The member epoch is not the member's current one (nor, after a lost response,
    /// the one before it): the member was fenced and must rejoin with epoch 0.
    FencedMemberEpoch = 110,
    /// An offset commit carried an older member epoch than the member's current one;
    /// commit again with the epoch of the latest heartbeat response.
    StaleMemberEpoch = 113,
    /// The broker has too many connections or in-flight requests; retry later.
    BrokerBusy = 1001,
    /// The broker is shutting down; retry against it after restart or elsewhere.
    BrokerShuttingDown = 1002,
    /// An offset commit for a partition that the committing member does not own in the
    /// group's current assignment: it was never assigned to it, or has been released.
    PartitionNotAssigned = 1003,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 41] = [
        Self::UnknownServerError,
        Self::None,
        Self::OffsetOutOfRange,
        Self::CorruptMessage,
        Self::UnknownTopicOrPartition,
        Self::InvalidFetchSize,
        Self::LeaderNotAvailable,
        Self::NotLeaderOrFollower,
        Self::RequestTimedOut,
        Self::MessageTooLarge,
        Self::UnsupportedApiKey,
        Self::OffsetMetadataTooLarge,
        Self::CoordinatorNotAvailable,
        Self::NotCoordinator,
        Self::InvalidTopic,
        Self::RecordListTooLarge,
        Self::NotEnoughReplicas,
        Self::NotEnoughReplicasAfterAppend,
        Self::InvalidRequiredAcks,
        Self::InvalidGroupId,
        Self::UnknownMemberId,
        Self::InvalidTimestamp,
        Self::UnsupportedVersion,
        Self::TopicAlreadyExists,
        Self::InvalidPartitions,
        Self::InvalidReplicationFactor,
        Self::InvalidConfig,
        Self::InvalidRequest,
        Self::StorageError,
        Self::NonEmptyGroup,
        Self::GroupIdNotFound,
        Self::FencedLeaderEpoch,
        Self::UnknownLeaderEpoch,
        Self::UnsupportedCompressionType,
        Self::GroupMaxSizeReached,
        Self::InvalidRecord,
        Self::FencedMemberEpoch,
        Self::StaleMemberEpoch,
        Self::BrokerBusy,
        Self::BrokerShuttingDown,
        Self::PartitionNotAssigned,
    ];

    pub fn code(self) -> i16 {
        self as i16
    }

    /// Converts a code read off the wire. Unknown codes (from a newer peer) map to
    /// [`ErrorCode::UnknownServerError`] so that old clients still fail clearly.
    pub fn from_code(code: i16) -> Self {
        Self::ALL
            .into_iter()
            .find(|known| known.code() == code)
            .unwrap_or(Self::UnknownServerError)
    }

    pub fn is_ok(self) -> bool {
        self == Self::None
    }

    /// Whether the same request may succeed if retried (after refreshing metadata
    /// where the error is about leadership).
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::CorruptMessage
                | Self::UnknownTopicOrPartition
                | Self::LeaderNotAvailable
                | Self::NotLeaderOrFollower
                | Self::RequestTimedOut
                | Self::NotEnoughReplicas
                | Self::NotEnoughReplicasAfterAppend
                | Self::CoordinatorNotAvailable
                | Self::NotCoordinator
                | Self::FencedLeaderEpoch
                | Self::UnknownLeaderEpoch
                | Self::BrokerBusy
                | Self::BrokerShuttingDown
        )
    }

    /// The SCREAMING_SNAKE_CASE name used in logs, the CLI and the HTTP API.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            Self::None => "NONE",
            Self::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
            Self::CorruptMessage => "CORRUPT_MESSAGE",
            Self::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            Self::InvalidFetchSize => "INVALID_FETCH_SIZE",
            Self::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
            Self::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            Self::RequestTimedOut => "REQUEST_TIMED_OUT",
            Self::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Self::UnsupportedApiKey => "UNSUPPORTED_API_KEY",
            Self::OffsetMetadataTooLarge => "OFFSET_METADATA_TOO_LARGE",
            Self::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            Self::NotCoordinator => "NOT_COORDINATOR",
            Self::InvalidTopic => "INVALID_TOPIC",
            Self::RecordListTooLarge => "RECORD_LIST_TOO_LARGE",
            Self::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
            Self::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            Self::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
            Self::InvalidGroupId => "INVALID_GROUP_ID",
            Self::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            Self::InvalidTimestamp => "INVALID_TIMESTAMP",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            Self::InvalidPartitions => "INVALID_PARTITIONS",
            Self::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            Self::InvalidConfig => "INVALID_CONFIG",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::StorageError => "STORAGE_ERROR",
            Self::NonEmptyGroup => "NON_EMPTY_GROUP",
            Self::GroupIdNotFound => "GROUP_ID_NOT_FOUND",
            Self::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            Self::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
            Self::UnsupportedCompressionType => "UNSUPPORTED_COMPRESSION_TYPE",
            Self::InvalidRecord => "INVALID_RECORD",
            Self::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            Self::FencedMemberEpoch => "FENCED_MEMBER_EPOCH",
            Self::StaleMemberEpoch => "STALE_MEMBER_EPOCH",
            Self::BrokerBusy => "BROKER_BUSY",
            Self::BrokerShuttingDown => "BROKER_SHUTTING_DOWN",
            Self::PartitionNotAssigned => "PARTITION_NOT_ASSIGNED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code converts back to itself, and the table has no duplicate numbers.
    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), code);
            assert!(seen.insert(code.code()), "duplicate code {code}");
        }
        assert_eq!(ErrorCode::from_code(12345), ErrorCode::UnknownServerError);
    }
}
