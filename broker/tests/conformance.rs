//! docs/protocol.md against a live broker over real TCP on 127.0.0.1, so that the
//! document and the behaviour cannot drift apart:
//!
//! - every worked example of a request in section 5 (and the frames of section 3.4) is
//!   sent as the document's bytes, and the broker's answer is compared with the
//!   document's example response: byte for byte where the example is deterministic
//!   (ApiVersions, DeleteTopics, Produce, Fetch, ListOffsets), field by field after
//!   replacing what a live broker chooses itself (ids, port) elsewhere;
//! - every row of the error table (section 8) names a code the crate agrees with, and
//!   each code a single broker can be made to send is provoked and must arrive at one
//!   of the levels its row's "reported in" column gives. Rows that cannot be provoked
//!   here are listed with the reason.
//!
//! The document is parsed, not copied: a changed example or table row is tested as it
//! stands.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use fjord_broker::config::BrokerConfig;
use fjord_broker::{Broker, BrokerHandle};
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::frame::split_response;
use fjord_protocol::messages::*;

mod wire;
use wire::RawClient;

const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

// ---------------------------------------------------------------------------------
// The document, parsed.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExampleKind {
    Request,
    Response,
    /// Any other hex block (section 2's primitives, section 3.4's frames, 6.6's batch).
    Other,
}

#[derive(Debug, Clone)]
struct Example {
    /// Section number of the nearest heading, e.g. "5.5".
    section: String,
    /// The API key of a section 5 heading `### 5.N Name (key K)`.
    api_key: Option<i16>,
    kind: ExampleKind,
    /// The size the prose declares, `(N bytes)`.
    declared_bytes: Option<usize>,
    bytes: Vec<u8>,
    line: usize,
}

/// The bytes of a code block of hex, comments (`#` to the end of a line) removed;
/// `None` when the block is not hex (a layout, a table of varints).
fn hex_block(lines: &[&str]) -> Option<Vec<u8>> {
    let mut digits = String::new();
    for line in lines {
        let data = line.split('#').next().unwrap_or_default();
        digits.extend(data.chars().filter(|c| !c.is_whitespace()));
    }
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&digits[at..at + 2], 16).ok())
        .collect()
}

/// `(N bytes)` in a line of prose.
fn declared_size(line: &str) -> Option<usize> {
    let start = line.find('(')? + 1;
    let rest = &line[start..];
    let end = rest.find(" bytes)")?;
    rest[..end].trim().parse().ok()
}

fn parse_examples(document: &str) -> Vec<Example> {
    let lines: Vec<&str> = document.lines().collect();
    let mut examples = Vec::new();
    let (mut section, mut api_key) = (String::new(), None);
    let (mut pending, mut declared) = (ExampleKind::Other, None);
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if let Some(heading) = line.strip_prefix("### ") {
            section = heading.split_whitespace().next().unwrap_or_default().into();
            api_key = heading
                .split("(key ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches(')').parse().ok());
            pending = ExampleKind::Other;
        } else if line.starts_with("Example request body") {
            (pending, declared) = (ExampleKind::Request, declared_size(line));
        } else if line.starts_with("Example response body") {
            (pending, declared) = (ExampleKind::Response, declared_size(line));
        } else if line.trim() == "```text" {
            let start = index + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim() != "```" {
                end += 1;
            }
            if let Some(bytes) = hex_block(&lines[start..end]) {
                examples.push(Example {
                    section: section.clone(),
                    api_key,
                    kind: pending,
                    declared_bytes: declared,
                    bytes,
                    line: start,
                });
                (pending, declared) = (ExampleKind::Other, None);
            }
            index = end;
        }
        index += 1;
    }
    examples
}

/// Where an error code travels (the "reported in" column of section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// The response header; no body follows.
    Request,
    /// A topic's `error_code` (Metadata, CreateTopics, DeleteTopics).
    Topic,
    /// A partition's `error_code`.
    Partition,
    /// The `error_code` at the top of a response body.
    Response,
    /// A group's `error_code` in DescribeGroups.
    Group,
    /// Defined for compatibility; this broker never sends it.
    NotSent,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text.trim() {
            "request" => Some(Level::Request),
            "topic" => Some(Level::Topic),
            "partition" => Some(Level::Partition),
            "response" => Some(Level::Response),
            "group" => Some(Level::Group),
            "not sent" => Some(Level::NotSent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ErrorRow {
    code: i16,
    name: String,
    levels: BTreeSet<Level>,
}

/// The rows of section 8's table: `| code | name | retriable | reported in | meaning |`.
/// The "reported in" cell lists levels separated by commas, each optionally followed
/// by a parenthesised list of APIs; `NONE` has `–`.
fn parse_error_table(document: &str) -> Vec<ErrorRow> {
    let section = document
        .split("## 8. Error codes")
        .nth(1)
        .expect("section 8 exists");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut rows = Vec::new();
    for line in section.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(code) = cells[0].parse::<i16>() else {
            continue; // the heading and the separator
        };
        assert_eq!(cells.len(), 5, "section 8 row has five columns: {line}");
        let name = cells[1].trim_matches('`').to_owned();
        let mut levels = BTreeSet::new();
        if name != "NONE" {
            // Drop the parenthesised API lists, then split the levels.
            let mut plain = String::new();
            let mut depth = 0;
            for c in cells[3].chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            for level in plain.split(',') {
                let parsed = Level::parse(level)
                    .unwrap_or_else(|| panic!("{name}: unknown level `{level}` in: {line}"));
                levels.insert(parsed);
            }
        }
        rows.push(ErrorRow { code, name, levels });
    }
    rows
}

// ---------------------------------------------------------------------------------
// The broker.

async fn start_broker(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut BrokerConfig),
) -> BrokerHandle {
    let mut config = BrokerConfig::for_tests(dir);
    adjust(&mut config);
    Broker::start(config).await.expect("broker starts")
}

fn encode(message: &impl Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    out.to_vec()
}

fn decode<T: Message>(body: Bytes) -> T {
    T::decode_body(body).expect("the response decodes")
}

/// A request frame: the header fields and a body, as section 3.2 lays them out.
fn request_frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    payload.extend_from_slice(client_id.as_bytes());
    payload.extend_from_slice(body);
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

// ---------------------------------------------------------------------------------
// Worked examples.

struct Examples(Vec<Example>);

impl Examples {
    fn body(&self, section: &str, kind: ExampleKind) -> Bytes {
        let found: Vec<&Example> = self
            .0
            .iter()
            .filter(|example| example.section == section && example.kind == kind)
            .collect();
        assert_eq!(found.len(), 1, "one {kind:?} example in section {section}");
        Bytes::from(found[0].bytes.clone())
    }

    fn frames(&self, section: &str) -> Vec<Bytes> {
        self.0
            .iter()
            .filter(|example| example.section == section)
            .map(|example| Bytes::from(example.bytes.clone()))
            .collect()
    }
}

/// The worked examples as a client author reads them: the hex parses, declared sizes
/// are right, every section 5 API has a request and a response example, and the
/// frames of 3.4 are consistent with the bodies of section 5.
#[test]
fn worked_examples_are_complete_and_consistent() {
    let examples = parse_examples(PROTOCOL_DOC);
    for example in &examples {
        if let Some(declared) = example.declared_bytes {
            assert_eq!(
                example.bytes.len(),
                declared,
                "protocol.md line {}: section {} declares {declared} bytes",
                example.line + 1,
                example.section
            );
        }
    }
    let mut requests = BTreeSet::new();
    let mut responses = BTreeSet::new();
    for example in examples
        .iter()
        .filter(|example| example.section.starts_with("5."))
    {
        let key = example
            .api_key
            .expect("section 5 examples belong to an API");
        match example.kind {
            ExampleKind::Request => requests.insert(key),
            ExampleKind::Response => responses.insert(key),
            ExampleKind::Other => panic!("line {}: unlabelled example", example.line + 1),
        };
    }
    // ApiVersions' request body is empty: its example is the frame of 3.4.
    requests.insert(10);
    let every_api: BTreeSet<i16> = ApiVersionsResponse::current()
        .apis
        .iter()
        .map(|api| api.api_key)
        .collect();
    assert_eq!(requests, every_api, "a request example for every API");
    assert_eq!(responses, every_api, "a response example for every API");

    let examples = Examples(examples);
    let frames = examples.frames("3.4");
    assert_eq!(frames.len(), 4, "section 3.4 has four frames");
    let metadata_body = examples.body("5.2", ExampleKind::Request);
    assert!(
        frames[0].ends_with(&metadata_body),
        "3.4's Metadata frame carries 5.2's body"
    );
    let (_, delete_body) = split_response(frames[3].clone()).unwrap();
    assert_eq!(delete_body, examples.body("5.4", ExampleKind::Response));
}

/// Every worked request, sent as the document's bytes to a live broker, gets the
/// document's response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worked_examples_against_a_live_broker() {
    let examples = Examples(parse_examples(PROTOCOL_DOC));
    let dir = tempfile::tempdir().unwrap();
    // Node 1 advertised as `b1`, as in the examples; only the port differs.
    let broker = start_broker(dir.path(), |config| {
        config.node_id = 1;
        config.advertised_host = "b1".into();
    })
    .await;
    let address: SocketAddr = broker.client_addr();
    let mut client = RawClient::connect(address).await;
    let frames = examples.frames("3.4");

    // 3.4: ApiVersions with a null client id; its body is 5.1's example response.
    client.send_raw(&frames[1]).await;
    let (header, body) = split_response(client.receive_frame().await.unwrap()).unwrap();
    assert_eq!(
        (header.correlation_id, header.error_code),
        (1, ErrorCode::None)
    );
    assert_eq!(body, examples.body("5.1", ExampleKind::Response), "5.1");

    // 3.4: a Fetch at an unsupported version is refused in 6 bytes.
    let fetch_request = examples.body("5.6", ExampleKind::Request);
    client
        .send_raw(&request_frame(1, 1, 1, "cli", &fetch_request))
        .await;
    assert_eq!(
        client.receive_frame().await.unwrap(),
        frames[2],
        "3.4 refusal"
    );

    // 5.4 on a broker without `orders`, as 3.4's frame with correlation id 7. Error
    // messages are free text ("null or a human-readable detail"), so only their
    // presence is compared.
    let delete_request = examples.body("5.4", ExampleKind::Request);
    client
        .send_raw(&request_frame(21, 0, 7, "cli", &delete_request))
        .await;
    let (header, body) = split_response(client.receive_frame().await.unwrap()).unwrap();
    let (expected_header, expected_body) = split_response(frames[3].clone()).unwrap();
    assert_eq!(header, expected_header, "3.4");
    let mut deleted: DeleteTopicsResponse = decode(body);
    let expected: DeleteTopicsResponse = decode(expected_body);
    for topic in &mut deleted.topics {
        assert_ne!(
            topic.error_message.as_deref(),
            Some(""),
            "a message is null or says something"
        );
        topic.error_message = None;
    }
    assert_eq!(deleted, expected, "3.4 / 5.4");

    // 5.3: `orders` is created; the example's second topic is not in the request.
    let (header, body) = client
        .call(20, &examples.body("5.3", ExampleKind::Request))
        .await;
    assert_eq!(header.error_code, ErrorCode::None);
    let created: CreateTopicsResponse = decode(body);
    let mut expected: CreateTopicsResponse = decode(examples.body("5.3", ExampleKind::Response));
    expected.topics.truncate(1);
    let topic_id = created.topics[0].topic_id;
    assert_ne!(topic_id, [0; 16], "a created topic has an id");
    expected.topics[0].topic_id = topic_id;
    assert_eq!(created, expected, "5.3");

    // 3.4 / 5.2: Metadata for `orders` (created with 3 partitions; the example shows 1).
    client.send_raw(&frames[0]).await;
    let (header, body) = split_response(client.receive_frame().await.unwrap()).unwrap();
    assert_eq!(
        (header.correlation_id, header.error_code),
        (7, ErrorCode::None)
    );
    let mut metadata: MetadataResponse = decode(body);
    let mut expected: MetadataResponse = decode(examples.body("5.2", ExampleKind::Response));
    assert!(!metadata.cluster_id.is_empty());
    metadata.cluster_id = expected.cluster_id.clone();
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port, i32::from(address.port()));
    metadata.brokers[0].port = expected.brokers[0].port;
    assert_eq!(metadata.topics[0].topic_id, topic_id);
    expected.topics[0].topic_id = topic_id;
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    metadata.topics[0].partitions.truncate(1);
    assert_eq!(metadata, expected, "5.2");

    // 5.5, 5.6, 5.7: byte for byte.
    for (section, api_key) in [("5.5", 0), ("5.6", 1), ("5.7", 2)] {
        let (header, body) = client
            .call(api_key, &examples.body(section, ExampleKind::Request))
            .await;
        assert_eq!(header.error_code, ErrorCode::None, "{section}");
        assert_eq!(
            body,
            examples.body(section, ExampleKind::Response),
            "{section}"
        );
    }

    // 5.9: this broker coordinates `shipping`.
    let (_, body) = client
        .call(100, &examples.body("5.9", ExampleKind::Request))
        .await;
    let mut coordinator: FindCoordinatorResponse = decode(body);
    let expected: FindCoordinatorResponse = decode(examples.body("5.9", ExampleKind::Response));
    assert_eq!(coordinator.port, i32::from(address.port()));
    coordinator.port = expected.port;
    assert_eq!(coordinator, expected, "5.9");

    // 5.10: the join is accepted; ids and epochs are the broker's to choose, the
    // heartbeat interval is the broker's default, as in the example.
    let (_, body) = client
        .call(101, &examples.body("5.10", ExampleKind::Request))
        .await;
    let joined: ConsumerGroupHeartbeatResponse = decode(body);
    let expected: ConsumerGroupHeartbeatResponse =
        decode(examples.body("5.10", ExampleKind::Response));
    assert_eq!(joined.error_code, ErrorCode::None, "5.10: {joined:?}");
    assert!(
        !joined.member_id.is_empty() && joined.member_epoch >= 1,
        "{joined:?}"
    );
    assert_eq!(joined.heartbeat_interval_ms, expected.heartbeat_interval_ms);
    assert_eq!(joined.assignment.len(), 1);
    assert_eq!(joined.assignment[0].topic, "orders");

    // 5.11: the example's member `m1` is not this broker's member.
    let (_, body) = client
        .call(102, &examples.body("5.11", ExampleKind::Request))
        .await;
    let committed: OffsetCommitResponse = decode(body);
    assert_eq!(committed.topics[0].name, "orders");
    assert_eq!(
        committed.topics[0].partitions[0].error_code,
        ErrorCode::UnknownMemberId,
        "5.11"
    );
    // The example's response decodes into the same shape.
    let _: OffsetCommitResponse = decode(examples.body("5.11", ExampleKind::Response));

    // 5.12: nothing committed yet is offset -1 with null metadata.
    let (_, body) = client
        .call(103, &examples.body("5.12", ExampleKind::Request))
        .await;
    let fetched: OffsetFetchResponse = decode(body);
    let mut expected: OffsetFetchResponse = decode(examples.body("5.12", ExampleKind::Response));
    expected.topics[0].partitions.truncate(1);
    expected.topics[0].partitions[0].committed_offset = -1;
    expected.topics[0].partitions[0].committed_metadata = None;
    assert_eq!(fetched, expected, "5.12");

    // 5.13 and 5.14: the group with its one member.
    let (_, body) = client
        .call(104, &examples.body("5.13", ExampleKind::Request))
        .await;
    let listed: ListGroupsResponse = decode(body);
    assert_eq!(listed.error_code, ErrorCode::None);
    let shipping = listed
        .groups
        .iter()
        .find(|group| group.group_id == "shipping")
        .expect("5.13 lists `shipping`");
    assert_eq!(shipping.member_count, 1);
    let (_, body) = client
        .call(105, &examples.body("5.14", ExampleKind::Request))
        .await;
    let described: DescribeGroupsResponse = decode(body);
    let expected: DescribeGroupsResponse = decode(examples.body("5.14", ExampleKind::Response));
    let group = &described.groups[0];
    assert_eq!(group.error_code, ErrorCode::None);
    assert_eq!(group.group_id, expected.groups[0].group_id);
    assert_eq!(group.assignor_name, expected.groups[0].assignor_name);
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].member_id, joined.member_id);
    assert_eq!(group.members[0].client_id, "conformance");
    assert_eq!(group.members[0].subscribed_topic_names, ["orders"]);
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// The error table.

/// Codes this test cannot make a single, healthy, local broker send, and why.
const NOT_PROVOKED_HERE: &[(&str, &str)] = &[
    (
        "UNKNOWN_SERVER_ERROR",
        "only a handler that fails unexpectedly (a bug) sends it",
    ),
    (
        "NOT_LEADER_OR_FOLLOWER",
        "needs a partition led by another broker",
    ),
    (
        "NOT_COORDINATOR",
        "needs a group coordinated by another broker",
    ),
    (
        "NOT_ENOUGH_REPLICAS",
        "needs a replicated partition short of in-sync replicas: a single broker's topics have one replica, and a minimum above it is refused (replication.rs provokes it)",
    ),
    (
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "needs an in-sync set that shrinks while an acks=all request waits (replication_processes.rs provokes it)",
    ),
    (
        "COORDINATOR_NOT_AVAILABLE",
        "needs an offsets partition without a leader or still loading",
    ),
    (
        "FENCED_LEADER_EPOCH",
        "needs a leader change: a fresh partition is at epoch 0",
    ),
    (
        "REQUEST_TIMED_OUT",
        "needs a request slower than its timeout, which is timing-dependent",
    ),
    (
        "STORAGE_ERROR",
        "needs a failing disk (the storage tests inject one)",
    ),
    (
        "BROKER_SHUTTING_DOWN",
        "sent only while the broker shuts down",
    ),
    (
        "LEADER_NOT_AVAILABLE",
        "needs a metadata quorum led by another broker, or by none: a single broker leads its quorum of one",
    ),
];

/// What the broker said, where, and how it was provoked.
struct Observed {
    /// What the document says the broker answers (sections 5 to 7).
    expected: ErrorCode,
    code: ErrorCode,
    level: Level,
    how: &'static str,
}

struct Observations(Vec<Observed>);

impl Observations {
    /// Notes that `how` got `code` at `level`; the documented outcome is `expected`.
    fn saw(&mut self, expected: ErrorCode, code: ErrorCode, level: Level, how: &'static str) {
        self.0.push(Observed {
            expected,
            code,
            level,
            how,
        });
    }
}

fn record_batch(value: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    builder.push(&RecordInput {
        value: Some(value),
        timestamp_ms,
        ..Default::default()
    });
    builder.finish().to_vec()
}

/// Rewrites bytes of a batch at `at` and recomputes the CRC, as a producer could.
fn patched_batch(mut batch: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn produce(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    acks: i16,
    records: Vec<u8>,
) -> (ErrorCode, ErrorCode) {
    let request = ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch: -1,
                records: Bytes::from(records),
            }],
        }],
    };
    let (header, body) = client.call(0, &encode(&request)).await;
    if !header.error_code.is_ok() {
        return (header.error_code, ErrorCode::None);
    }
    let response: ProduceResponse = decode(body);
    (
        header.error_code,
        response.topics[0].partitions[0].error_code,
    )
}

async fn create(
    client: &mut RawClient,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> ErrorCode {
    let request = CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: configs
                .iter()
                .map(|(key, value)| ConfigEntry {
                    key: (*key).into(),
                    value: (*value).into(),
                })
                .collect(),
        }],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let (header, body) = client.call(20, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode::<CreateTopicsResponse>(body).topics[0].error_code
}

async fn metadata_topic_error(client: &mut RawClient, name: &str) -> ErrorCode {
    let request = MetadataRequest {
        topics: Some(vec![name.into()]),
    };
    let (header, body) = client.call(3, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode::<MetadataResponse>(body).topics[0].error_code
}

async fn fetch_error(client: &mut RawClient, offset: i64, current_leader_epoch: i32) -> ErrorCode {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "t".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let (header, body) = client.call(1, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode::<FetchResponse>(body).topics[0].partitions[0].error_code
}

async fn heartbeat(
    client: &mut RawClient,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let (header, body) = client.call(101, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode(body)
}

fn join(group: &str, topics: Option<Vec<String>>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: topics,
        owned_partitions: Vec::new(),
    }
}

async fn commit(
    client: &mut RawClient,
    group: &str,
    member_id: &str,
    member_epoch: i32,
    topic: &str,
    offset: i64,
    metadata: Option<String>,
) -> ErrorCode {
    let request = OffsetCommitRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        member_epoch,
        topics: vec![OffsetCommitTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitPartition {
                partition: 0,
                committed_offset: offset,
                committed_metadata: metadata,
            }],
        }],
    };
    let (header, body) = client.call(102, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode::<OffsetCommitResponse>(body).topics[0].partitions[0].error_code
}

async fn describe_group_error(client: &mut RawClient, group: &str) -> ErrorCode {
    let request = DescribeGroupsRequest {
        group_ids: vec![group.into()],
    };
    let (header, body) = client.call(105, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    decode::<DescribeGroupsResponse>(body).groups[0].error_code
}

/// Provokes every code a single local broker can send, noting the level it came at.
async fn provoke_errors(client: &mut RawClient) -> Observations {
    use ErrorCode as E;
    use Level as L;
    let mut seen = Observations(Vec::new());

    // Request level.
    let (header, _) = client.call(999, &[]).await;
    seen.saw(
        E::UnsupportedApiKey,
        header.error_code,
        L::Request,
        "unknown API key",
    );
    let (header, _) = client
        .call_with_client_id(
            3,
            9,
            Some("conformance".into()),
            &encode(&MetadataRequest { topics: None }),
        )
        .await;
    seen.saw(
        E::UnsupportedVersion,
        header.error_code,
        L::Request,
        "Metadata version 9",
    );
    let (header, _) = client.call(0, &[0, 1, 0xff, 0xff]).await;
    seen.saw(
        E::InvalidRequest,
        header.error_code,
        L::Request,
        "a Produce body that does not decode",
    );
    // Section 7: a client id over CLIENT_ID_BYTES_MAX makes the request undecodable;
    // the frame was read, so it is answered and the connection stays usable.
    let (header, _) = client
        .call_with_client_id(10, 0, Some("c".repeat(256)), &[])
        .await;
    seen.saw(
        E::InvalidRequest,
        header.error_code,
        L::Request,
        "a 256-byte client id",
    );

    // Topic level.
    assert_eq!(create(client, "t", 1, 1, &[]).await, E::None);
    seen.saw(
        E::TopicAlreadyExists,
        create(client, "t", 1, 1, &[]).await,
        L::Topic,
        "CreateTopics of an existing name",
    );
    seen.saw(
        E::InvalidTopic,
        create(client, "a/b", 1, 1, &[]).await,
        L::Topic,
        "CreateTopics of an invalid name",
    );
    seen.saw(
        E::InvalidTopic,
        metadata_topic_error(client, "a/b").await,
        L::Topic,
        "Metadata of an invalid name",
    );
    seen.saw(
        E::UnknownTopicOrPartition,
        metadata_topic_error(client, "nope").await,
        L::Topic,
        "Metadata of an unknown topic",
    );
    seen.saw(
        E::InvalidPartitions,
        create(client, "z", 0, 1, &[]).await,
        L::Topic,
        "CreateTopics with 0 partitions",
    );
    seen.saw(
        E::InvalidReplicationFactor,
        create(client, "z", 1, 2, &[]).await,
        L::Topic,
        "CreateTopics with 2 replicas on 1 broker",
    );
    seen.saw(
        E::InvalidConfig,
        create(client, "z", 1, 1, &[("retention.ms", "x")]).await,
        L::Topic,
        "CreateTopics with a bad config value",
    );

    // Partition level: Produce.
    let good = record_batch(b"v", now_ms());
    let (request_level, code) = produce(client, "t", 0, 1, Vec::new()).await;
    assert_eq!(request_level, E::None);
    seen.saw(
        E::CorruptMessage,
        code,
        L::Partition,
        "Produce of an empty records field",
    );
    let mut damaged = good.clone();
    *damaged.last_mut().unwrap() ^= 0xff;
    seen.saw(
        E::CorruptMessage,
        produce(client, "t", 0, 1, damaged).await.1,
        L::Partition,
        "Produce with a bad CRC",
    );
    seen.saw(
        E::UnknownTopicOrPartition,
        produce(client, "t", 7, 1, good.clone()).await.1,
        L::Partition,
        "Produce to a missing partition",
    );
    seen.saw(
        E::InvalidTopic,
        produce(client, "__consumer_offsets", 0, 1, good.clone())
            .await
            .1,
        L::Partition,
        "Produce to the internal topic",
    );
    let mut old_magic = good.clone();
    old_magic[16] = 1;
    seen.saw(
        E::InvalidRecord,
        produce(client, "t", 0, 1, old_magic).await.1,
        L::Partition,
        "Produce of a magic 1 batch",
    );
    let control = patched_batch(good.clone(), 21, &0x0020i16.to_be_bytes());
    seen.saw(
        E::InvalidRecord,
        produce(client, "t", 0, 1, control).await.1,
        L::Partition,
        "Produce of a control batch",
    );
    let gzip = patched_batch(good.clone(), 21, &0x0001i16.to_be_bytes());
    seen.saw(
        E::UnsupportedCompressionType,
        produce(client, "t", 0, 1, gzip).await.1,
        L::Partition,
        "Produce of a gzip batch",
    );
    let negative = record_batch(b"v", -5);
    seen.saw(
        E::InvalidTimestamp,
        produce(client, "t", 0, 1, negative).await.1,
        L::Partition,
        "Produce of a negative timestamp",
    );
    let (request_level, code) = produce(client, "t", 0, 5, good.clone()).await;
    assert_eq!(
        request_level,
        E::None,
        "INVALID_REQUIRED_ACKS travels per partition"
    );
    seen.saw(
        E::InvalidRequiredAcks,
        code,
        L::Partition,
        "Produce with acks = 5",
    );
    assert_eq!(
        create(client, "small", 1, 1, &[("max.message.bytes", "1024")]).await,
        E::None
    );
    let large = record_batch(&[7; 2000], now_ms());
    seen.saw(
        E::MessageTooLarge,
        produce(client, "small", 0, 1, large).await.1,
        L::Partition,
        "Produce above max.message.bytes",
    );
    // A minimum no acks=all write could meet is refused when it is set.
    assert_eq!(
        create(client, "isr", 1, 1, &[("min.insync.replicas", "2")]).await,
        E::InvalidConfig
    );
    assert_eq!(
        produce(client, "t", 0, 1, good.clone()).await,
        (E::None, E::None)
    );

    // Partition level: Fetch and ListOffsets.
    seen.saw(
        E::OffsetOutOfRange,
        fetch_error(client, 99, -1).await,
        L::Partition,
        "Fetch past the end",
    );
    seen.saw(
        E::UnknownLeaderEpoch,
        fetch_error(client, 0, 3).await,
        L::Partition,
        "Fetch with a future leader epoch",
    );
    let list = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                current_leader_epoch: -1,
                timestamp: -3,
            }],
        }],
    };
    let (header, body) = client.call(2, &encode(&list)).await;
    assert_eq!(header.error_code, E::None);
    let listed: ListOffsetsResponse = decode(body);
    let mut future_epoch = list.clone();
    future_epoch.topics[0].partitions[0].current_leader_epoch = 3;
    future_epoch.topics[0].partitions[0].timestamp = -1;
    let (_, body) = client.call(2, &encode(&future_epoch)).await;
    let epoch_checked: ListOffsetsResponse = decode(body);
    seen.saw(
        E::UnknownLeaderEpoch,
        epoch_checked.topics[0].partitions[0].error_code,
        L::Partition,
        "ListOffsets with a future leader epoch",
    );
    seen.saw(
        E::InvalidTimestamp,
        listed.topics[0].partitions[0].error_code,
        L::Partition,
        "ListOffsets at timestamp -3",
    );

    // Groups: response level.
    let (_, body) = client
        .call(
            100,
            &encode(&FindCoordinatorRequest {
                group_id: String::new(),
            }),
        )
        .await;
    let found: FindCoordinatorResponse = decode(body);
    seen.saw(
        E::InvalidGroupId,
        found.error_code,
        L::Response,
        "FindCoordinator of an empty group id",
    );
    let ghost = ConsumerGroupHeartbeatRequest {
        member_id: "ghost".into(),
        member_epoch: 1,
        ..join("g", None)
    };
    seen.saw(
        E::UnknownMemberId,
        heartbeat(client, ghost).await.error_code,
        L::Response,
        "heartbeat of an unknown member",
    );
    seen.saw(
        E::InvalidRequest,
        heartbeat(client, join("k", None)).await.error_code,
        L::Response,
        "join without a subscription",
    );
    let member = heartbeat(client, join("g", Some(vec!["t".into()]))).await;
    assert_eq!(member.error_code, E::None, "{member:?}");
    seen.saw(
        E::GroupMaxSizeReached,
        heartbeat(client, join("g", Some(vec!["t".into()])))
            .await
            .error_code,
        L::Response,
        "a second member beyond group_members_max = 1",
    );

    // Groups: partition level (OffsetCommit).
    let (id, epoch) = (member.member_id.clone(), member.member_epoch);
    seen.saw(
        E::StaleMemberEpoch,
        commit(client, "g", &id, epoch - 1, "t", 1, None).await,
        L::Partition,
        "commit with an older epoch",
    );
    seen.saw(
        E::PartitionNotAssigned,
        commit(client, "g", &id, epoch, "isr", 1, None).await,
        L::Partition,
        "commit of a partition not owned",
    );
    seen.saw(
        E::UnknownMemberId,
        commit(client, "g", "ghost", 1, "t", 1, None).await,
        L::Partition,
        "commit by an unknown member",
    );
    seen.saw(
        E::NonEmptyGroup,
        commit(client, "g", "", -1, "t", 1, None).await,
        L::Partition,
        "commit from outside a group with members",
    );
    seen.saw(
        E::OffsetMetadataTooLarge,
        commit(client, "h", "", -1, "t", 1, Some("m".repeat(5000))).await,
        L::Partition,
        "commit with 5000 bytes of metadata",
    );
    seen.saw(
        E::InvalidRequest,
        commit(client, "h", "", -1, "t", -4, None).await,
        L::Partition,
        "commit of a negative offset",
    );
    seen.saw(
        E::InvalidGroupId,
        commit(client, "", "", -1, "t", 1, None).await,
        L::Partition,
        "commit to an empty group id",
    );

    // Groups: group level (DescribeGroups).
    seen.saw(
        E::GroupIdNotFound,
        describe_group_error(client, "none").await,
        L::Group,
        "DescribeGroups of an unknown group",
    );
    seen.saw(
        E::InvalidGroupId,
        describe_group_error(client, "").await,
        L::Group,
        "DescribeGroups of an empty group id",
    );

    // Last, since it removes the member.
    let fenced = ConsumerGroupHeartbeatRequest {
        member_id: id,
        member_epoch: epoch + 5,
        ..join("g", None)
    };
    seen.saw(
        E::FencedMemberEpoch,
        heartbeat(client, fenced).await.error_code,
        L::Response,
        "heartbeat with a future epoch",
    );
    seen
}

/// Section 8's table against the crate and a live broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_table_against_a_live_broker() {
    let rows = parse_error_table(PROTOCOL_DOC);
    assert!(rows.len() > 30, "the table was found: {} rows", rows.len());
    let by_name: BTreeMap<&str, &ErrorRow> =
        rows.iter().map(|row| (row.name.as_str(), row)).collect();
    for row in &rows {
        let code = ErrorCode::from_code(row.code);
        assert_eq!(
            (code.code(), code.name()),
            (row.code, row.name.as_str()),
            "section 8 and the crate agree on {}",
            row.name
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), |config| config.group_members_max = 1).await;
    let mut client = RawClient::connect(broker.client_addr()).await;
    let observed = provoke_errors(&mut client).await;
    broker.shutdown().await.unwrap();

    let mut provoked = BTreeSet::new();
    let mut failures = Vec::new();
    for Observed {
        expected,
        code,
        level,
        how,
    } in &observed.0
    {
        println!("{how}: {} at {level:?} level", code.name());
        if code != expected {
            failures.push(format!(
                "{how}: got {}, the document says {}",
                code.name(),
                expected.name()
            ));
        }
        let Some(row) = by_name.get(code.name()) else {
            failures.push(format!("{how}: {} is not in section 8", code.name()));
            continue;
        };
        if *code == ErrorCode::None {
            failures.push(format!("{how}: no error"));
        } else if !row.levels.contains(level) {
            failures.push(format!(
                "{how}: {} came at {level:?} level; section 8 says {:?}",
                row.name, row.levels
            ));
        }
        provoked.insert(row.name.as_str());
    }
    for row in &rows {
        let name = row.name.as_str();
        let not_sent = row.levels.contains(&Level::NotSent);
        let excused = NOT_PROVOKED_HERE
            .iter()
            .any(|(excused, _)| *excused == name);
        if name == "NONE" {
            continue;
        }
        if not_sent && provoked.contains(name) {
            failures.push(format!("{name} is documented as not sent, but was"));
        }
        if not_sent && row.levels.len() > 1 {
            failures.push(format!("{name}: `not sent` and a level at once"));
        }
        if !not_sent && !provoked.contains(name) && !excused {
            failures.push(format!("{name}: neither provoked here nor excused"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
