//! Request and response bodies, one module per API.
//!
//! Every body implements [`Message`]: `encode` appends to a caller's buffer, `decode`
//! reads from a [`Reader`] over a complete frame body. [`Request`] dispatches on the
//! header's API key and version.

mod api_versions;
mod consumer_group_heartbeat;
mod describe_groups;
mod fetch;
mod find_coordinator;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod topic_partitions;
mod topics;

pub use api_versions::{ApiVersion, ApiVersionsRequest, ApiVersionsResponse};
pub use consumer_group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, JOIN_MEMBER_EPOCH,
    LEAVE_MEMBER_EPOCH,
};
pub use describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedMember,
};
pub use fetch::{
    CONSUMER_REPLICA_ID, FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse,
    FetchTopic, FetchTopicResponse,
};
pub use find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
pub use list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
pub use list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopic, ListOffsetsTopicResponse, OffsetSpec,
};
pub use metadata::{
    BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};
pub use offset_commit::{
    ADMIN_MEMBER_EPOCH, OffsetCommitPartition, OffsetCommitPartitionResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetCommitTopic, OffsetCommitTopicResponse,
};
pub use offset_fetch::{
    OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopicResponse,
};
pub use produce::{
    Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopic, ProduceTopicResponse,
};
pub use topic_partitions::TopicPartitions;
pub use topics::{
    ConfigEntry, CreateTopic, CreateTopicResult, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
};

use bytes::{Bytes, BytesMut};

use crate::api::ApiKey;
use crate::error::ErrorCode;
use crate::frame::RequestHeader;
use crate::wire::{DecodeError, Reader};

/// A message body with its wire encoding.
pub trait Message: Sized {
    fn encode(&self, out: &mut BytesMut);
    fn decode(reader: &mut Reader) -> Result<Self, DecodeError>;

    /// Encodes the body as `version` of its API has it. A message whose API has one
    /// version encodes it whatever is asked.
    fn encode_version(&self, _version: i16, out: &mut BytesMut) {
        self.encode(out);
    }

    /// Decodes a body of `version` of its API (see [`Message::encode_version`]).
    fn decode_version(reader: &mut Reader, _version: i16) -> Result<Self, DecodeError> {
        Self::decode(reader)
    }

    /// Decodes a whole body of `version`; bytes left over are an error.
    fn decode_body_version(body: Bytes, version: i16) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let message = Self::decode_version(&mut reader, version)?;
        reader.finish()?;
        Ok(message)
    }

    /// Decodes a whole body; bytes left over are an error.
    fn decode_body(body: Bytes) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(body);
        let message = Self::decode(&mut reader)?;
        reader.finish()?;
        Ok(message)
    }

    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Any request this build understands.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    ApiVersions(ApiVersionsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    FindCoordinator(FindCoordinatorRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
}

/// Why a request frame could not become a [`Request`]; each maps to the error code the
/// response header carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {api:?} request: {source}")]
    Malformed { api: ApiKey, source: DecodeError },
}

impl RequestError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnknownApiKey(_) => ErrorCode::UnsupportedApiKey,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::Malformed { .. } => ErrorCode::InvalidRequest,
        }
    }
}

impl Request {
    /// Decodes the body of a request whose header has been read.
    pub fn decode(header: &RequestHeader, body: Bytes) -> Result<Request, RequestError> {
        let api =
            ApiKey::from_code(header.api_key).ok_or(RequestError::UnknownApiKey(header.api_key))?;
        // ApiVersions is answered whatever version is asked, so that a client can learn
        // the ranges before it knows which version to speak.
        if api != ApiKey::ApiVersions && !api.supports(header.api_version) {
            return Err(RequestError::UnsupportedVersion {
                api,
                version: header.api_version,
            });
        }
        let malformed = |source| RequestError::Malformed { api, source };
        Ok(match api {
            ApiKey::Produce => Self::Produce(
                ProduceRequest::decode_body_version(body, header.api_version).map_err(malformed)?,
            ),
            ApiKey::Fetch => Self::Fetch(FetchRequest::decode_body(body).map_err(malformed)?),
            ApiKey::ListOffsets => {
                Self::ListOffsets(ListOffsetsRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::Metadata => {
                Self::Metadata(MetadataRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::ApiVersions => Self::ApiVersions(ApiVersionsRequest),
            ApiKey::CreateTopics => {
                Self::CreateTopics(CreateTopicsRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::DeleteTopics => {
                Self::DeleteTopics(DeleteTopicsRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::FindCoordinator => {
                Self::FindCoordinator(FindCoordinatorRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::ConsumerGroupHeartbeat => Self::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::decode_body(body).map_err(malformed)?,
            ),
            ApiKey::OffsetCommit => {
                Self::OffsetCommit(OffsetCommitRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::OffsetFetch => {
                Self::OffsetFetch(OffsetFetchRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::ListGroups => {
                Self::ListGroups(ListGroupsRequest::decode_body(body).map_err(malformed)?)
            }
            ApiKey::DescribeGroups => {
                Self::DescribeGroups(DescribeGroupsRequest::decode_body(body).map_err(malformed)?)
            }
        })
    }

    pub fn api_key(&self) -> ApiKey {
        match self {
            Self::Produce(_) => ApiKey::Produce,
            Self::Fetch(_) => ApiKey::Fetch,
            Self::ListOffsets(_) => ApiKey::ListOffsets,
            Self::Metadata(_) => ApiKey::Metadata,
            Self::ApiVersions(_) => ApiKey::ApiVersions,
            Self::CreateTopics(_) => ApiKey::CreateTopics,
            Self::DeleteTopics(_) => ApiKey::DeleteTopics,
            Self::FindCoordinator(_) => ApiKey::FindCoordinator,
            Self::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            Self::OffsetCommit(_) => ApiKey::OffsetCommit,
            Self::OffsetFetch(_) => ApiKey::OffsetFetch,
            Self::ListGroups(_) => ApiKey::ListGroups,
            Self::DescribeGroups(_) => ApiKey::DescribeGroups,
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_version(0, out);
    }

    /// Encodes the body as `version` of its API has it.
    pub fn encode_version(&self, version: i16, out: &mut BytesMut) {
        match self {
            Self::Produce(request) => request.encode_version(version, out),
            Self::Fetch(request) => request.encode(out),
            Self::ListOffsets(request) => request.encode(out),
            Self::Metadata(request) => request.encode(out),
            Self::ApiVersions(request) => request.encode(out),
            Self::CreateTopics(request) => request.encode(out),
            Self::DeleteTopics(request) => request.encode(out),
            Self::FindCoordinator(request) => request.encode(out),
            Self::ConsumerGroupHeartbeat(request) => request.encode(out),
            Self::OffsetCommit(request) => request.encode(out),
            Self::OffsetFetch(request) => request.encode(out),
            Self::ListGroups(request) => request.encode(out),
            Self::DescribeGroups(request) => request.encode(out),
        }
    }
}
