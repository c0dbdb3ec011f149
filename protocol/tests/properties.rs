//! Property tests: arbitrary values round-trip, arbitrary batches iterate back, and
//! arbitrary or damaged bytes never make a decoder panic or allocate beyond limits.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use fjord_protocol::api::ApiKey;
use fjord_protocol::batch::{BatchBuilder, HeaderInput, RecordBatches, RecordInput};
use fjord_protocol::frame::{self, Decoded, RequestHeader, ResponseHeader};
use fjord_protocol::limits::{
    FRAME_BYTES_MAX, GROUP_ID_BYTES_MAX, GROUP_MEMBERS_MAX, GROUPS_MAX, PARTITIONS_MAX,
    REPLICAS_MAX, TOPIC_NAME_BYTES_MAX, TOPICS_MAX,
};
use fjord_protocol::messages::{
    ApiVersion, ApiVersionsRequest, ApiVersionsResponse, BrokerMetadata, ConfigEntry,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, CreateTopic, CreateTopicResult,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicResult, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup,
    DescribedMember, FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse,
    FetchTopic, FetchTopicResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    ListGroupsRequest, ListGroupsResponse, ListOffsetsPartition, ListOffsetsPartitionResponse,
    ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopic, ListOffsetsTopicResponse,
    ListedGroup, Message, MetadataRequest, MetadataResponse, OffsetCommitPartition,
    OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopic,
    OffsetCommitTopicResponse, OffsetFetchPartitionResponse, OffsetFetchRequest,
    OffsetFetchResponse, OffsetFetchTopicResponse, PartitionMetadata, ProducePartition,
    ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopic, ProduceTopicResponse,
    Request, RequestError, TopicMetadata, TopicPartitions,
};
use fjord_protocol::{DecodeError, ErrorCode, RecordBatch, RecordBatchError};
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property: enough to find layout slips, small enough for a debug build.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Failures are reported with their minimal input; no regression files are
        // written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Consumes a decoder's result: these tests only care that it returned.
fn ignore<T>(_value: T) {}

// ----- strategies -------------------------------------------------------------------------

/// A topic name: any Unicode up to 160 bytes, or exactly the 249-byte limit.
fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "(?s).{0,40}",
        1 => "[a-z0-9._-]{249}",
    ]
}

/// A short string of any Unicode characters.
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,24}"
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn non_negative() -> impl Strategy<Value = i32> {
    0..=i32::MAX
}

fn blob() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn few<T: Debug>(element: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(element, 0..4)
}

fn api_versions_response() -> impl Strategy<Value = ApiVersionsResponse> {
    proptest::collection::vec(any::<(i16, i16, i16)>(), 0..12).prop_map(|apis| {
        ApiVersionsResponse {
            apis: apis
                .into_iter()
                .map(|(api_key, min_version, max_version)| ApiVersion {
                    api_key,
                    min_version,
                    max_version,
                })
                .collect(),
        }
    })
}

fn metadata_request() -> impl Strategy<Value = MetadataRequest> {
    proptest::option::of(few(topic_name())).prop_map(|topics| MetadataRequest { topics })
}

fn metadata_response() -> impl Strategy<Value = MetadataResponse> {
    let broker =
        (any::<i32>(), text(), any::<i32>()).prop_map(|(node_id, host, port)| BrokerMetadata {
            node_id,
            host,
            port,
        });
    let partition = (
        error_code(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        few(any::<i32>()),
        few(any::<i32>()),
    )
        .prop_map(
            |(error_code, partition, leader, leader_epoch, replicas, isr)| PartitionMetadata {
                error_code,
                partition,
                leader,
                leader_epoch,
                replicas,
                isr,
            },
        );
    let topic = (
        error_code(),
        topic_name(),
        any::<[u8; 16]>(),
        any::<bool>(),
        few(partition),
    )
        .prop_map(
            |(error_code, name, topic_id, is_internal, partitions)| TopicMetadata {
                error_code,
                name,
                topic_id,
                is_internal,
                partitions,
            },
        );
    (text(), any::<i32>(), few(broker), few(topic)).prop_map(
        |(cluster_id, controller_id, brokers, topics)| MetadataResponse {
            cluster_id,
            controller_id,
            brokers,
            topics,
        },
    )
}

fn create_topics_request() -> impl Strategy<Value = CreateTopicsRequest> {
    let config = (text(), text()).prop_map(|(key, value)| ConfigEntry { key, value });
    let topic = (topic_name(), any::<i32>(), any::<i16>(), few(config)).prop_map(
        |(name, partitions, replication_factor, configs)| CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
        },
    );
    (few(topic), non_negative(), any::<bool>()).prop_map(|(topics, timeout_ms, validate_only)| {
        CreateTopicsRequest {
            topics,
            timeout_ms,
            validate_only,
        }
    })
}

fn create_topics_response() -> impl Strategy<Value = CreateTopicsResponse> {
    let result = (
        topic_name(),
        any::<[u8; 16]>(),
        error_code(),
        proptest::option::of(text()),
    )
        .prop_map(
            |(name, topic_id, error_code, error_message)| CreateTopicResult {
                name,
                topic_id,
                error_code,
                error_message,
            },
        );
    few(result).prop_map(|topics| CreateTopicsResponse { topics })
}

fn delete_topics_request() -> impl Strategy<Value = DeleteTopicsRequest> {
    (few(topic_name()), non_negative())
        .prop_map(|(names, timeout_ms)| DeleteTopicsRequest { names, timeout_ms })
}

fn delete_topics_response() -> impl Strategy<Value = DeleteTopicsResponse> {
    let result = (topic_name(), error_code(), proptest::option::of(text())).prop_map(
        |(name, error_code, error_message)| DeleteTopicResult {
            name,
            error_code,
            error_message,
        },
    );
    few(result).prop_map(|topics| DeleteTopicsResponse { topics })
}

fn produce_request() -> impl Strategy<Value = ProduceRequest> {
    // Version 0 (what `Message::encode` speaks) has no leader epoch: it reads as -1.
    let partition = (any::<i32>(), blob()).prop_map(|(partition, records)| ProducePartition {
        partition,
        current_leader_epoch: -1,
        records,
    });
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| ProduceTopic { name, partitions });
    (any::<i16>(), non_negative(), few(topic)).prop_map(|(acks, timeout_ms, topics)| {
        ProduceRequest {
            acks,
            timeout_ms,
            topics,
        }
    })
}

fn produce_response() -> impl Strategy<Value = ProduceResponse> {
    let partition = (
        any::<i32>(),
        error_code(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        proptest::option::of(text()),
    )
        .prop_map(
            |(
                partition,
                error_code,
                base_offset,
                log_append_time_ms,
                log_start_offset,
                error_message,
            )| {
                ProducePartitionResponse {
                    partition,
                    error_code,
                    base_offset,
                    log_append_time_ms,
                    log_start_offset,
                    error_message,
                }
            },
        );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| ProduceTopicResponse { name, partitions });
    few(topic).prop_map(|topics| ProduceResponse { topics })
}

fn fetch_request() -> impl Strategy<Value = FetchRequest> {
    let partition = (any::<i32>(), any::<i32>(), any::<i64>(), non_negative()).prop_map(
        |(partition, current_leader_epoch, fetch_offset, partition_max_bytes)| FetchPartition {
            partition,
            current_leader_epoch,
            fetch_offset,
            partition_max_bytes,
        },
    );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| FetchTopic { name, partitions });
    (
        any::<i32>(),
        non_negative(),
        non_negative(),
        non_negative(),
        few(topic),
    )
        .prop_map(
            |(replica_id, max_wait_ms, min_bytes, max_bytes, topics)| FetchRequest {
                replica_id,
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics,
            },
        )
}

fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let partition = (
        any::<i32>(),
        error_code(),
        any::<i64>(),
        any::<i64>(),
        blob(),
    )
        .prop_map(
            |(partition, error_code, high_watermark, log_start_offset, records)| {
                FetchPartitionResponse {
                    partition,
                    error_code,
                    high_watermark,
                    log_start_offset,
                    records,
                }
            },
        );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| FetchTopicResponse { name, partitions });
    few(topic).prop_map(|topics| FetchResponse { topics })
}

fn list_offsets_request() -> impl Strategy<Value = ListOffsetsRequest> {
    let partition = (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(
        |(partition, current_leader_epoch, timestamp)| ListOffsetsPartition {
            partition,
            current_leader_epoch,
            timestamp,
        },
    );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| ListOffsetsTopic { name, partitions });
    (any::<i32>(), few(topic))
        .prop_map(|(replica_id, topics)| ListOffsetsRequest { replica_id, topics })
}

fn list_offsets_response() -> impl Strategy<Value = ListOffsetsResponse> {
    let partition = (
        any::<i32>(),
        error_code(),
        any::<i64>(),
        any::<i64>(),
        any::<i32>(),
    )
        .prop_map(|(partition, error_code, timestamp, offset, leader_epoch)| {
            ListOffsetsPartitionResponse {
                partition,
                error_code,
                timestamp,
                offset,
                leader_epoch,
            }
        });
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| ListOffsetsTopicResponse { name, partitions });
    few(topic).prop_map(|topics| ListOffsetsResponse { topics })
}

/// A group or member id: any Unicode up to 160 bytes, or exactly the 255-byte limit.
fn group_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "(?s).{0,40}",
        1 => "[a-z0-9._-]{255}",
    ]
}

fn topic_partitions() -> impl Strategy<Value = TopicPartitions> {
    (topic_name(), few(any::<i32>()))
        .prop_map(|(topic, partitions)| TopicPartitions { topic, partitions })
}

fn find_coordinator_request() -> impl Strategy<Value = FindCoordinatorRequest> {
    group_id().prop_map(|group_id| FindCoordinatorRequest { group_id })
}

fn find_coordinator_response() -> impl Strategy<Value = FindCoordinatorResponse> {
    (
        error_code(),
        proptest::option::of(text()),
        any::<i32>(),
        text(),
        any::<i32>(),
    )
        .prop_map(
            |(error_code, error_message, node_id, host, port)| FindCoordinatorResponse {
                error_code,
                error_message,
                node_id,
                host,
                port,
            },
        )
}

fn heartbeat_request() -> impl Strategy<Value = ConsumerGroupHeartbeatRequest> {
    (
        group_id(),
        group_id(),
        any::<i32>(),
        non_negative(),
        proptest::option::of(few(topic_name())),
        few(topic_partitions()),
    )
        .prop_map(
            |(
                group_id,
                member_id,
                member_epoch,
                rebalance_timeout_ms,
                subscribed_topic_names,
                owned_partitions,
            )| ConsumerGroupHeartbeatRequest {
                group_id,
                member_id,
                member_epoch,
                rebalance_timeout_ms,
                subscribed_topic_names,
                owned_partitions,
            },
        )
}

fn heartbeat_response() -> impl Strategy<Value = ConsumerGroupHeartbeatResponse> {
    (
        error_code(),
        proptest::option::of(text()),
        group_id(),
        any::<i32>(),
        any::<i32>(),
        few(topic_partitions()),
    )
        .prop_map(
            |(
                error_code,
                error_message,
                member_id,
                member_epoch,
                heartbeat_interval_ms,
                assignment,
            )| {
                ConsumerGroupHeartbeatResponse {
                    error_code,
                    error_message,
                    member_id,
                    member_epoch,
                    heartbeat_interval_ms,
                    assignment,
                }
            },
        )
}

fn offset_commit_request() -> impl Strategy<Value = OffsetCommitRequest> {
    let partition = (any::<i32>(), any::<i64>(), proptest::option::of(text())).prop_map(
        |(partition, committed_offset, committed_metadata)| OffsetCommitPartition {
            partition,
            committed_offset,
            committed_metadata,
        },
    );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| OffsetCommitTopic { name, partitions });
    (group_id(), group_id(), any::<i32>(), few(topic)).prop_map(
        |(group_id, member_id, member_epoch, topics)| OffsetCommitRequest {
            group_id,
            member_id,
            member_epoch,
            topics,
        },
    )
}

fn offset_commit_response() -> impl Strategy<Value = OffsetCommitResponse> {
    let partition = (any::<i32>(), error_code()).prop_map(|(partition, error_code)| {
        OffsetCommitPartitionResponse {
            partition,
            error_code,
        }
    });
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| OffsetCommitTopicResponse { name, partitions });
    few(topic).prop_map(|topics| OffsetCommitResponse { topics })
}

fn offset_fetch_request() -> impl Strategy<Value = OffsetFetchRequest> {
    (group_id(), proptest::option::of(few(topic_partitions())))
        .prop_map(|(group_id, topics)| OffsetFetchRequest { group_id, topics })
}

fn offset_fetch_response() -> impl Strategy<Value = OffsetFetchResponse> {
    let partition = (
        any::<i32>(),
        any::<i64>(),
        proptest::option::of(text()),
        error_code(),
    )
        .prop_map(
            |(partition, committed_offset, committed_metadata, error_code)| {
                OffsetFetchPartitionResponse {
                    partition,
                    committed_offset,
                    committed_metadata,
                    error_code,
                }
            },
        );
    let topic = (topic_name(), few(partition))
        .prop_map(|(name, partitions)| OffsetFetchTopicResponse { name, partitions });
    (error_code(), few(topic))
        .prop_map(|(error_code, topics)| OffsetFetchResponse { error_code, topics })
}

/// A group state name within `GROUP_STATE_BYTES_MAX` (16 characters are at most 64 bytes).
fn group_state() -> impl Strategy<Value = String> {
    "(?s).{0,16}"
}

fn list_groups_request() -> impl Strategy<Value = ListGroupsRequest> {
    few(group_state()).prop_map(|states_filter| ListGroupsRequest { states_filter })
}

fn list_groups_response() -> impl Strategy<Value = ListGroupsResponse> {
    let group = (group_id(), group_state(), any::<i32>()).prop_map(
        |(group_id, group_state, member_count)| ListedGroup {
            group_id,
            group_state,
            member_count,
        },
    );
    (error_code(), few(group))
        .prop_map(|(error_code, groups)| ListGroupsResponse { error_code, groups })
}

fn describe_groups_request() -> impl Strategy<Value = DescribeGroupsRequest> {
    few(group_id()).prop_map(|group_ids| DescribeGroupsRequest { group_ids })
}

fn describe_groups_response() -> impl Strategy<Value = DescribeGroupsResponse> {
    let member = (
        group_id(),
        text(),
        text(),
        any::<i32>(),
        few(topic_name()),
        few(topic_partitions()),
        few(topic_partitions()),
    )
        .prop_map(
            |(
                member_id,
                client_id,
                client_host,
                member_epoch,
                subscribed_topic_names,
                assignment,
                target_assignment,
            )| DescribedMember {
                member_id,
                client_id,
                client_host,
                member_epoch,
                subscribed_topic_names,
                assignment,
                target_assignment,
            },
        );
    let group = (
        error_code(),
        group_id(),
        group_state(),
        any::<i32>(),
        any::<i32>(),
        text(),
        few(member),
    )
        .prop_map(
            |(
                error_code,
                group_id,
                group_state,
                group_epoch,
                assignment_epoch,
                assignor_name,
                members,
            )| DescribedGroup {
                error_code,
                group_id,
                group_state,
                group_epoch,
                assignment_epoch,
                assignor_name,
                members,
            },
        );
    few(group).prop_map(|groups| DescribeGroupsResponse { groups })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        produce_request().prop_map(Request::Produce),
        fetch_request().prop_map(Request::Fetch),
        list_offsets_request().prop_map(Request::ListOffsets),
        metadata_request().prop_map(Request::Metadata),
        Just(Request::ApiVersions(ApiVersionsRequest)),
        create_topics_request().prop_map(Request::CreateTopics),
        delete_topics_request().prop_map(Request::DeleteTopics),
        find_coordinator_request().prop_map(Request::FindCoordinator),
        heartbeat_request().prop_map(Request::ConsumerGroupHeartbeat),
        offset_commit_request().prop_map(Request::OffsetCommit),
        offset_fetch_request().prop_map(Request::OffsetFetch),
        list_groups_request().prop_map(Request::ListGroups),
        describe_groups_request().prop_map(Request::DescribeGroups),
    ]
}

/// Any response body, already encoded.
fn encoded_response() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        api_versions_response().prop_map(|value| value.to_bytes()),
        metadata_response().prop_map(|value| value.to_bytes()),
        create_topics_response().prop_map(|value| value.to_bytes()),
        delete_topics_response().prop_map(|value| value.to_bytes()),
        produce_response().prop_map(|value| value.to_bytes()),
        fetch_response().prop_map(|value| value.to_bytes()),
        list_offsets_response().prop_map(|value| value.to_bytes()),
        find_coordinator_response().prop_map(|value| value.to_bytes()),
        heartbeat_response().prop_map(|value| value.to_bytes()),
        offset_commit_response().prop_map(|value| value.to_bytes()),
        offset_fetch_response().prop_map(|value| value.to_bytes()),
        list_groups_response().prop_map(|value| value.to_bytes()),
        describe_groups_response().prop_map(|value| value.to_bytes()),
    ]
}

/// A client id within `CLIENT_ID_BYTES_MAX` (60 characters are at most 240 bytes).
fn client_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("(?s).{0,60}")
}

/// Encodes a whole request frame.
fn request_frame(correlation_id: i32, client_id: Option<String>, request: &Request) -> Bytes {
    let header = RequestHeader {
        api_key: request.api_key().code(),
        api_version: 0,
        correlation_id,
        client_id,
    };
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, &header, |out| request.encode(out));
    out.freeze()
}

/// A record to put in a batch, owned, so that a strategy can generate it.
#[derive(Debug, Clone)]
struct OwnedRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_ms: i64,
}

fn owned_record() -> impl Strategy<Value = OwnedRecord> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    let header = (
        "(?s).{0,8}",
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    );
    let timestamp = prop_oneof![
        any::<i64>(),
        1_600_000_000_000i64..1_800_000_000_000,
        Just(-1i64),
    ];
    (bytes(), bytes(), few(header), timestamp).prop_map(|(key, value, headers, timestamp_ms)| {
        OwnedRecord {
            key,
            value,
            headers,
            timestamp_ms,
        }
    })
}

fn owned_records() -> impl Strategy<Value = Vec<OwnedRecord>> {
    proptest::collection::vec(owned_record(), 1..8)
}

/// Builds a batch; also checks that the builder's size predictions hold.
fn build(records: &[OwnedRecord]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for record in records {
        let headers: Vec<HeaderInput<'_>> = record
            .headers
            .iter()
            .map(|(key, value)| HeaderInput {
                key,
                value: value.as_deref(),
            })
            .collect();
        let input = RecordInput {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            timestamp_ms: record.timestamp_ms,
        };
        let before = builder.size_bytes();
        let predicted = builder.record_size_bytes(&input);
        builder.push(&input);
        assert_eq!(
            builder.size_bytes(),
            before + predicted,
            "record_size_bytes"
        );
    }
    assert_eq!(builder.record_count(), records.len());
    builder.finish()
}

fn any_batch() -> impl Strategy<Value = Bytes> {
    owned_records().prop_map(|records| build(&records))
}

/// A damage done to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    /// Overwrites four bytes with a big count or length, to reach the limit checks.
    Stamp(Index, i32),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 1..=u8::MAX).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        1 => (
            any::<Index>(),
            prop_oneof![Just(-1), Just(i32::MAX), Just(0x7fff), Just(1 << 20), any::<i32>()],
        )
            .prop_map(|(at, value)| Mutation::Stamp(at, value)),
    ];
    proptest::collection::vec(one, 1..4)
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            Mutation::Flip(at, mask) => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Mutation::Stamp(at, value) => {
                let at = at.index(bytes.len());
                let end = (at + 4).min(bytes.len());
                bytes[at..end].copy_from_slice(&value.to_be_bytes()[..end - at]);
            }
        }
    }
    bytes
}

// ----- the "never panic" harness -------------------------------------------------------

/// Runs every decoder of the crate over `bytes`. Each may succeed or fail; none may panic.
fn decode_everything(bytes: &[u8]) {
    ignore(frame::decode_frame(bytes));
    let owned = Bytes::copy_from_slice(bytes);
    if let Ok((header, body)) = frame::split_request(owned.clone()) {
        decode_and_reencode(&header, body);
    }
    ignore(frame::split_response(owned.clone()));

    // The body under every API key, a supported and an unsupported version, and an
    // unknown key.
    for api_key in ApiKey::ALL.iter().map(|api| api.code()).chain([-1, 99]) {
        for api_version in [0, 1] {
            let header = RequestHeader {
                api_key,
                api_version,
                correlation_id: 0,
                client_id: None,
            };
            ignore(Request::decode(&header, owned.clone()));
        }
    }
    ignore(ApiVersionsRequest::decode_body(owned.clone()));
    ignore(ApiVersionsResponse::decode_body(owned.clone()));
    ignore(MetadataResponse::decode_body(owned.clone()));
    ignore(CreateTopicsResponse::decode_body(owned.clone()));
    ignore(DeleteTopicsResponse::decode_body(owned.clone()));
    ignore(ProduceResponse::decode_body(owned.clone()));
    ignore(FetchResponse::decode_body(owned.clone()));
    ignore(ListOffsetsResponse::decode_body(owned.clone()));
    ignore(FindCoordinatorResponse::decode_body(owned.clone()));
    ignore(ConsumerGroupHeartbeatResponse::decode_body(owned.clone()));
    ignore(OffsetCommitResponse::decode_body(owned.clone()));
    ignore(OffsetFetchResponse::decode_body(owned.clone()));
    ignore(ListGroupsResponse::decode_body(owned.clone()));
    ignore(DescribeGroupsResponse::decode_body(owned.clone()));
    inspect_batches(owned);
}

/// Whatever request decodes re-encodes to bytes that decode to the same request.
fn decode_and_reencode(header: &RequestHeader, body: Bytes) {
    let Ok(request) = Request::decode(header, body) else {
        return;
    };
    let mut again = BytesMut::new();
    request.encode_version(header.api_version, &mut again);
    assert_eq!(Request::decode(header, again.freeze()), Ok(request));
}

/// Validates and iterates `bytes` as one batch and as a sequence of batches, and checks
/// that a batch that validates also iterates without error.
fn inspect_batches(bytes: Bytes) {
    if let Ok(batch) = RecordBatch::new(bytes.clone()) {
        inspect_batch(&batch);
    }
    for batch in RecordBatches::new(bytes).take(64).flatten() {
        inspect_batch(&batch);
    }
}

fn inspect_batch(batch: &RecordBatch) {
    let valid = batch.validate().is_ok();
    ignore((
        batch.last_offset(),
        batch.next_offset(),
        batch.timestamp_type(),
    ));
    let mut count = 0usize;
    let mut failed = false;
    for record in batch.records() {
        count += 1;
        failed |= record.is_err();
    }
    if valid {
        assert!(!failed, "a batch that validates failed to iterate");
        assert_eq!(count, batch.record_count() as usize);
    }
}

// ----- round trips ----------------------------------------------------------------------

fn round_trip<M: Message + PartialEq + Debug>(value: &M) -> Result<(), TestCaseError> {
    let bytes = value.to_bytes();
    let decoded = M::decode_body(bytes.clone())
        .map_err(|error| TestCaseError::fail(format!("decoding failed: {error}")))?;
    prop_assert_eq!(&decoded, value);
    prop_assert_eq!(decoded.to_bytes(), bytes);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn api_versions_response_round_trips(value in api_versions_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn metadata_request_round_trips(value in metadata_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn metadata_response_round_trips(value in metadata_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn create_topics_request_round_trips(value in create_topics_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn create_topics_response_round_trips(value in create_topics_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn delete_topics_request_round_trips(value in delete_topics_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn delete_topics_response_round_trips(value in delete_topics_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn produce_request_round_trips(value in produce_request()) {
        round_trip(&value)?;
    }

    /// Version 1 carries each partition's leader epoch; version 0 drops it.
    #[test]
    fn produce_request_versions_round_trip(
        value in produce_request(),
        epochs in proptest::collection::vec(any::<i32>(), 0..64),
    ) {
        let mut value = value;
        let mut epochs = epochs.into_iter().cycle();
        for partition in value.topics.iter_mut().flat_map(|topic| topic.partitions.iter_mut()) {
            partition.current_leader_epoch = epochs.next().unwrap_or(7);
        }
        let mut v1 = BytesMut::new();
        value.encode_version(1, &mut v1);
        prop_assert_eq!(&ProduceRequest::decode_body_version(v1.freeze(), 1).unwrap(), &value);
        let mut v0 = BytesMut::new();
        value.encode_version(0, &mut v0);
        let decoded = ProduceRequest::decode_body_version(v0.freeze(), 0).unwrap();
        prop_assert!(decoded
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .all(|partition| partition.current_leader_epoch == -1));
    }

    #[test]
    fn produce_response_round_trips(value in produce_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn fetch_request_round_trips(value in fetch_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn fetch_response_round_trips(value in fetch_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn list_offsets_request_round_trips(value in list_offsets_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn list_offsets_response_round_trips(value in list_offsets_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn find_coordinator_request_round_trips(value in find_coordinator_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn find_coordinator_response_round_trips(value in find_coordinator_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn consumer_group_heartbeat_request_round_trips(value in heartbeat_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn consumer_group_heartbeat_response_round_trips(value in heartbeat_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn offset_commit_request_round_trips(value in offset_commit_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn offset_commit_response_round_trips(value in offset_commit_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn offset_fetch_request_round_trips(value in offset_fetch_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn offset_fetch_response_round_trips(value in offset_fetch_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn list_groups_request_round_trips(value in list_groups_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn list_groups_response_round_trips(value in list_groups_response()) {
        round_trip(&value)?;
    }

    #[test]
    fn describe_groups_request_round_trips(value in describe_groups_request()) {
        round_trip(&value)?;
    }

    #[test]
    fn describe_groups_response_round_trips(value in describe_groups_response()) {
        round_trip(&value)?;
    }

    /// A whole request frame: found by `decode_frame`, split, and dispatched back to the
    /// same request, even when more bytes follow it in the buffer.
    #[test]
    fn request_frames_round_trip(
        request in request(),
        correlation_id in any::<i32>(),
        client_id in client_id(),
        next in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let frame_bytes = request_frame(correlation_id, client_id.clone(), &request);
        let mut buffer = frame_bytes.to_vec();
        buffer.extend_from_slice(&next);
        prop_assert_eq!(
            frame::decode_frame(&buffer),
            Ok(Decoded::Complete { value: (), consumed: frame_bytes.len() })
        );
        prop_assert_eq!(frame::decode_frame(&buffer[..frame_bytes.len() - 1]), Ok(Decoded::Incomplete));
        let (header, body) = frame::split_request(frame_bytes).unwrap();
        prop_assert_eq!(header.correlation_id, correlation_id);
        prop_assert_eq!(&header.client_id, &client_id);
        prop_assert_eq!(Request::decode(&header, body), Ok(request));
    }

    /// A response frame carries its body only when the header has no error.
    #[test]
    fn response_frames_round_trip(
        body in encoded_response(),
        correlation_id in any::<i32>(),
        error_code in error_code(),
    ) {
        let header = ResponseHeader { correlation_id, error_code };
        let mut out = BytesMut::new();
        frame::encode_response(&mut out, header, |out| out.extend_from_slice(&body));
        let frame_bytes = out.freeze();
        prop_assert_eq!(
            frame::decode_frame(&frame_bytes),
            Ok(Decoded::Complete { value: (), consumed: frame_bytes.len() })
        );
        let (decoded, decoded_body) = frame::split_response(frame_bytes).unwrap();
        prop_assert_eq!(decoded, header);
        if error_code.is_ok() {
            prop_assert_eq!(decoded_body, body);
        } else {
            prop_assert!(decoded_body.is_empty());
        }
    }

    // ----- batches ------------------------------------------------------------------------

    /// Built batches validate and give back exactly the records they were built from.
    #[test]
    fn batches_iterate_back_to_their_records(records in owned_records()) {
        let batch = RecordBatch::new(build(&records)).unwrap();
        prop_assert_eq!(batch.validate(), Ok(()));
        prop_assert_eq!(batch.record_count() as usize, records.len());
        prop_assert_eq!(batch.last_offset_delta() as usize, records.len() - 1);
        prop_assert_eq!(batch.base_timestamp(), records[0].timestamp_ms);
        // The builder starts its maximum at -1 (Kafka's "no timestamp").
        let max = records.iter().map(|record| record.timestamp_ms).max().unwrap();
        prop_assert_eq!(batch.max_timestamp(), max.max(-1));
        let decoded: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (index, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, index as i64);
            prop_assert_eq!(got.timestamp_ms, want.timestamp_ms);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
            prop_assert_eq!(got.headers.len(), want.headers.len());
            for (header, (key, value)) in got.headers.iter().zip(&want.headers) {
                prop_assert_eq!(&header.key, key);
                prop_assert_eq!(header.value.as_deref(), value.as_deref());
            }
        }
    }

    /// Batches back to back come apart again, each whole.
    #[test]
    fn batches_back_to_back_split_again(batches in proptest::collection::vec(any_batch(), 1..4)) {
        let joined: Vec<u8> = batches.iter().flat_map(|batch| batch.iter().copied()).collect();
        let split: Vec<_> = RecordBatches::new(joined.into()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(split.len(), batches.len());
        for (got, want) in split.iter().zip(&batches) {
            prop_assert_eq!(got.as_bytes(), want);
            prop_assert_eq!(got.validate(), Ok(()));
        }
    }

    // ----- arbitrary and damaged bytes never panic ------------------------------------------

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    /// Arbitrary bytes after a well-formed request header, so that the body decoders see
    /// them rather than a header error.
    #[test]
    fn arbitrary_bodies_never_panic(
        api_key in proptest::sample::select(ApiKey::ALL.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let header = RequestHeader { api_key: api_key.code(), api_version: 0, correlation_id: 1, client_id: None };
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, &header, |out| out.extend_from_slice(&body));
        decode_everything(&out);
    }

    #[test]
    fn damaged_request_frames_never_panic(
        request in request(),
        client_id in client_id(),
        mutations in mutations(),
    ) {
        let frame_bytes = request_frame(1, client_id, &request);
        decode_everything(&mutate(&frame_bytes, &mutations));
    }

    #[test]
    fn damaged_response_bodies_never_panic(body in encoded_response(), mutations in mutations()) {
        decode_everything(&mutate(&body, &mutations));
    }

    #[test]
    fn damaged_batches_never_panic(batch in any_batch(), mutations in mutations()) {
        decode_everything(&mutate(&batch, &mutations));
    }

    /// Damage inside the records with the CRC made to match again, so that validation
    /// walks the damaged records instead of stopping at the CRC.
    #[test]
    fn damaged_records_with_a_matching_crc_never_panic(
        batch in any_batch(),
        mutations in mutations(),
    ) {
        let mut damaged = batch[..61].to_vec();
        damaged.extend(mutate(&batch[61..], &mutations));
        let batch_length = (damaged.len() - 12) as i32;
        damaged[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&damaged[21..]);
        damaged[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = RecordBatch::new(damaged.into()).unwrap();
        inspect_batch(&batch);
    }

    /// Damage to the header fields of a batch, CRC made to match.
    #[test]
    fn damaged_batch_headers_with_a_matching_crc_never_panic(
        batch in any_batch(),
        mutations in mutations(),
    ) {
        let mut damaged = batch.to_vec();
        let header = mutate(&batch[..61], &mutations);
        damaged[..header.len()].copy_from_slice(&header);
        if damaged.len() >= 21 {
            let crc = crc32c::crc32c(&damaged[21..]);
            damaged[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        decode_everything(&damaged);
    }
}

// ----- regressions and limits -----------------------------------------------------------

/// `split_request` and `split_response` take a frame whose length prefix has been
/// checked, but a shorter input must be an error, not a panic.
#[test]
fn splitting_a_frame_shorter_than_its_prefix_is_an_error() {
    for length in 0..4 {
        let short = Bytes::from(vec![0u8; length]);
        assert!(matches!(
            frame::split_request(short.clone()),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            frame::split_response(short),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

/// The base offset comes off the wire (a fetched batch) and is not covered by the CRC:
/// offsets near `i64::MAX` must not overflow when records are read.
#[test]
fn record_offsets_near_the_top_of_i64_do_not_panic() {
    let records = [0, 1].map(|index| OwnedRecord {
        key: None,
        value: Some(vec![index]),
        headers: Vec::new(),
        timestamp_ms: 0,
    });
    let mut bytes = BytesMut::from(&build(&records)[..]);
    fjord_protocol::batch::set_base_offset(&mut bytes, i64::MAX);
    let batch = RecordBatch::new(bytes.freeze()).unwrap();
    assert_eq!(batch.validate(), Ok(()));
    let offsets: Vec<i64> = batch
        .records()
        .map(|record| record.unwrap().offset)
        .collect();
    assert_eq!(offsets, [i64::MAX, i64::MIN]);
    assert_eq!(batch.last_offset(), i64::MIN);
    assert_eq!(batch.next_offset(), i64::MIN + 1);
}

/// Builds a request frame with the given API key and raw body.
fn raw_request(api_key: ApiKey, body: &[u8]) -> (RequestHeader, Bytes) {
    let header = RequestHeader {
        api_key: api_key.code(),
        api_version: 0,
        correlation_id: 1,
        client_id: None,
    };
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, &header, |out| out.extend_from_slice(body));
    frame::split_request(out.freeze()).unwrap()
}

fn malformed(api_key: ApiKey, body: &[u8]) -> DecodeError {
    let (header, body) = raw_request(api_key, body);
    match Request::decode(&header, body) {
        Err(error) => {
            assert_eq!(error.error_code(), ErrorCode::InvalidRequest, "{error:?}");
            let RequestError::Malformed { api, source } = error else {
                unreachable!("INVALID_REQUEST comes only from a malformed body")
            };
            assert_eq!(api, api_key);
            source
        }
        other => panic!("{api_key:?}: expected a malformed request, got {other:?}"),
    }
}

/// Asserts that a count of `i32::MAX` in `field` was refused against `max`.
fn too_large(field: &'static str, max: usize) -> impl Fn(DecodeError) {
    move |error| {
        assert_eq!(
            error,
            DecodeError::TooLarge {
                field,
                value: i64::from(i32::MAX),
                max,
            }
        )
    }
}

/// A count above its limit is `TooLarge`; a count within the limit but larger than the
/// bytes that follow is `Truncated`. Both are refused before anything is reserved, so a
/// short frame can never make the decoder allocate for `i32::MAX` elements.
#[test]
fn huge_counts_are_refused_before_allocating() {
    let huge = i32::MAX.to_be_bytes();
    let name = [0u8, 1, b't'];

    // Top-level topic arrays of every request, declared with i32::MAX elements.
    too_large("topics", TOPICS_MAX)(malformed(ApiKey::Metadata, &huge));
    too_large("topics", TOPICS_MAX)(malformed(ApiKey::CreateTopics, &huge));
    too_large("names", TOPICS_MAX)(malformed(ApiKey::DeleteTopics, &huge));
    let produce_head = [&[0xffu8, 0xff][..], &[0, 0, 0, 0]].concat();
    too_large("topics", TOPICS_MAX)(malformed(
        ApiKey::Produce,
        &[&produce_head[..], &huge].concat(),
    ));
    let fetch_head = [0u8; 16];
    too_large("topics", TOPICS_MAX)(malformed(ApiKey::Fetch, &[&fetch_head[..], &huge].concat()));
    too_large("topics", TOPICS_MAX)(malformed(
        ApiKey::ListOffsets,
        &[&[0u8; 4][..], &huge].concat(),
    ));

    // Nested partition arrays.
    let one = 1i32.to_be_bytes();
    too_large("partitions", PARTITIONS_MAX)(malformed(
        ApiKey::Produce,
        &[&produce_head[..], &one, &name, &huge].concat(),
    ));
    too_large("partitions", PARTITIONS_MAX)(malformed(
        ApiKey::Fetch,
        &[&fetch_head[..], &one, &name, &huge].concat(),
    ));

    // Within the limit, but the body is far too short for that many elements.
    let many_topics = (TOPICS_MAX as i32).to_be_bytes();
    assert!(matches!(
        malformed(ApiKey::Metadata, &[&many_topics[..], &name].concat()),
        DecodeError::Truncated {
            field: "topics",
            ..
        }
    ));
    let many_partitions = (PARTITIONS_MAX as i32).to_be_bytes();
    assert!(matches!(
        malformed(
            ApiKey::Produce,
            &[&produce_head[..], &one, &name, &many_partitions].concat()
        ),
        DecodeError::Truncated {
            field: "partitions",
            ..
        }
    ));

    // A records length above FRAME_BYTES_MAX, and one below it with a short body.
    let partition_head = [&produce_head[..], &one, &name, &one, &[0, 0, 0, 0]].concat();
    assert_eq!(
        malformed(ApiKey::Produce, &[&partition_head[..], &huge].concat()),
        DecodeError::TooLarge {
            field: "records",
            value: i64::from(i32::MAX),
            max: FRAME_BYTES_MAX,
        }
    );
    assert!(matches!(
        malformed(
            ApiKey::Produce,
            &[&partition_head[..], &(1i32 << 24).to_be_bytes()].concat()
        ),
        DecodeError::Truncated {
            field: "records",
            ..
        }
    ));

    // Group requests: the arrays after the group id (and member id and epoch).
    let group = [0u8, 1, b'g'];
    too_large("topics", TOPICS_MAX)(malformed(
        ApiKey::OffsetFetch,
        &[&group[..], &huge].concat(),
    ));
    too_large("topics", TOPICS_MAX)(malformed(
        ApiKey::OffsetCommit,
        &[&group[..], &[0, 0], &[0, 0, 0, 1], &huge].concat(),
    ));
    let heartbeat_head = [&group[..], &[0, 0], &[0, 0, 0, 0], &[0, 0, 0x75, 0x30]].concat();
    too_large("subscribed_topic_names", TOPICS_MAX)(malformed(
        ApiKey::ConsumerGroupHeartbeat,
        &[&heartbeat_head[..], &huge].concat(),
    ));
    too_large("owned_partitions", TOPICS_MAX)(malformed(
        ApiKey::ConsumerGroupHeartbeat,
        &[&heartbeat_head[..], &[0xff; 4], &huge].concat(),
    ));
    too_large("partitions", PARTITIONS_MAX)(malformed(
        ApiKey::ConsumerGroupHeartbeat,
        &[&heartbeat_head[..], &[0xff; 4], &one, &name, &huge].concat(),
    ));
    too_large("group_ids", GROUPS_MAX)(malformed(ApiKey::DescribeGroups, &huge));
    too_large("states_filter", GROUPS_MAX)(malformed(ApiKey::ListGroups, &huge));
    let long_group = (GROUP_ID_BYTES_MAX as i16 + 1).to_be_bytes();
    assert!(matches!(
        malformed(
            ApiKey::FindCoordinator,
            &[&long_group[..], &[b'g'; GROUP_ID_BYTES_MAX + 1]].concat()
        ),
        DecodeError::TooLarge {
            field: "group_id",
            value: 256,
            max: 255
        }
    ));

    // Topic names above 249 bytes.
    let long_name = (TOPIC_NAME_BYTES_MAX as i16 + 1).to_be_bytes();
    assert!(matches!(
        malformed(
            ApiKey::DeleteTopics,
            &[&one[..], &long_name, &[b'x'; 250]].concat()
        ),
        DecodeError::TooLarge {
            field: "name",
            value: 250,
            max: 249
        }
    ));
}

/// The same checks in the responses a client decodes.
#[test]
fn huge_counts_in_responses_are_refused() {
    let huge = i32::MAX.to_be_bytes();
    let is_too_large = |result: Result<(), DecodeError>| {
        assert!(
            matches!(result, Err(DecodeError::TooLarge { value, .. }) if value == i64::from(i32::MAX)),
            "{result:?}"
        )
    };
    let body = || Bytes::copy_from_slice(&huge);
    is_too_large(ApiVersionsResponse::decode_body(body()).map(ignore));
    is_too_large(CreateTopicsResponse::decode_body(body()).map(ignore));
    is_too_large(DeleteTopicsResponse::decode_body(body()).map(ignore));
    is_too_large(ProduceResponse::decode_body(body()).map(ignore));
    is_too_large(FetchResponse::decode_body(body()).map(ignore));
    is_too_large(ListOffsetsResponse::decode_body(body()).map(ignore));
    is_too_large(OffsetCommitResponse::decode_body(body()).map(ignore));
    is_too_large(DescribeGroupsResponse::decode_body(body()).map(ignore));
    // Error code NONE, then i32::MAX entries.
    let after_error = || Bytes::copy_from_slice(&[&[0u8, 0][..], &huge].concat());
    is_too_large(OffsetFetchResponse::decode_body(after_error()).map(ignore));
    is_too_large(ListGroupsResponse::decode_body(after_error()).map(ignore));
    // A heartbeat response whose assignment claims i32::MAX topics.
    let heartbeat = [&[0u8, 0, 0xff, 0xff, 0, 0][..], &[0u8; 8], &huge].concat();
    is_too_large(ConsumerGroupHeartbeatResponse::decode_body(heartbeat.into()).map(ignore));
    // A described group with more members than GROUP_MEMBERS_MAX.
    let mut describe = 1i32.to_be_bytes().to_vec(); // one group
    describe.extend([0, 0, 0, 0, 0, 0]); // error NONE, id "", state ""
    describe.extend([0u8; 8]); // group and assignment epochs
    describe.extend([0, 0]); // assignor ""
    describe.extend(((GROUP_MEMBERS_MAX + 1) as i32).to_be_bytes());
    describe.extend([0u8; 64]);
    assert_eq!(
        DescribeGroupsResponse::decode_body(describe.into()),
        Err(DecodeError::TooLarge {
            field: "members",
            value: GROUP_MEMBERS_MAX as i64 + 1,
            max: GROUP_MEMBERS_MAX,
        })
    );
    // Metadata: empty cluster id, controller 0, then i32::MAX brokers.
    let metadata = [&[0u8, 0, 0, 0, 0, 0][..], &huge].concat();
    is_too_large(MetadataResponse::decode_body(metadata.into()).map(ignore));

    // A replica list above REPLICAS_MAX inside an otherwise plausible partition.
    let mut metadata = vec![0u8, 0, 0, 0, 0, 0]; // cluster id "", controller 0
    metadata.extend(0i32.to_be_bytes()); // no brokers
    metadata.extend(1i32.to_be_bytes()); // one topic
    metadata.extend([0, 0, 0, 1, b't']); // error NONE, name "t"
    metadata.extend([0u8; 17]); // topic id, not internal
    metadata.extend(1i32.to_be_bytes()); // one partition
    metadata.extend([0u8; 14]); // error, partition, leader, epoch
    metadata.extend(((REPLICAS_MAX + 1) as i32).to_be_bytes());
    metadata.extend([0u8; 64]);
    assert_eq!(
        MetadataResponse::decode_body(metadata.into()),
        Err(DecodeError::TooLarge {
            field: "replicas",
            value: REPLICAS_MAX as i64 + 1,
            max: REPLICAS_MAX,
        })
    );
}

/// A batch that claims i32::MAX records (or a record with 10,000 headers) in a few
/// bytes is refused without reserving space for them, and iteration stops at the first
/// error.
#[test]
fn huge_counts_in_batches_are_refused() {
    let records = [OwnedRecord {
        key: None,
        value: None,
        headers: Vec::new(),
        timestamp_ms: 0,
    }];
    let mut bytes = build(&records).to_vec();
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    bytes[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let batch = RecordBatch::new(bytes.into()).unwrap();
    assert_eq!(
        batch.validate(),
        Err(RecordBatchError::InvalidRecordCount(i32::MAX))
    );
    let results: Vec<_> = batch.records().collect();
    assert_eq!(results.len(), 2, "one record, then one error, then the end");
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(RecordBatchError::InvalidRecord { index: 1, .. })
    ));

    // A record that declares 10,000 headers but holds none.
    let mut bytes = build(&records).to_vec();
    // The record is `length attributes ts_delta offset_delta key value header_count`:
    // 0c 00 00 00 01 01 00; make the header count 10,000 (zig-zag 20,000 = a0 9c 01)
    // and the length match.
    assert_eq!(&bytes[61..], [0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00]);
    bytes.truncate(61);
    bytes.extend([0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0xa0, 0x9c, 0x01]);
    let batch_length = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let batch = RecordBatch::new(bytes.into()).unwrap();
    assert!(matches!(
        batch.validate(),
        Err(RecordBatchError::InvalidRecord { index: 0, .. })
    ));
    assert!(batch.records().next().unwrap().is_err());
}
