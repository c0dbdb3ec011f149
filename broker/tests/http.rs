//! The admin HTTP API over real HTTP/1.1 on 127.0.0.1, against in-process brokers:
//! every route with its success and error cases, the one error shape, readiness before
//! start-up and shutdown, and the OpenAPI document against the router. (`/metrics`
//! after real traffic is tested in `metrics.rs`, a binary of its own, so that no other
//! test's traffic reaches the process-wide recorder it reads.)
//!
//! The HTTP client (`common/http_client.rs`) is a few lines over a `TcpStream`, so that
//! tests control every byte and the broker's tests pull in no HTTP client library.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fjord_broker::config::BrokerConfig;
use fjord_broker::http::{HttpState, REQUEST_BODY_BYTES_MAX};
use fjord_broker::{Broker, BrokerHandle};
use fjord_protocol::batch::{HeaderInput, RecordInput};
use fjord_protocol::{ErrorCode, RecordBatch};
use serde_json::{Value, json};
use tokio::net::TcpStream;

mod common;
use common::http_client::*;
use common::native_client::*;

/// The names in a topic list, without the broker's internal topics (such as the
/// consumer offsets topic), which a broker may create for itself.
fn user_topic_names(list: &Value) -> Vec<String> {
    list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|topic| topic["internal"] == false)
        .map(|topic| topic["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn start(dir: &Path, adjust: impl FnOnce(&mut BrokerConfig)) -> BrokerHandle {
    let mut config = BrokerConfig::for_tests(dir);
    adjust(&mut config);
    Broker::start(config).await.unwrap()
}

// ---------------------------------------------------------------------------------
// Consumer groups.

/// `GET /v1/groups` lists the groups the broker coordinates and `GET /v1/groups/{id}`
/// describes one: its members with their assignments, and its committed offsets with
/// the high watermark and lag of each; an unknown group is a 404 in the error shape.
#[tokio::test]
async fn groups_are_listed_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "orders", "partitions": 2}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(get(addr, "/v1/groups").await.json(), json!({"groups": []}));

    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.produce("orders", 0, values_batch("order", 3)).await,
        ErrorCode::None
    );
    let member = client.join_group("shipping", "orders").await;
    assert_eq!(
        client.commit("shipping", &member, "orders", 0, 1).await,
        ErrorCode::None
    );

    let response = get(addr, "/v1/groups").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"groups": [{"group_id": "shipping", "state": "Stable", "member_count": 1, "group_epoch": 1}]})
    );
    let response = get(addr, "/v1/groups/shipping").await;
    assert_eq!(response.status, 200);
    let group = response.json();
    let commit_timestamp_ms = group["offsets"][0]["commit_timestamp_ms"].clone();
    assert!(commit_timestamp_ms.as_i64().unwrap() > 1_700_000_000_000);
    let both = json!([{"topic": "orders", "partitions": [0, 1]}]);
    assert_eq!(
        group,
        json!({
            "group_id": "shipping",
            "state": "Stable",
            "group_epoch": 1,
            "assignment_epoch": 1,
            "assignor": "uniform",
            "members": [{
                "member_id": member.member_id,
                "client_id": "http-test",
                "client_host": "127.0.0.1",
                "member_epoch": 1,
                "subscribed_topics": ["orders"],
                "assignment": both,
                "target_assignment": both,
            }],
            "offsets": [{
                "topic": "orders",
                "partition": 0,
                "committed_offset": 1,
                "metadata": null,
                "commit_timestamp_ms": commit_timestamp_ms,
                "high_watermark": 3,
                "lag": 2,
            }],
        })
    );
    let message = get(addr, "/v1/groups/nothing")
        .await
        .expect_error(404, "group_not_found");
    assert_eq!(message, "group 'nothing' does not exist");
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Cluster and brokers.

/// `GET /v1/cluster` and `GET /v1/brokers` describe the running broker: the cluster id
/// from its metadata, itself as controller and only broker, its version and client port.
#[tokio::test]
async fn cluster_and_brokers_describe_the_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();

    let response = get(addr, "/v1/cluster").await;
    assert_eq!(response.status, 200);
    let metadata = broker.broker().metadata();
    assert_eq!(
        response.json(),
        json!({
            "cluster_id": metadata.cluster_id,
            "controller_id": 0,
            "broker_count": 1,
            "version": env!("CARGO_PKG_VERSION"),
        })
    );

    let response = get(addr, "/v1/brokers").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"brokers": [{
            "node_id": 0,
            "host": "127.0.0.1",
            "port": broker.client_addr().port(),
        }]})
    );
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Topics.

/// A topic goes through its whole life over HTTP: created with explicit settings and
/// with the broker's defaults, listed, described with its partitions' logs, its config
/// merged (set, remove, keep), deleted, and gone afterwards.
#[tokio::test]
async fn topic_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |config| config.default_partitions = 3).await;
    let addr = broker.http_addr();

    let response = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({
            "name": "orders",
            "partitions": 2,
            "replication_factor": 1,
            "config": {"retention.ms": 86_400_000, "segment.bytes": 16_777_216},
        }),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.header("location"), Some("/v1/topics/orders"));
    let created = response.json();
    assert_eq!(created["name"], "orders");
    assert_eq!(created["replication_factor"], 1);
    assert_eq!(created["internal"], false);
    assert_eq!(
        created["config"],
        json!({"retention.ms": 86_400_000, "segment.bytes": 16_777_216})
    );
    let partitions = created["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    for (index, partition) in partitions.iter().enumerate() {
        assert_eq!(partition["partition"], index);
        assert_eq!(partition["leader"], 0);
        assert_eq!(partition["leader_epoch"], 0);
        assert_eq!(partition["replicas"], json!([0]));
        assert_eq!(partition["isr"], json!([0]));
        assert_eq!(partition["log_start_offset"], 0);
        assert_eq!(partition["log_end_offset"], 0);
        assert_eq!(partition["high_watermark"], 0);
        assert!(partition["size_bytes"].as_u64().is_some());
    }

    // Partitions and replication factor left out: the broker's defaults.
    let response = send_json(addr, "POST", "/v1/topics", &json!({"name": "defaults"})).await;
    assert_eq!(response.status, 201, "{}", response.text());
    let defaults = response.json();
    assert_eq!(defaults["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(defaults["replication_factor"], 1);
    assert_eq!(defaults["config"], json!({}));

    let response = get(addr, "/v1/topics").await;
    assert_eq!(response.status, 200);
    let list = response.json();
    assert_eq!(user_topic_names(&list), ["defaults", "orders"]);
    let orders = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == "orders")
        .unwrap();
    assert_eq!(orders["partition_count"], 2);
    assert_eq!(orders["topic_id"], created["topic_id"]);

    let response = get(addr, "/v1/topics/orders").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), created);

    // Merge: set one key, remove another, keep the rest.
    let response = send_json(
        addr,
        "PATCH",
        "/v1/topics/orders/config",
        &json!({"retention.bytes": 1_073_741_824, "retention.ms": null}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let expected = json!({"retention.bytes": 1_073_741_824, "segment.bytes": 16_777_216});
    assert_eq!(response.json()["config"], expected);
    assert_eq!(
        get(addr, "/v1/topics/orders").await.json()["config"],
        expected
    );
    // The open logs got the change too.
    let log = broker
        .broker()
        .logs
        .get(&fjord_broker::storage::TopicPartition::new("orders", 0))
        .unwrap();
    assert_eq!(log.config().retention_bytes, Some(1 << 30));
    assert_eq!(log.config().segment_bytes, 16 << 20);

    let response = http(addr, "DELETE", "/v1/topics/orders", None).await;
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
    get(addr, "/v1/topics/orders")
        .await
        .expect_error(404, "topic_not_found");
    http(addr, "DELETE", "/v1/topics/orders", None)
        .await
        .expect_error(404, "topic_not_found");
    let list = get(addr, "/v1/topics").await.json();
    assert_eq!(user_topic_names(&list), ["defaults"]);
    // The broker's own topics are listed as internal and cannot be deleted.
    for internal in list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|topic| topic["internal"] == true)
    {
        let path = format!("/v1/topics/{}", internal["name"].as_str().unwrap());
        http(addr, "DELETE", &path, None)
            .await
            .expect_error(403, "topic_protected");
    }
    broker.shutdown().await.unwrap();
}

/// Every way a topic request can be wrong gets the JSON error shape, the fitting
/// status and a message that says what is wrong: 400 for input that is wrong by itself
/// (names, counts, config values, unreadable or unknown JSON), 409 for input that
/// conflicts with the broker's state (an existing name, too few brokers, config that
/// does not fit the broker's defaults), 413, 415, and 404/405 for unknown topics,
/// routes and methods. A refused config change changes nothing.
#[tokio::test]
async fn topic_errors_have_the_json_shape_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let create = |body: Value| async move { send_json(addr, "POST", "/v1/topics", &body).await };

    assert_eq!(create(json!({"name": "taken"})).await.status, 201);
    let message = create(json!({"name": "taken"}))
        .await
        .expect_error(409, "topic_already_exists");
    assert!(message.contains("taken"), "{message}");
    let message = create(json!({"name": "a/b"}))
        .await
        .expect_error(400, "invalid_topic_name");
    assert!(message.contains('/'), "{message}");
    create(json!({"name": ".."}))
        .await
        .expect_error(400, "invalid_topic_name");
    create(json!({"name": "zero", "partitions": 0}))
        .await
        .expect_error(400, "invalid_partitions");
    create(json!({"name": "narrow", "replication_factor": 0}))
        .await
        .expect_error(400, "invalid_replication_factor");
    let message = create(json!({"name": "wide", "replication_factor": 2}))
        .await
        .expect_error(409, "not_enough_brokers");
    assert!(message.contains("number of brokers"), "{message}");
    let message = create(json!({"name": "odd", "config": {"retention.mss": 1}}))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("retention.mss"), "{message}");
    let message = create(json!({"name": "odd", "config": {"retention.ms": "5"}}))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("retention.ms"), "{message}");
    let message = create(json!({"name": "odd", "config": {"retention.ms": -2}}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("retention.ms"), "{message}");
    let message = create(json!({"name": "odd", "config": {"segment.bytes": 1024}}))
        .await
        .expect_error(409, "inconsistent_config");
    assert!(message.contains("max.message.bytes"), "{message}");
    let consistent = json!({"segment.bytes": 1024, "max.message.bytes": 1024});
    assert_eq!(
        create(json!({"name": "odd", "config": consistent}))
            .await
            .status,
        201
    );
    let message = create(json!({"name": "extra", "colour": "blue"}))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("unknown field `colour`"), "{message}");
    let message = create(json!({"partitions": 1}))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("missing field `name`"), "{message}");
    let message = create(json!({"name": "big", "partitions": 1_u64 << 40}))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("partitions"), "{message}");
    // Objects only, although serde's structs would also read an array of the fields.
    let message = create(json!(["array"]))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("a JSON object"), "{message}");
    create(json!({"name": "array", "config": [null, null]}))
        .await
        .expect_error(400, "invalid_request");
    // JSON Schema's integers include `2.0`; `2.5` is no integer.
    let response =
        create(json!({"name": "float", "partitions": 2.0, "config": {"retention.ms": 1000.0}}))
            .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.json()["config"], json!({"retention.ms": 1000}));
    create(json!({"name": "fraction", "partitions": 2.5}))
        .await
        .expect_error(400, "invalid_request");
    http(
        addr,
        "POST",
        "/v1/topics",
        Some(("application/json", b"{\"name\": ")),
    )
    .await
    .expect_error(400, "invalid_request");
    http(
        addr,
        "POST",
        "/v1/topics",
        Some(("text/plain", b"{\"name\": \"plain\"}")),
    )
    .await
    .expect_error(415, "unsupported_media_type");

    // The body limit: a body of exactly the limit is read (and refused for its content),
    // one byte more is refused for its size.
    let body_of = |length: usize| {
        let mut body = b"{\"k\":\"".to_vec();
        body.resize(length - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    let path = "/v1/topics/taken/config";
    let at_limit = body_of(REQUEST_BODY_BYTES_MAX);
    let message = http(addr, "PATCH", path, Some(("application/json", &at_limit)))
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("unknown field `k`"), "{message}");
    let over_limit = body_of(REQUEST_BODY_BYTES_MAX + 1);
    let message = http(addr, "PATCH", path, Some(("application/json", &over_limit)))
        .await
        .expect_error(413, "payload_too_large");
    assert!(
        message.contains(&REQUEST_BODY_BYTES_MAX.to_string()),
        "{message}"
    );

    // Config changes: invalid ones change nothing; unknown topics are 404.
    assert_eq!(
        send_json(
            addr,
            "PATCH",
            path,
            &json!({"segment.bytes": 4_194_304, "max.message.bytes": 65_536})
        )
        .await
        .status,
        200
    );
    let message = send_json(addr, "PATCH", path, &json!({"segment.bytes": 2048}))
        .await
        .expect_error(409, "inconsistent_config");
    assert!(message.contains("max.message.bytes"), "{message}");
    send_json(addr, "PATCH", path, &json!({"segment.bytes": 10}))
        .await
        .expect_error(400, "invalid_config");
    send_json(addr, "PATCH", path, &json!({"durability": "sometimes"}))
        .await
        .expect_error(400, "invalid_request");
    send_json(addr, "PATCH", path, &json!({"durability": 1}))
        .await
        .expect_error(400, "invalid_request");
    send_json(addr, "PATCH", path, &json!(["not", "a", "map"]))
        .await
        .expect_error(400, "invalid_request");
    send_json(addr, "PATCH", path, &json!([null, null]))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(
        get(addr, "/v1/topics/taken").await.json()["config"],
        json!({"segment.bytes": 4_194_304, "max.message.bytes": 65_536})
    );
    send_json(addr, "PATCH", "/v1/topics/nope/config", &json!({}))
        .await
        .expect_error(404, "topic_not_found");
    get(addr, "/v1/topics/nope")
        .await
        .expect_error(404, "topic_not_found");

    // Unknown routes and methods.
    let message = get(addr, "/v2/topics")
        .await
        .expect_error(404, "route_not_found");
    assert!(message.contains("/v2/topics"), "{message}");
    let response = http(addr, "PUT", "/v1/topics", None).await;
    response.expect_error(405, "method_not_allowed");
    let allow = response.header("allow").expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    http(addr, "POST", "/v1/topics/taken", None)
        .await
        .expect_error(405, "method_not_allowed");
    broker.shutdown().await.unwrap();
}

/// Topic creation stops at the broker's partition budget with 409 and a message, and
/// deleting a topic frees its share. A topic whose logs cannot be created is undone:
/// 500 with the storage error, and no half-created topic stays listed.
#[tokio::test]
async fn partition_budget_and_failed_creation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |config| config.max_partitions = 4).await;
    let addr = broker.http_addr();
    let create = |name: &str, partitions: i32| {
        let body = json!({"name": name, "partitions": partitions});
        async move { send_json(addr, "POST", "/v1/topics", &body).await }
    };
    assert_eq!(create("first", 3).await.status, 201);
    let message = create("second", 2)
        .await
        .expect_error(409, "partition_limit_reached");
    assert!(message.contains("3 of 4"), "{message}");
    assert_eq!(create("second", 1).await.status, 201);
    create("third", 1)
        .await
        .expect_error(409, "partition_limit_reached");
    assert_eq!(
        http(addr, "DELETE", "/v1/topics/first", None).await.status,
        204
    );
    assert_eq!(create("third", 3).await.status, 201);

    // A file where the partition's directory must go makes creating its log fail.
    assert_eq!(
        http(addr, "DELETE", "/v1/topics/third", None).await.status,
        204
    );
    let blocker = dir.path().join("blocked-1");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let message = create("blocked", 2)
        .await
        .expect_error(500, "storage_error");
    assert!(message.contains("blocked-1"), "{message}");
    get(addr, "/v1/topics/blocked")
        .await
        .expect_error(404, "topic_not_found");
    assert!(
        !dir.path().join("blocked-0").exists(),
        "the created log was removed"
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a directory");
    let list = get(addr, "/v1/topics").await.json();
    assert_eq!(user_topic_names(&list), ["second"]);
    broker.shutdown().await.unwrap();
}

/// Concurrent config changes of different keys are merged, none lost: the controller
/// validates and commits each change under one lock.
#[tokio::test]
async fn concurrent_config_changes_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    assert_eq!(
        send_json(addr, "POST", "/v1/topics", &json!({"name": "busy"}))
            .await
            .status,
        201
    );
    let changes = [
        ("retention.ms", 60_000),
        ("retention.bytes", 1_048_576),
        ("flush.ms", 100),
        ("flush.bytes", 4096),
        ("min.insync.replicas", 1),
    ];
    let tasks: Vec<_> = changes
        .iter()
        .map(|(key, value)| {
            let body = json!({ *key: *value });
            tokio::spawn(async move {
                send_json(addr, "PATCH", "/v1/topics/busy/config", &body)
                    .await
                    .status
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let config = get(addr, "/v1/topics/busy").await.json()["config"].clone();
    let expected: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    assert_eq!(config, Value::Object(expected));
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Records.

/// The record peek shows committed records with keys, values and headers as text or
/// base64, pages with `limit` and `next_offset` (default limit 10), starts mid-batch,
/// stops at the high watermark even when the log holds more, stops early for large
/// payloads, and refuses bad offsets, limits, partitions and topics.
#[tokio::test]
async fn record_peek_pages_through_committed_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let response = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "peek", "partitions": 2}),
    )
    .await;
    assert_eq!(response.status, 201);

    let mut client = NativeClient::connect(broker.client_addr()).await;
    let first = batch(&[
        RecordInput {
            key: Some(b"k0"),
            value: Some(b"v0"),
            headers: &[HeaderInput {
                key: "trace",
                value: Some(b"abc"),
            }],
            timestamp_ms: 1_700_000_000_000,
        },
        RecordInput {
            key: None,
            value: Some(&[0, 1, 2, 0xff]),
            timestamp_ms: 1_700_000_000_001,
            ..Default::default()
        },
        RecordInput {
            key: Some(b"k2"),
            value: None,
            headers: &[
                HeaderInput {
                    key: "binary",
                    value: Some(&[0xff]),
                },
                HeaderInput {
                    key: "empty",
                    value: None,
                },
            ],
            timestamp_ms: 1_700_000_000_002,
        },
    ]);
    assert_eq!(client.produce("peek", 0, first).await, ErrorCode::None);
    assert_eq!(
        client.produce("peek", 0, values_batch("more", 9)).await,
        ErrorCode::None
    );
    let records_path = "/v1/topics/peek/partitions/0/records";

    let response = get(addr, records_path).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let page = response.json();
    assert_eq!(page["topic"], "peek");
    assert_eq!(page["partition"], 0);
    assert_eq!(page["log_start_offset"], 0);
    assert_eq!(page["high_watermark"], 12);
    assert_eq!(page["next_offset"], 10);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 10, "the default limit");
    assert_eq!(
        records[0],
        json!({
            "offset": 0,
            "timestamp_ms": 1_700_000_000_000_i64,
            "key": {"encoding": "utf8", "data": "k0"},
            "value": {"encoding": "utf8", "data": "v0"},
            "headers": [{"key": "trace", "value": {"encoding": "utf8", "data": "abc"}}],
        })
    );
    assert_eq!(
        records[1],
        json!({
            "offset": 1,
            "timestamp_ms": 1_700_000_000_001_i64,
            "key": null,
            "value": {"encoding": "base64", "data": "AAEC/w=="},
            "headers": [],
        })
    );
    assert_eq!(
        records[2],
        json!({
            "offset": 2,
            "timestamp_ms": 1_700_000_000_002_i64,
            "key": {"encoding": "utf8", "data": "k2"},
            "value": null,
            "headers": [
                {"key": "binary", "value": {"encoding": "base64", "data": "/w=="}},
                {"key": "empty", "value": null},
            ],
        })
    );
    assert_eq!(records[3]["value"]["data"], "more-0");
    assert_eq!(records[9]["offset"], 9);

    // Paging on from next_offset; starting in the middle of a batch.
    let page = get(addr, &format!("{records_path}?offset=10&limit=5"))
        .await
        .json();
    let offsets: Vec<i64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [10, 11]);
    assert_eq!(page["next_offset"], 12);
    let page = get(addr, &format!("{records_path}?offset=1&limit=1"))
        .await
        .json();
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["records"][0]["offset"], 1);
    assert_eq!(page["next_offset"], 2);

    // Records appended but not committed (the high watermark has not moved) stay
    // hidden, while the topic shows both offsets.
    let (_, partition, log) = broker.broker().leader_log_now("peek", 0).unwrap();
    log.append(
        &[RecordBatch::new(values_batch("uncommitted", 1)).unwrap()],
        partition.leader_epoch,
    )
    .unwrap();
    let topic = get(addr, "/v1/topics/peek").await.json();
    assert_eq!(topic["partitions"][0]["log_end_offset"], 13);
    assert_eq!(topic["partitions"][0]["high_watermark"], 12);
    let page = get(addr, &format!("{records_path}?offset=12")).await.json();
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_offset"], 12);
    let page = get(addr, &format!("{records_path}?offset=13")).await.json();
    assert_eq!(page["records"], json!([]));
    let page = get(addr, &format!("{records_path}?offset=5&limit=1000"))
        .await
        .json();
    assert_eq!(page["records"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_offset"], 12);

    // An empty partition.
    let page = get(addr, "/v1/topics/peek/partitions/1/records")
        .await
        .json();
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_offset"], 0);

    // Refusals.
    let message = get(addr, &format!("{records_path}?offset=14"))
        .await
        .expect_error(404, "offset_out_of_range");
    assert!(message.contains("0..13"), "{message}");
    get(addr, &format!("{records_path}?offset=-1"))
        .await
        .expect_error(404, "offset_out_of_range");
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "offset=x",
        "colour=blue",
    ] {
        get(addr, &format!("{records_path}?{query}"))
            .await
            .expect_error(400, "invalid_request");
    }
    let message = get(addr, "/v1/topics/peek/partitions/2/records")
        .await
        .expect_error(404, "partition_not_found");
    assert!(message.contains("has no partition 2"), "{message}");
    get(addr, "/v1/topics/peek/partitions/-1/records")
        .await
        .expect_error(404, "partition_not_found");
    let message = get(addr, "/v1/topics/peek/partitions/first/records")
        .await
        .expect_error(400, "invalid_request");
    assert!(message.contains("partition"), "{message}");
    get(addr, "/v1/topics/nope/partitions/0/records")
        .await
        .expect_error(404, "topic_not_found");

    // Large records: a page stops once 4 MiB of payload are shown.
    let response = send_json(addr, "POST", "/v1/topics", &json!({"name": "large"})).await;
    assert_eq!(response.status, 201);
    let value = vec![b'v'; 2 << 20];
    for _ in 0..3 {
        let large = batch(&[RecordInput {
            value: Some(&value),
            ..Default::default()
        }]);
        assert_eq!(client.produce("large", 0, large).await, ErrorCode::None);
    }
    let page = get(addr, "/v1/topics/large/partitions/0/records?limit=3")
        .await
        .json();
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_offset"], 2);
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Health, readiness and shutdown.

/// The probes and `/metrics` answer before the broker exists, `/readyz` and the `/v1`
/// routes with 503 and the reason; on a started broker `/readyz` is 200; and the HTTP
/// server stops on the broker's shutdown signal.
#[tokio::test]
async fn probes_answer_before_start_and_the_server_stops_with_the_broker() {
    // The HTTP server as Broker::start runs it before storage is open: the recorder
    // installed first. (Without it this test passed only when another test in the
    // binary had started a broker before it.)
    fjord_broker::metrics::install();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, shutdown_receiver) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(fjord_broker::http::serve(
        listener,
        HttpState::starting(),
        shutdown_receiver,
        Duration::from_secs(5),
    ));
    let response = get(addr, "/healthz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"status": "alive"}));
    let message = get(addr, "/readyz").await.expect_error(503, "not_ready");
    assert!(message.contains("opening the data directory"), "{message}");
    get(addr, "/v1/topics").await.expect_error(503, "not_ready");
    get(addr, "/v1/cluster")
        .await
        .expect_error(503, "not_ready");
    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .text()
            .contains("# TYPE fjord_produce_records_total counter")
    );
    assert_eq!(get(addr, "/openapi.json").await.status, 200);
    shutdown.send_replace(true);
    tokio::time::timeout(TIMEOUT, server)
        .await
        .expect("the server stops")
        .unwrap();
    assert_listener_closed(addr);

    // A started broker is ready; its HTTP listener closes with it.
    let dir = tempfile::tempdir().unwrap();
    // Far longer than the test waits: were the idle connection below to hold the
    // shutdown up, only this timeout would end it, and the test would fail.
    let shutdown_timeout = Duration::from_secs(600);
    let broker = start(dir.path(), |config| {
        config.shutdown_timeout_ms = shutdown_timeout.as_millis() as u64
    })
    .await;
    let addr = broker.http_addr();
    assert_ne!(addr.port(), 0);
    let response = get(addr, "/readyz").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"status": "ready"}));
    assert_eq!(get(addr, "/healthz").await.status, 200);
    // An idle keep-alive connection (one request answered, then nothing) does not
    // hold the shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let response = keep_alive_request(&mut idle, addr, "/healthz").await;
    assert_eq!(response.status, 200);
    let started = tokio::time::Instant::now();
    tokio::time::timeout(TIMEOUT, broker.shutdown())
        .await
        .expect("an idle keep-alive connection held the shutdown up")
        .unwrap();
    println!(
        "measured: shutdown with an idle keep-alive connection: {} ms",
        started.elapsed().as_millis()
    );
    assert_listener_closed(addr);
    drop(idle);
}

/// Sends one keep-alive request on `stream` and reads exactly its response (by its
/// Content-Length), leaving the connection open.
async fn keep_alive_request(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    loop {
        if let Some(end) = raw.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .expect("a Content-Length");
            if raw.len() >= end + 4 + length {
                return parse_response(&raw);
            }
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("no response in time")
            .unwrap();
        assert!(read > 0, "the server closed a keep-alive connection");
        raw.extend_from_slice(&chunk[..read]);
    }
}

/// Nothing listens on `addr` any more: binding it succeeds. (Connecting would not
/// prove it: once freed, another test's listener may take the port.)
fn assert_listener_closed(addr: SocketAddr) {
    if let Err(error) = std::net::TcpListener::bind(addr) {
        panic!("{addr} is still bound: {error}");
    }
}

// ---------------------------------------------------------------------------------
// OpenAPI.

const ROUTES: [(&str, &str); 13] = [
    ("get", "/v1/cluster"),
    ("get", "/v1/brokers"),
    ("get", "/v1/topics"),
    ("post", "/v1/topics"),
    ("get", "/v1/topics/{name}"),
    ("delete", "/v1/topics/{name}"),
    ("patch", "/v1/topics/{name}/config"),
    ("get", "/v1/topics/{name}/partitions/{partition}/records"),
    ("get", "/v1/groups"),
    ("get", "/v1/groups/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// `/openapi.json` is an OpenAPI 3.1 document that lists exactly the served routes,
/// documents the error shape on every error response, marks request bodies strict,
/// and every route it lists is served (no `route_not_found`, no 405).
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let document = get(addr, "/openapi.json").await.json();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("503"), "{method} {path}");
                assert!(responses.contains_key("500"), "{method} {path}");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .chain([("get".to_owned(), "/openapi.json".to_owned())])
        .collect();
    expected.sort();
    documented.sort();
    assert_eq!(documented, expected);
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["NewTopic"]["additionalProperties"], false);
    assert!(
        schemas["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("topic_not_found"))
    );

    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "no-such-topic")
            .replace("{partition}", "0")
            .replace("{id}", "no-such-group");
        let response = http(addr, &method.to_uppercase(), &concrete, None).await;
        assert_ne!(response.status, 405, "{method} {path}");
        if response.status == 404 {
            let missing = if path.starts_with("/v1/groups/") {
                "group_not_found"
            } else {
                "topic_not_found"
            };
            assert_eq!(response.json()["error"]["code"], missing, "{method} {path}");
        }
    }
    broker.shutdown().await.unwrap();
}
