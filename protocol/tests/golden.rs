//! Golden-bytes tests: every worked example of `docs/protocol.md`, byte for byte.
//!
//! Each fixture below is copied verbatim from the doc (the comment above it names the
//! section), annotations included: everything after `#` on a line is a comment, the
//! rest is hex. Each test checks both directions: encoding the typed value gives
//! exactly the fixture, and decoding the fixture gives the typed value back. The
//! fixtures were computed by hand from the layouts, and the batch CRC with an
//! independent CRC-32C implementation, so these tests pin the encoder to the document
//! rather than to itself.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use fjord_protocol::batch::{
    BatchBuilder, Compression, RecordInput, set_base_offset, set_partition_leader_epoch,
};
use fjord_protocol::frame::{self, Decoded, RequestHeader, ResponseHeader};
use fjord_protocol::messages::{
    ApiVersion, ApiVersionsRequest, ApiVersionsResponse, BrokerMetadata, ConfigEntry,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, CreateTopic, CreateTopicResult,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicResult, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup,
    DescribedMember, FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse,
    FetchTopic, FetchTopicResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    JOIN_MEMBER_EPOCH, ListGroupsRequest, ListGroupsResponse, ListOffsetsPartition,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopic,
    ListOffsetsTopicResponse, ListedGroup, Message, MetadataRequest, MetadataResponse,
    OffsetCommitPartition, OffsetCommitPartitionResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetCommitTopic, OffsetCommitTopicResponse,
    OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopicResponse, PartitionMetadata, ProducePartition, ProducePartitionResponse,
    ProduceRequest, ProduceResponse, ProduceTopic, ProduceTopicResponse, Request, TopicMetadata,
    TopicPartitions,
};
use fjord_protocol::{ErrorCode, RecordBatch, RecordBatchError};

/// The whole of `docs/protocol.md`, to check that the fixtures are still copies of it.
const DOC: &str = include_str!("../../docs/protocol.md");

/// Hex digits of a fixture, with `#` comments and whitespace dropped.
fn hex(fixture: &str) -> Bytes {
    let digits: Vec<u8> = fixture
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.bytes())
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    let pairs = digits.chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd number of hex digits");
    pairs
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(pair, 16).expect("hex digit")
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Lowercase hex, so that a mismatch shows as a readable diff.
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Encoding `value` gives the fixture, and decoding the fixture gives `value`.
fn assert_golden<M: Message + PartialEq + Debug>(value: &M, fixture: &str) {
    let expected = hex(fixture);
    assert_eq!(to_hex(&value.to_bytes()), to_hex(&expected), "encoding");
    assert_eq!(
        &M::decode_body(expected).expect("decoding"),
        value,
        "decoding"
    );
}

const TOPIC_ID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// The batch of section 6.6 built with the crate's builder.
fn build_example_batch() -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(&RecordInput {
        key: Some(b"k"),
        value: Some(b"v"),
        headers: &[],
        timestamp_ms: TIMESTAMP_MS,
    });
    builder.finish()
}

/// docs/protocol.md, section 3.4 Worked examples (frames), first example: a Metadata request frame.
const FRAME_METADATA_REQUEST: &str = r#"
00000019              # length = 25
0003                  # api_key = 3 (Metadata)
0000                  # api_version = 0
00000007              # correlation_id = 7
0003 636c69           # client_id = "cli"
00000001              # body: topics count = 1
0006 6f7264657273     #   "orders"
"#;

/// docs/protocol.md, section 3.4 Worked examples (frames), second example; also 5.1 ApiVersions request.
const FRAME_API_VERSIONS_REQUEST: &str = r#"
0000000a              # length = 10
000a                  # api_key = 10 (ApiVersions)
0000                  # api_version = 0
00000001              # correlation_id = 1
ffff                  # client_id = null
"#;

/// docs/protocol.md, section 3.4 Worked examples (frames), third example: a request-level error.
const FRAME_ERROR_RESPONSE: &str = r#"
00000006              # length = 6
00000001              # correlation_id = 1
0023                  # error_code = 35 UNSUPPORTED_VERSION; no body follows
"#;

/// docs/protocol.md, section 3.4 Worked examples (frames), fourth example: a successful response.
const FRAME_DELETE_TOPICS_RESPONSE: &str = r#"
00000016              # length = 22
00000007              # correlation_id = 7
0000                  # error_code = 0 NONE: the body follows
00000001              # body: topics count = 1
0006 6f7264657273     #   name = "orders"
0003                  #   error_code = 3 UNKNOWN_TOPIC_OR_PARTITION
ffff                  #   error_message = null
"#;

/// docs/protocol.md, section 5.1 ApiVersions (key 10), example response body.
const API_VERSIONS_RESPONSE: &str = r#"
0000000d              # apis count = 13
0000 0000 0001        # Produce                 0..1
0001 0000 0000        # Fetch                   0..0
0002 0000 0000        # ListOffsets             0..0
0003 0000 0000        # Metadata                0..0
000a 0000 0000        # ApiVersions             0..0
0014 0000 0000        # CreateTopics            0..0
0015 0000 0000        # DeleteTopics            0..0
0064 0000 0000        # FindCoordinator         0..0
0065 0000 0000        # ConsumerGroupHeartbeat  0..0
0066 0000 0000        # OffsetCommit            0..0
0067 0000 0000        # OffsetFetch             0..0
0068 0000 0000        # ListGroups              0..0
0069 0000 0000        # DescribeGroups          0..0
"#;

/// docs/protocol.md, section 5.2 Metadata (key 3), example request body.
const METADATA_REQUEST: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   "orders"
"#;

/// docs/protocol.md, section 5.2 Metadata (key 3), example response body.
const METADATA_RESPONSE: &str = r#"
0002 666a             # cluster_id = "fj"
00000001              # controller_id = 1
00000001              # brokers count = 1
00000001              #   node_id = 1
0002 6231             #   host = "b1"
00002384              #   port = 9092
00000001              # topics count = 1
0000                  #   error_code = NONE
0006 6f7264657273     #   name = "orders"
00112233445566778899aabbccddeeff  # topic_id
00                    #   is_internal = false
00000001              #   partitions count = 1
0000                  #     error_code = NONE
00000000              #     partition = 0
00000001              #     leader = 1
00000000              #     leader_epoch = 0
00000001 00000001     #     replicas = [1]
00000001 00000001     #     isr = [1]
"#;

/// docs/protocol.md, section 5.3 CreateTopics (key 20), example request body.
const CREATE_TOPICS_REQUEST: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000003              #   partitions = 3
0001                  #   replication_factor = 1
00000001              #   configs count = 1
000c 726574656e74696f6e2e6d73  # key = "retention.ms"
0005 3630303030       #     value = "60000"
00007530              # timeout_ms = 30000
00                    # validate_only = false
"#;

/// docs/protocol.md, section 5.3 CreateTopics (key 20), example response body.
const CREATE_TOPICS_RESPONSE: &str = r#"
00000002              # topics count = 2
0006 6f7264657273     #   name = "orders"
00112233445566778899aabbccddeeff  # topic_id
0000                  #   error_code = NONE
ffff                  #   error_message = null
0004 6c6f6773         #   name = "logs"
00000000000000000000000000000000  # topic_id = zeroes (not created)
0024                  #   error_code = 36 TOPIC_ALREADY_EXISTS
0006 657869737473     #   error_message = "exists"
"#;

/// docs/protocol.md, section 5.4 DeleteTopics (key 21), example request body.
const DELETE_TOPICS_REQUEST: &str = r#"
00000001              # names count = 1
0006 6f7264657273     #   "orders"
00007530              # timeout_ms = 30000
"#;

/// docs/protocol.md, section 5.4 DeleteTopics (key 21), example response body.
const DELETE_TOPICS_RESPONSE: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
0003                  #   error_code = 3 UNKNOWN_TOPIC_OR_PARTITION
ffff                  #   error_message = null
"#;

/// docs/protocol.md, section 5.5 Produce (key 0), example request body.
const PRODUCE_REQUEST: &str = r#"
ffff                  # acks = -1 (all in-sync replicas)
00007530              # timeout_ms = 30000
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
00000046              #     records length = 70
0000000000000000      #       base_offset = 0
0000003a              #       batch_length = 58
ffffffff              #       partition_leader_epoch = -1
02                    #       magic = 2
e99b8dd8              #       crc
0000                  #       attributes
00000000              #       last_offset_delta = 0
0000018bcfe56800      #       base_timestamp = 1700000000000
0000018bcfe56800      #       max_timestamp = 1700000000000
ffffffffffffffff      #       producer_id = -1
ffff                  #       producer_epoch = -1
ffffffff              #       base_sequence = -1
00000001              #       record_count = 1
10 00 00 00 02 6b 02 76 00  # the record
"#;

/// docs/protocol.md, section 5.5 Produce (key 0), example response body.
const PRODUCE_RESPONSE: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
0000                  #     error_code = NONE
0000000000000000      #     base_offset = 0
ffffffffffffffff      #     log_append_time_ms = -1 (create time)
0000000000000000      #     log_start_offset = 0
ffff                  #     error_message = null
"#;

/// docs/protocol.md, section 5.6 Fetch (key 1), example request body.
const FETCH_REQUEST: &str = r#"
ffffffff              # replica_id = -1 (consumer)
000001f4              # max_wait_ms = 500
00000001              # min_bytes = 1
00100000              # max_bytes = 1048576
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
ffffffff              #     current_leader_epoch = -1 (no check)
0000000000000000      #     fetch_offset = 0
00100000              #     partition_max_bytes = 1048576
"#;

/// docs/protocol.md, section 5.6 Fetch (key 1), example response body.
const FETCH_RESPONSE: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
0000                  #     error_code = NONE
0000000000000001      #     high_watermark = 1
0000000000000000      #     log_start_offset = 0
00000046              #     records length = 70
0000000000000000      #       base_offset = 0 (stamped)
0000003a              #       batch_length = 58
00000000              #       partition_leader_epoch = 0 (stamped)
02                    #       magic = 2
e99b8dd8              #       crc (unchanged)
0000                  #       attributes
00000000              #       last_offset_delta = 0
0000018bcfe56800      #       base_timestamp = 1700000000000
0000018bcfe56800      #       max_timestamp = 1700000000000
ffffffffffffffff      #       producer_id = -1
ffff                  #       producer_epoch = -1
ffffffff              #       base_sequence = -1
00000001              #       record_count = 1
10 00 00 00 02 6b 02 76 00  # the record
"#;

/// docs/protocol.md, section 5.7 ListOffsets (key 2), example request body.
const LIST_OFFSETS_REQUEST: &str = r#"
ffffffff              # replica_id = -1 (consumer)
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
ffffffff              #     current_leader_epoch = -1 (no check)
ffffffffffffffff      #     timestamp = -1 (latest)
"#;

/// docs/protocol.md, section 5.7 ListOffsets (key 2), example response body.
const LIST_OFFSETS_RESPONSE: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
0000                  #     error_code = NONE
ffffffffffffffff      #     timestamp = -1
0000000000000001      #     offset = 1
00000000              #     leader_epoch = 0
"#;

/// docs/protocol.md, section 6.6 Record batches, worked example (CRC computed independently).
const RECORD_BATCH: &str = r#"
0000000000000000      # base_offset = 0
0000003a              # batch_length = 58
ffffffff              # partition_leader_epoch = -1
02                    # magic = 2
e99b8dd8              # crc = CRC-32C(bytes 21..70)
0000                  # attributes: no compression, create time
00000000              # last_offset_delta = 0
0000018bcfe56800      # base_timestamp = 1700000000000
0000018bcfe56800      # max_timestamp = 1700000000000
ffffffffffffffff      # producer_id = -1
ffff                  # producer_epoch = -1
ffffffff              # base_sequence = -1
00000001              # record_count = 1
10                    # record length = 8
00                    #   attributes
00                    #   timestamp_delta = 0
00                    #   offset_delta = 0
02 6b                 #   key = "k"
02 76                 #   value = "v"
00                    #   header_count = 0
"#;

/// docs/protocol.md, section 5.9 FindCoordinator (key 100), example request body.
const FIND_COORDINATOR_REQUEST: &str = r#"
0008 7368697070696e67 # group_id = "shipping"
"#;

/// docs/protocol.md, section 5.9 FindCoordinator (key 100), example response body.
const FIND_COORDINATOR_RESPONSE: &str = r#"
0000                  # error_code = NONE
ffff                  # error_message = null
00000001              # node_id = 1
0002 6231             # host = "b1"
00002384              # port = 9092
"#;

/// docs/protocol.md, section 5.10 ConsumerGroupHeartbeat (key 101), example request body.
const HEARTBEAT_REQUEST: &str = r#"
0008 7368697070696e67 # group_id = "shipping"
0000                  # member_id = "" (joining)
00000000              # member_epoch = 0 (join)
00007530              # rebalance_timeout_ms = 30000
00000001              # subscribed_topic_names count = 1
0006 6f7264657273     #   "orders"
00000000              # owned_partitions count = 0
"#;

/// docs/protocol.md, section 5.10 ConsumerGroupHeartbeat (key 101), example response body.
const HEARTBEAT_RESPONSE: &str = r#"
0000                  # error_code = NONE
ffff                  # error_message = null
0002 6d31             # member_id = "m1"
00000003              # member_epoch = 3
00001388              # heartbeat_interval_ms = 5000
00000001              # assignment count = 1
0006 6f7264657273     #   topic = "orders"
00000002              #   partitions count = 2
00000000              #     0
00000002              #     2
"#;

/// docs/protocol.md, section 5.11 OffsetCommit (key 102), example request body.
const OFFSET_COMMIT_REQUEST: &str = r#"
0008 7368697070696e67 # group_id = "shipping"
0002 6d31             # member_id = "m1"
00000003              # member_epoch = 3
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     partition = 0
000000000000002a      #     committed_offset = 42
ffff                  #     committed_metadata = null
"#;

/// docs/protocol.md, section 5.11 OffsetCommit (key 102), example response body.
const OFFSET_COMMIT_RESPONSE: &str = r#"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000002              #   partitions count = 2
00000000 0000         #     partition 0: NONE
00000001 0071         #     partition 1: 113 STALE_MEMBER_EPOCH
"#;

/// docs/protocol.md, section 5.12 OffsetFetch (key 103), example request body.
const OFFSET_FETCH_REQUEST: &str = r#"
0008 7368697070696e67 # group_id = "shipping"
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000001              #   partitions count = 1
00000000              #     0
"#;

/// docs/protocol.md, section 5.12 OffsetFetch (key 103), example response body.
const OFFSET_FETCH_RESPONSE: &str = r#"
0000                  # error_code = NONE
00000001              # topics count = 1
0006 6f7264657273     #   name = "orders"
00000002              #   partitions count = 2
00000000              #     partition = 0
000000000000002a      #     committed_offset = 42
0002 6f6b             #     committed_metadata = "ok"
0000                  #     error_code = NONE
00000001              #     partition = 1
ffffffffffffffff      #     committed_offset = -1 (nothing committed)
ffff                  #     committed_metadata = null
0000                  #     error_code = NONE
"#;

/// docs/protocol.md, section 5.13 ListGroups (key 104), example request body.
const LIST_GROUPS_REQUEST: &str = r#"
00000000              # states_filter count = 0
"#;

/// docs/protocol.md, section 5.13 ListGroups (key 104), example response body.
const LIST_GROUPS_RESPONSE: &str = r#"
0000                  # error_code = NONE
00000001              # groups count = 1
0008 7368697070696e67 #   group_id = "shipping"
0006 537461626c65     #   group_state = "Stable"
00000002              #   member_count = 2
"#;

/// docs/protocol.md, section 5.14 DescribeGroups (key 105), example request body.
const DESCRIBE_GROUPS_REQUEST: &str = r#"
00000001              # group_ids count = 1
0008 7368697070696e67 #   "shipping"
"#;

/// docs/protocol.md, section 5.14 DescribeGroups (key 105), example response body.
const DESCRIBE_GROUPS_RESPONSE: &str = r#"
00000001              # groups count = 1
0000                  #   error_code = NONE
0008 7368697070696e67 #   group_id = "shipping"
0006 537461626c65     #   group_state = "Stable"
00000003              #   group_epoch = 3
00000003              #   assignment_epoch = 3
0007 756e69666f726d   #   assignor_name = "uniform"
00000001              #   members count = 1
0002 6d31             #     member_id = "m1"
0005 666a6f7264       #     client_id = "fjord"
0002 6831             #     client_host = "h1"
00000003              #     member_epoch = 3
00000001              #     subscribed_topic_names count = 1
0006 6f7264657273     #       "orders"
00000001              #     assignment count = 1
0006 6f7264657273     #       topic = "orders"
00000001              #       partitions count = 1
00000000              #         0
00000001              #     target_assignment count = 1
0006 6f7264657273     #       topic = "orders"
00000001              #       partitions count = 1
00000000              #         0
"#;

#[test]
fn fixtures_are_copied_from_the_doc() {
    for fixture in [
        FRAME_METADATA_REQUEST,
        FRAME_API_VERSIONS_REQUEST,
        FRAME_ERROR_RESPONSE,
        FRAME_DELETE_TOPICS_RESPONSE,
        API_VERSIONS_RESPONSE,
        METADATA_REQUEST,
        METADATA_RESPONSE,
        CREATE_TOPICS_REQUEST,
        CREATE_TOPICS_RESPONSE,
        DELETE_TOPICS_REQUEST,
        DELETE_TOPICS_RESPONSE,
        PRODUCE_REQUEST,
        PRODUCE_RESPONSE,
        FETCH_REQUEST,
        FETCH_RESPONSE,
        LIST_OFFSETS_REQUEST,
        LIST_OFFSETS_RESPONSE,
        FIND_COORDINATOR_REQUEST,
        FIND_COORDINATOR_RESPONSE,
        HEARTBEAT_REQUEST,
        HEARTBEAT_RESPONSE,
        OFFSET_COMMIT_REQUEST,
        OFFSET_COMMIT_RESPONSE,
        OFFSET_FETCH_REQUEST,
        OFFSET_FETCH_RESPONSE,
        LIST_GROUPS_REQUEST,
        LIST_GROUPS_RESPONSE,
        DESCRIBE_GROUPS_REQUEST,
        DESCRIBE_GROUPS_RESPONSE,
        RECORD_BATCH,
    ] {
        assert!(
            DOC.contains(fixture),
            "fixture no longer in docs/protocol.md:{fixture}"
        );
    }
}

// ----- frames and headers -----------------------------------------------------------

#[test]
fn request_frame_metadata() {
    let header = RequestHeader {
        api_key: 3,
        api_version: 0,
        correlation_id: 7,
        client_id: Some("cli".to_owned()),
    };
    let body = MetadataRequest {
        topics: Some(vec!["orders".to_owned()]),
    };
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, &header, |out| body.encode(out));
    let expected = hex(FRAME_METADATA_REQUEST);
    assert_eq!(to_hex(&out), to_hex(&expected));

    assert_eq!(
        frame::decode_frame(&expected),
        Ok(Decoded::Complete {
            value: (),
            consumed: 29
        })
    );
    assert_eq!(
        frame::decode_frame(&expected[..28]),
        Ok(Decoded::Incomplete)
    );
    let (decoded_header, decoded_body) = frame::split_request(expected).unwrap();
    assert_eq!(decoded_header, header);
    assert_eq!(
        Request::decode(&decoded_header, decoded_body),
        Ok(Request::Metadata(body))
    );
}

#[test]
fn request_frame_api_versions_with_null_client_id() {
    let header = RequestHeader {
        api_key: 10,
        api_version: 0,
        correlation_id: 1,
        client_id: None,
    };
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, &header, |out| ApiVersionsRequest.encode(out));
    let expected = hex(FRAME_API_VERSIONS_REQUEST);
    assert_eq!(to_hex(&out), to_hex(&expected));

    let (decoded_header, body) = frame::split_request(expected).unwrap();
    assert_eq!(decoded_header, header);
    assert!(body.is_empty());
    assert_eq!(
        Request::decode(&decoded_header, body),
        Ok(Request::ApiVersions(ApiVersionsRequest))
    );
}

#[test]
fn response_frame_with_error_has_no_body() {
    let header = ResponseHeader {
        correlation_id: 1,
        error_code: ErrorCode::UnsupportedVersion,
    };
    let mut out = BytesMut::new();
    // The body writer must not run when the header carries an error.
    frame::encode_response(&mut out, header, |_| panic!("body written after an error"));
    let expected = hex(FRAME_ERROR_RESPONSE);
    assert_eq!(to_hex(&out), to_hex(&expected));

    let (decoded_header, body) = frame::split_response(expected).unwrap();
    assert_eq!(decoded_header, header);
    assert!(body.is_empty());
}

#[test]
fn response_frame_delete_topics() {
    let header = ResponseHeader {
        correlation_id: 7,
        error_code: ErrorCode::None,
    };
    let body = example_delete_topics_response();
    let mut out = BytesMut::new();
    frame::encode_response(&mut out, header, |out| body.encode(out));
    let expected = hex(FRAME_DELETE_TOPICS_RESPONSE);
    assert_eq!(to_hex(&out), to_hex(&expected));

    let (decoded_header, decoded_body) = frame::split_response(expected).unwrap();
    assert_eq!(decoded_header, header);
    assert_eq!(DeleteTopicsResponse::decode_body(decoded_body), Ok(body));
}

// ----- ApiVersions --------------------------------------------------------------------

#[test]
fn api_versions_request() {
    // The body is empty; the frame test above carries the whole request.
    assert_golden(&ApiVersionsRequest, "");
}

#[test]
fn api_versions_response() {
    let entry = |api_key| ApiVersion {
        api_key,
        min_version: 0,
        // Produce version 1 carries the producer's leader epoch.
        max_version: i16::from(api_key == 0),
    };
    let response = ApiVersionsResponse {
        apis: [0, 1, 2, 3, 10, 20, 21, 100, 101, 102, 103, 104, 105]
            .into_iter()
            .map(entry)
            .collect(),
    };
    assert_golden(&response, API_VERSIONS_RESPONSE);
    assert_eq!(
        ApiVersionsResponse::current(),
        response,
        "the doc shows what this build answers: update section 5.1 with the ranges"
    );
}

// ----- Metadata -----------------------------------------------------------------------

#[test]
fn metadata_request() {
    let request = MetadataRequest {
        topics: Some(vec!["orders".to_owned()]),
    };
    assert_golden(&request, METADATA_REQUEST);
    // The doc's aside: every topic is the null array.
    assert_golden(&MetadataRequest { topics: None }, "ffffffff");
}

#[test]
fn metadata_response() {
    let response = MetadataResponse {
        cluster_id: "fj".to_owned(),
        controller_id: 1,
        brokers: vec![BrokerMetadata {
            node_id: 1,
            host: "b1".to_owned(),
            port: 9092,
        }],
        topics: vec![TopicMetadata {
            error_code: ErrorCode::None,
            name: "orders".to_owned(),
            topic_id: TOPIC_ID,
            is_internal: false,
            partitions: vec![PartitionMetadata {
                error_code: ErrorCode::None,
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
            }],
        }],
    };
    assert_golden(&response, METADATA_RESPONSE);
}

// ----- CreateTopics / DeleteTopics ------------------------------------------------------

#[test]
fn create_topics_request() {
    let request = CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: "orders".to_owned(),
            partitions: 3,
            replication_factor: 1,
            configs: vec![ConfigEntry {
                key: "retention.ms".to_owned(),
                value: "60000".to_owned(),
            }],
        }],
        timeout_ms: 30_000,
        validate_only: false,
    };
    assert_golden(&request, CREATE_TOPICS_REQUEST);
}

#[test]
fn create_topics_response() {
    let response = CreateTopicsResponse {
        topics: vec![
            CreateTopicResult {
                name: "orders".to_owned(),
                topic_id: TOPIC_ID,
                error_code: ErrorCode::None,
                error_message: None,
            },
            CreateTopicResult {
                name: "logs".to_owned(),
                topic_id: [0; 16],
                error_code: ErrorCode::TopicAlreadyExists,
                error_message: Some("exists".to_owned()),
            },
        ],
    };
    assert_golden(&response, CREATE_TOPICS_RESPONSE);
}

#[test]
fn delete_topics_request() {
    let request = DeleteTopicsRequest {
        names: vec!["orders".to_owned()],
        timeout_ms: 30_000,
    };
    assert_golden(&request, DELETE_TOPICS_REQUEST);
}

fn example_delete_topics_response() -> DeleteTopicsResponse {
    DeleteTopicsResponse {
        topics: vec![DeleteTopicResult {
            name: "orders".to_owned(),
            error_code: ErrorCode::UnknownTopicOrPartition,
            error_message: None,
        }],
    }
}

#[test]
fn delete_topics_response() {
    assert_golden(&example_delete_topics_response(), DELETE_TOPICS_RESPONSE);
}

// ----- Produce --------------------------------------------------------------------------

#[test]
fn produce_request() {
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: "orders".to_owned(),
            partitions: vec![ProducePartition {
                partition: 0,
                current_leader_epoch: -1,
                records: build_example_batch(),
            }],
        }],
    };
    assert_golden(&request, PRODUCE_REQUEST);
}

#[test]
fn produce_response() {
    let response = ProduceResponse {
        topics: vec![ProduceTopicResponse {
            name: "orders".to_owned(),
            partitions: vec![ProducePartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                base_offset: 0,
                log_append_time_ms: -1,
                log_start_offset: 0,
                error_message: None,
            }],
        }],
    };
    assert_golden(&response, PRODUCE_RESPONSE);
}

// ----- Fetch ----------------------------------------------------------------------------

#[test]
fn fetch_request() {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "orders".to_owned(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    assert_golden(&request, FETCH_REQUEST);
}

#[test]
fn fetch_response() {
    // The broker stamps base offset 0 and leader epoch 0 into the produced batch.
    let mut stored = BytesMut::from(&build_example_batch()[..]);
    set_base_offset(&mut stored, 0);
    set_partition_leader_epoch(&mut stored, 0);
    let response = FetchResponse {
        topics: vec![FetchTopicResponse {
            name: "orders".to_owned(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                high_watermark: 1,
                log_start_offset: 0,
                records: stored.freeze(),
            }],
        }],
    };
    assert_golden(&response, FETCH_RESPONSE);

    // `encode_head` plus the records written in order is the same encoding.
    let mut head = BytesMut::new();
    let mut tails = Vec::new();
    response.encode_head(&mut head, |out, records| {
        tails.push((out.len(), records.clone()));
    });
    let mut spliced = Vec::new();
    let mut written = 0;
    for (at, records) in tails {
        spliced.extend_from_slice(&head[written..at]);
        spliced.extend_from_slice(&records);
        written = at;
    }
    spliced.extend_from_slice(&head[written..]);
    assert_eq!(to_hex(&spliced), to_hex(&hex(FETCH_RESPONSE)));
}

// ----- ListOffsets ----------------------------------------------------------------------

#[test]
fn list_offsets_request() {
    let request = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "orders".to_owned(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                current_leader_epoch: -1,
                timestamp: -1,
            }],
        }],
    };
    assert_golden(&request, LIST_OFFSETS_REQUEST);
}

#[test]
fn list_offsets_response() {
    let response = ListOffsetsResponse {
        topics: vec![ListOffsetsTopicResponse {
            name: "orders".to_owned(),
            partitions: vec![ListOffsetsPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                timestamp: -1,
                offset: 1,
                leader_epoch: 0,
            }],
        }],
    };
    assert_golden(&response, LIST_OFFSETS_RESPONSE);
}

// ----- Consumer groups --------------------------------------------------------------

fn shipping() -> String {
    "shipping".to_owned()
}

fn orders(partitions: &[i32]) -> TopicPartitions {
    TopicPartitions::new("orders", partitions.iter().copied())
}

#[test]
fn find_coordinator_request() {
    assert_golden(
        &FindCoordinatorRequest {
            group_id: shipping(),
        },
        FIND_COORDINATOR_REQUEST,
    );
}

#[test]
fn find_coordinator_response() {
    let response = FindCoordinatorResponse {
        error_code: ErrorCode::None,
        error_message: None,
        node_id: 1,
        host: "b1".to_owned(),
        port: 9092,
    };
    assert_golden(&response, FIND_COORDINATOR_RESPONSE);
}

#[test]
fn consumer_group_heartbeat_request() {
    let request = ConsumerGroupHeartbeatRequest {
        group_id: shipping(),
        member_id: String::new(),
        member_epoch: JOIN_MEMBER_EPOCH,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["orders".to_owned()]),
        owned_partitions: Vec::new(),
    };
    assert_golden(&request, HEARTBEAT_REQUEST);
}

#[test]
fn consumer_group_heartbeat_response() {
    let response = ConsumerGroupHeartbeatResponse {
        error_code: ErrorCode::None,
        error_message: None,
        member_id: "m1".to_owned(),
        member_epoch: 3,
        heartbeat_interval_ms: 5_000,
        assignment: vec![orders(&[0, 2])],
    };
    assert_golden(&response, HEARTBEAT_RESPONSE);
}

#[test]
fn offset_commit_request() {
    let request = OffsetCommitRequest {
        group_id: shipping(),
        member_id: "m1".to_owned(),
        member_epoch: 3,
        topics: vec![OffsetCommitTopic {
            name: "orders".to_owned(),
            partitions: vec![OffsetCommitPartition {
                partition: 0,
                committed_offset: 42,
                committed_metadata: None,
            }],
        }],
    };
    assert_golden(&request, OFFSET_COMMIT_REQUEST);
}

#[test]
fn offset_commit_response() {
    let partition = |partition, error_code| OffsetCommitPartitionResponse {
        partition,
        error_code,
    };
    let response = OffsetCommitResponse {
        topics: vec![OffsetCommitTopicResponse {
            name: "orders".to_owned(),
            partitions: vec![
                partition(0, ErrorCode::None),
                partition(1, ErrorCode::StaleMemberEpoch),
            ],
        }],
    };
    assert_golden(&response, OFFSET_COMMIT_RESPONSE);
}

#[test]
fn offset_fetch_request() {
    let request = OffsetFetchRequest {
        group_id: shipping(),
        topics: Some(vec![orders(&[0])]),
    };
    assert_golden(&request, OFFSET_FETCH_REQUEST);
    // Every committed partition is the null array.
    assert_golden(
        &OffsetFetchRequest {
            group_id: shipping(),
            topics: None,
        },
        "0008 7368697070696e67 ffffffff",
    );
}

#[test]
fn offset_fetch_response() {
    let response = OffsetFetchResponse {
        error_code: ErrorCode::None,
        topics: vec![OffsetFetchTopicResponse {
            name: "orders".to_owned(),
            partitions: vec![
                OffsetFetchPartitionResponse {
                    partition: 0,
                    committed_offset: 42,
                    committed_metadata: Some("ok".to_owned()),
                    error_code: ErrorCode::None,
                },
                OffsetFetchPartitionResponse {
                    partition: 1,
                    committed_offset: -1,
                    committed_metadata: None,
                    error_code: ErrorCode::None,
                },
            ],
        }],
    };
    assert_golden(&response, OFFSET_FETCH_RESPONSE);
}

#[test]
fn list_groups_request() {
    assert_golden(&ListGroupsRequest::default(), LIST_GROUPS_REQUEST);
}

#[test]
fn list_groups_response() {
    let response = ListGroupsResponse {
        error_code: ErrorCode::None,
        groups: vec![ListedGroup {
            group_id: shipping(),
            group_state: "Stable".to_owned(),
            member_count: 2,
        }],
    };
    assert_golden(&response, LIST_GROUPS_RESPONSE);
}

#[test]
fn describe_groups_request() {
    let request = DescribeGroupsRequest {
        group_ids: vec![shipping()],
    };
    assert_golden(&request, DESCRIBE_GROUPS_REQUEST);
}

#[test]
fn describe_groups_response() {
    let response = DescribeGroupsResponse {
        groups: vec![DescribedGroup {
            error_code: ErrorCode::None,
            group_id: shipping(),
            group_state: "Stable".to_owned(),
            group_epoch: 3,
            assignment_epoch: 3,
            assignor_name: "uniform".to_owned(),
            members: vec![DescribedMember {
                member_id: "m1".to_owned(),
                client_id: "fjord".to_owned(),
                client_host: "h1".to_owned(),
                member_epoch: 3,
                subscribed_topic_names: vec!["orders".to_owned()],
                assignment: vec![orders(&[0])],
                target_assignment: vec![orders(&[0])],
            }],
        }],
    };
    assert_golden(&response, DESCRIBE_GROUPS_RESPONSE);
}

// ----- record batch ---------------------------------------------------------------------

#[test]
fn record_batch_builder_matches_fixture() {
    assert_eq!(to_hex(&build_example_batch()), to_hex(&hex(RECORD_BATCH)));
}

#[test]
fn record_batch_fixture_validates_and_iterates() {
    let batch = RecordBatch::new(hex(RECORD_BATCH)).unwrap();
    assert_eq!(batch.validate(), Ok(()));
    assert_eq!(batch.size_bytes(), 70);
    assert_eq!(batch.batch_length(), 58);
    assert_eq!(batch.crc(), 0xe99b_8dd8);
    assert_eq!(batch.compute_crc(), 0xe99b_8dd8);
    assert_eq!(batch.base_offset(), 0);
    assert_eq!(batch.partition_leader_epoch(), -1);
    assert_eq!(batch.record_count(), 1);
    assert_eq!(batch.last_offset_delta(), 0);
    assert_eq!(batch.base_timestamp(), TIMESTAMP_MS);
    assert_eq!(batch.max_timestamp(), TIMESTAMP_MS);
    assert_eq!(batch.producer_id(), -1);
    assert_eq!(batch.compression(), Compression::None);

    let records: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.offset, 0);
    assert_eq!(record.timestamp_ms, TIMESTAMP_MS);
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
    assert!(record.headers.is_empty());
}

#[test]
fn record_batch_crc_covers_bytes_21_to_end() {
    let fixture = hex(RECORD_BATCH);
    for index in 21..fixture.len() {
        let mut corrupt = fixture.to_vec();
        corrupt[index] ^= 0x01;
        let batch = RecordBatch::new(corrupt.into()).unwrap();
        let error = batch.validate().unwrap_err();
        assert!(
            matches!(
                error,
                RecordBatchError::CrcMismatch {
                    stored: 0xe99b_8dd8,
                    ..
                }
            ),
            "byte {index}: {error:?}"
        );
        assert_eq!(error.error_code(), ErrorCode::CorruptMessage);
    }
    // The base offset and leader epoch are outside the CRC.
    for index in (0..8).chain(12..16) {
        let mut stamped = fixture.to_vec();
        stamped[index] ^= 0x01;
        let batch = RecordBatch::new(stamped.into()).unwrap();
        assert_eq!(batch.validate(), Ok(()), "byte {index}");
    }
}

#[test]
fn record_batch_gzip_is_unsupported() {
    let mut gzip = hex(RECORD_BATCH).to_vec();
    gzip[22] |= 0x01; // attributes bits 0-2 = 1: gzip
    // With the CRC left as it was, the CRC check fails first.
    let batch = RecordBatch::new(gzip.clone().into()).unwrap();
    assert!(matches!(
        batch.validate(),
        Err(RecordBatchError::CrcMismatch { .. })
    ));
    // With a matching CRC, compression is what is refused.
    let crc = crc32c::crc32c(&gzip[21..]);
    gzip[17..21].copy_from_slice(&crc.to_be_bytes());
    let batch = RecordBatch::new(gzip.into()).unwrap();
    assert_eq!(batch.compression(), Compression::Gzip);
    let error = batch.validate().unwrap_err();
    assert_eq!(
        error,
        RecordBatchError::UnsupportedCompression(Compression::Gzip)
    );
    assert_eq!(error.error_code(), ErrorCode::UnsupportedCompressionType);
    assert_eq!(error.error_code().name(), "UNSUPPORTED_COMPRESSION_TYPE");
}

#[test]
fn record_batch_stamping_rewrites_in_place() {
    let mut bytes = BytesMut::from(&hex(RECORD_BATCH)[..]);
    set_base_offset(&mut bytes, 1_000);
    set_partition_leader_epoch(&mut bytes, 7);
    let stamped = bytes.freeze();
    // Only bytes 0..8 and 12..16 changed.
    let fixture = hex(RECORD_BATCH);
    assert_eq!(stamped.len(), fixture.len());
    for index in (8..12).chain(16..fixture.len()) {
        assert_eq!(stamped[index], fixture[index], "byte {index}");
    }
    let batch = RecordBatch::new(stamped).unwrap();
    assert_eq!(batch.validate(), Ok(()));
    assert_eq!(batch.base_offset(), 1_000);
    assert_eq!(batch.partition_leader_epoch(), 7);
    assert_eq!(batch.crc(), 0xe99b_8dd8);
    assert_eq!(batch.last_offset(), 1_000);
    assert_eq!(batch.next_offset(), 1_001);
    let offsets: Vec<i64> = batch
        .records()
        .map(|record| record.unwrap().offset)
        .collect();
    assert_eq!(offsets, [1_000]);
}

#[test]
fn record_batch_without_records_is_refused() {
    let empty = BatchBuilder::new().finish();
    let batch = RecordBatch::new(empty).unwrap();
    assert_eq!(
        batch.validate(),
        Err(RecordBatchError::InvalidRecordCount(0))
    );
    assert_eq!(batch.records().count(), 0);
}
