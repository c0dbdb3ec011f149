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
use fjord_protocol::messages::{MetadataRequest, MetadataResponse};
use fjord_protocol::{ApiKey, ErrorCode, RecordBatch};
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
// Offline partitions and their recovery.

/// Every record value of `topic`-`partition` from `offset` to the high watermark, by
/// fetching; empty batches (a skipped hole) are passed over like Kafka consumers do.
async fn fetch_values(
    client: &mut NativeClient,
    topic: &str,
    partition: i32,
) -> Vec<(i64, String)> {
    let mut values = Vec::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        let response = client.fetch(topic, partition, offset).await;
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "fetch {topic}-{partition} at {offset}"
        );
        if response.records.is_empty() {
            assert_eq!(offset, response.high_watermark, "stopped early");
            return values;
        }
        for batch in fjord_protocol::batch::RecordBatches::new(response.records) {
            let batch = batch.unwrap();
            batch.verify_crc().unwrap();
            for record in batch.records() {
                let record = record.unwrap();
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                values.push((record.offset, value));
            }
            offset = batch.next_offset();
        }
    }
    panic!("the fetch loop did not end");
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    files.sort();
    files
}

/// The scenario: small segments, many acknowledged records, a sealed segment
/// file removed from the middle of two partitions, clean restart. The broker starts,
/// deletes nothing, serves its other partitions, and shows the two as offline (topic
/// JSON, `/readyz` detail, the offline gauge, KAFKA_STORAGE_ERROR to clients). The
/// operator's `skip_gap` then serves every record but the lost ones, `truncate` every
/// record before the gap; both stay recovered across a restart.
#[tokio::test]
async fn a_lost_segment_takes_only_its_partition_offline_until_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "events", "partitions": 3,
                "config": {"segment.bytes": 4096, "max.message.bytes": 4096, "retention.ms": -1}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut client = NativeClient::connect(broker.client_addr()).await;
    let mut produced: Vec<Vec<(i64, String)>> = vec![Vec::new(); 3];
    for round in 0..300 {
        for (partition, values) in produced.iter_mut().enumerate() {
            let prefix = format!("p{partition}-r{round}");
            let error = client
                .produce("events", partition as i32, values_batch(&prefix, 5))
                .await;
            assert_eq!(error, ErrorCode::None);
            for index in 0..5 {
                values.push((values.len() as i64, format!("{prefix}-{index}")));
            }
        }
    }
    drop(client);
    broker.shutdown().await.unwrap();

    // A sealed segment file removed from the middle of partitions 0 and 1.
    let mut lost = Vec::new();
    let mut files_before = 0;
    for partition in 0..2 {
        let files = segment_files(&dir.path().join(format!("events-{partition}")));
        assert!(files.len() >= 6, "{} segments", files.len());
        files_before += files.len();
        let victim = files[files.len() / 2].clone();
        let next = &files[files.len() / 2 + 1];
        let base =
            |path: &Path| -> i64 { path.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
        lost.push((
            base(&victim),
            base(next),
            victim.file_name().unwrap().to_owned(),
        ));
        std::fs::remove_file(&victim).unwrap();
    }

    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let files_after: usize = (0..2)
        .map(|partition| segment_files(&dir.path().join(format!("events-{partition}"))).len())
        .sum();
    assert_eq!(
        files_after,
        files_before - 2,
        "no segment deleted by recovery"
    );

    let topic = get(addr, "/v1/topics/events").await.json();
    for (partition, (_, _, file)) in lost.iter().enumerate() {
        let state = &topic["partitions"][partition];
        assert_eq!(state["state"], "offline", "{topic}");
        let reason = state["offline_reason"].as_str().unwrap();
        assert!(reason.contains(file.to_str().unwrap()), "{reason}");
    }
    assert_eq!(topic["partitions"][2]["state"], "online");
    assert_eq!(topic["partitions"][2]["offline_reason"], Value::Null);
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    let ready = ready.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["offline_partitions"].as_array().unwrap().len(),
        2,
        "{ready}"
    );
    assert_eq!(ready["offline_partitions"][0]["topic"], "events");
    let metrics = get(addr, "/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|line| line == "fjord_storage_offline_partitions 2"),
        "{metrics}"
    );

    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client
            .produce("events", 0, values_batch("refused", 1))
            .await,
        ErrorCode::StorageError
    );
    assert_eq!(
        client.fetch("events", 1, 0).await.error_code,
        ErrorCode::StorageError
    );
    assert_eq!(fetch_values(&mut client, "events", 2).await, produced[2]);
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            &MetadataRequest {
                topics: Some(vec!["events".into()]),
            },
        )
        .await;
    let codes: Vec<ErrorCode> = metadata.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::StorageError,
            ErrorCode::StorageError,
            ErrorCode::None
        ]
    );

    let recover = |partition: i32, action: &str| {
        let path = format!("/v1/topics/events/partitions/{partition}/recover");
        let body = json!({ "action": action });
        async move { send_json(addr, "POST", &path, &body).await }
    };
    recover(0, "accept_loss")
        .await
        .expect_error(409, "recovery_not_applicable");
    recover(2, "skip_gap")
        .await
        .expect_error(409, "partition_not_offline");
    recover(0, "rewind")
        .await
        .expect_error(400, "invalid_request");

    let recovered = recover(0, "skip_gap").await;
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    let partition = &recovered.json()["partitions"][0];
    assert_eq!(partition["state"], "online");
    assert_eq!(partition["log_end_offset"], 1500);
    let (from, to, _) = &lost[0];
    let kept: Vec<_> = produced[0]
        .iter()
        .filter(|(offset, _)| offset < from || offset >= to)
        .cloned()
        .collect();
    assert_eq!(fetch_values(&mut client, "events", 0).await, kept);

    let recovered = recover(1, "truncate").await;
    assert_eq!(recovered.status, 200, "{}", recovered.text());
    let (from, _, _) = &lost[1];
    let before_gap = produced[1][..*from as usize].to_vec();
    assert_eq!(fetch_values(&mut client, "events", 1).await, before_gap);
    assert_eq!(
        client.produce("events", 1, values_batch("after", 1)).await,
        ErrorCode::None
    );
    let ready = get(addr, "/readyz").await.json();
    assert_eq!(ready, json!({"status": "ready"}));
    drop(client);
    broker.shutdown().await.unwrap();

    let broker = start(dir.path(), |_| {}).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(fetch_values(&mut client, "events", 0).await, kept);
    assert_eq!(
        fetch_values(&mut client, "events", 1).await.len(),
        before_gap.len() + 1
    );
    drop(client);
    broker.shutdown().await.unwrap();
}

/// A partition directory deleted while the broker was down (a replaced disk, an
/// operator's mistake) does not come back empty as if nothing happened: the partition
/// is offline, saying what is missing, until `accept_loss`, which recreates it with its
/// log start at the old end (no offset is reused; consumers below it get
/// OFFSET_OUT_OF_RANGE, as after retention) and a bumped leader epoch. A deleted
/// directory of an empty partition is recreated: nothing was lost.
#[tokio::test]
async fn a_deleted_partition_directory_is_offline_until_the_loss_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "vanish", "partitions": 2, "config": {"retention.ms": -1}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let epoch = created.json()["partitions"][0]["leader_epoch"]
        .as_i64()
        .unwrap();
    let mut client = NativeClient::connect(broker.client_addr()).await;
    for round in 0..10 {
        let error = client
            .produce("vanish", 0, values_batch(&format!("r{round}"), 5))
            .await;
        assert_eq!(error, ErrorCode::None);
    }
    drop(client);
    broker.shutdown().await.unwrap();
    for partition in 0..2 {
        std::fs::remove_dir_all(dir.path().join(format!("vanish-{partition}"))).unwrap();
    }

    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let topic = get(addr, "/v1/topics/vanish").await.json();
    let partition = &topic["partitions"][0];
    assert_eq!(partition["state"], "offline", "{topic}");
    // The restart moved the leadership away and back (a controlled shutdown fenced
    // the broker, the new process was unfenced), each a new leader epoch.
    assert!(
        partition["leader_epoch"].as_i64().unwrap() > epoch,
        "{topic}"
    );
    let epoch = partition["leader_epoch"].as_i64().unwrap();
    let reason = partition["offline_reason"].as_str().unwrap();
    assert!(
        reason.contains("vanish-0") && reason.contains("missing"),
        "{reason}"
    );
    assert!(reason.contains("offset 50"), "{reason}");
    assert_eq!(topic["partitions"][1]["state"], "online");
    assert!(
        !dir.path().join("vanish-0").exists(),
        "not recreated before the operator decides"
    );
    send_json(
        addr,
        "POST",
        "/v1/topics/vanish/partitions/0/recover",
        &json!({"action": "skip_gap"}),
    )
    .await
    .expect_error(409, "recovery_not_applicable");
    let accepted = send_json(
        addr,
        "POST",
        "/v1/topics/vanish/partitions/0/recover",
        &json!({"action": "accept_loss"}),
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let partition = accepted.json()["partitions"][0].clone();
    assert_eq!(partition["state"], "online");
    assert_eq!(partition["log_start_offset"], 50);
    assert_eq!(partition["log_end_offset"], 50);
    assert_eq!(partition["high_watermark"], 50);
    assert_eq!(partition["leader_epoch"], epoch + 1);
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.fetch("vanish", 0, 0).await.error_code,
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        client.produce("vanish", 0, values_batch("new", 2)).await,
        ErrorCode::None
    );
    let response = client.fetch("vanish", 0, 50).await;
    let first = fjord_protocol::batch::RecordBatches::new(response.records)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(first.base_offset(), 50);
    drop(client);
    broker.shutdown().await.unwrap();

    // Deleting the topic forgets the partition: a new topic of the same name whose
    // directory is then removed holds nothing, so nothing is reported lost.
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    assert_eq!(
        get(addr, "/v1/topics/vanish").await.json()["partitions"][0]["log_end_offset"],
        52
    );
    assert_eq!(
        http(addr, "DELETE", "/v1/topics/vanish", None).await.status,
        204
    );
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "vanish", "partitions": 1}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    broker.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir.path().join("vanish-0")).unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let topic = get(broker.http_addr(), "/v1/topics/vanish").await.json();
    assert_eq!(topic["partitions"][0]["state"], "online", "{topic}");
    broker.shutdown().await.unwrap();
}

/// A flipped bit in one segment's file header costs that partition only: the broker
/// starts and serves the others, the partition is offline naming the file, and
/// `skip_gap` repairs the header and serves every record.
#[tokio::test]
async fn a_damaged_segment_header_costs_only_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "flip", "partitions": 2,
                "config": {"segment.bytes": 4096, "max.message.bytes": 4096, "retention.ms": -1}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut client = NativeClient::connect(broker.client_addr()).await;
    for round in 0..100 {
        for partition in 0..2 {
            let prefix = format!("p{partition}-r{round}");
            assert_eq!(
                client
                    .produce("flip", partition, values_batch(&prefix, 5))
                    .await,
                ErrorCode::None
            );
        }
    }
    let expected = fetch_values(&mut client, "flip", 0).await;
    let other = fetch_values(&mut client, "flip", 1).await;
    drop(client);
    broker.shutdown().await.unwrap();
    let files = segment_files(&dir.path().join("flip-0"));
    let victim = &files[1];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[2] ^= 0x04;
    std::fs::write(victim, &bytes).unwrap();

    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let topic = get(addr, "/v1/topics/flip").await.json();
    assert_eq!(topic["partitions"][0]["state"], "offline");
    let reason = topic["partitions"][0]["offline_reason"].as_str().unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        reason.contains(name) && reason.contains("magic"),
        "{reason}"
    );
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(fetch_values(&mut client, "flip", 1).await, other);
    let repaired = send_json(
        addr,
        "POST",
        "/v1/topics/flip/partitions/0/recover",
        &json!({"action": "skip_gap"}),
    )
    .await;
    assert_eq!(repaired.status, 200, "{}", repaired.text());
    assert_eq!(fetch_values(&mut client, "flip", 0).await, expected);
    drop(client);
    broker.shutdown().await.unwrap();
}

/// A start that fails after the partition logs were opened (here the consumer offsets
/// cannot be replayed: a batch in the middle of their partition is damaged, which a
/// clean open does not walk over) closes the logs it opened cleanly, so that the next
/// start does not take every log for crashed and scan it again.
#[tokio::test]
async fn a_failed_start_leaves_the_logs_clean() {
    let dir = tempfile::tempdir().unwrap();
    let one_offsets_partition = |config: &mut BrokerConfig| config.offsets_topic_partitions = 1;
    let broker = start(dir.path(), one_offsets_partition).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "kept", "partitions": 1, "config": {"retention.ms": -1}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.produce("kept", 0, values_batch("kept", 100)).await,
        ErrorCode::None
    );
    let member = client.join_group("keepers", "kept").await;
    for offset in 1..=100 {
        assert_eq!(
            client.commit("keepers", &member, "kept", 0, offset).await,
            ErrorCode::None
        );
    }
    drop(client);
    broker.shutdown().await.unwrap();

    let offsets = segment_files(&dir.path().join("__consumer_offsets-0"))[0].clone();
    let mut bytes = std::fs::read(&offsets).unwrap();
    assert!(
        bytes.len() > 2 * 4096,
        "{} bytes: too few index entries",
        bytes.len()
    );
    let second_batch = 24 + 12 + u32::from_be_bytes(bytes[32..36].try_into().unwrap()) as usize;
    bytes[second_batch + 8] ^= 0x40;
    std::fs::write(&offsets, &bytes).unwrap();

    let mut config = BrokerConfig::for_tests(dir.path());
    one_offsets_partition(&mut config);
    let error = Broker::start(config).await.unwrap_err();
    println!("start failed as expected: {error:#}");
    let (_, report) = fjord_broker::storage::PartitionLog::open(
        &dir.path().join("kept-0"),
        fjord_broker::storage::LogConfig::default(),
        std::sync::Arc::new(fjord_broker::storage::SystemClock),
    )
    .unwrap();
    assert!(
        report.clean_shutdown,
        "the failed start left the log unclean"
    );
}

/// The record view verifies CRCs like the native consumer: after one flipped bit in a
/// stored value it answers `storage_error` instead of serving the altered value.
#[tokio::test]
async fn the_record_view_refuses_a_damaged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();
    let created = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "crc", "partitions": 1, "config": {"retention.ms": -1}}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.produce("crc", 0, values_batch("value", 3)).await,
        ErrorCode::None
    );
    drop(client);
    let path = "/v1/topics/crc/partitions/0/records";
    let page = get(addr, path).await.json();
    assert_eq!(page["records"][1]["value"]["data"], "value-1");
    broker.shutdown().await.unwrap();

    let segment = segment_files(&dir.path().join("crc-0"))[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(7)
        .position(|window| window == b"value-1")
        .unwrap();
    bytes[at + 6] ^= 0x01; // "value-1" becomes "value-0"
    std::fs::write(&segment, &bytes).unwrap();

    let broker = start(dir.path(), |_| {}).await;
    let message = get(broker.http_addr(), path)
        .await
        .expect_error(500, "storage_error");
    assert!(message.contains("CRC-32C mismatch"), "{message}");
    broker.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Cluster and brokers.

/// `GET /v1/cluster` and `GET /v1/brokers` describe the running broker: the cluster id
/// from its metadata, itself as controller and only broker, its version and client port,
/// and its metadata quorum: a quorum of one that it leads, with everything in its log
/// committed and applied, and itself as the only voter at its internal listener.
#[tokio::test]
async fn cluster_and_brokers_describe_the_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), |_| {}).await;
    let addr = broker.http_addr();

    // The quorum's log positions come from openraft's metrics, which trail an entry's
    // application by a moment: wait until they have caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let cluster = loop {
        let response = get(addr, "/v1/cluster").await;
        assert_eq!(response.status, 200);
        let cluster = response.json();
        let quorum = &cluster["quorum"];
        if quorum["last_log_index"] == quorum["applied_index"] {
            break cluster;
        }
        assert!(std::time::Instant::now() < deadline, "{cluster}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let metadata = broker.broker().metadata();
    let applied = metadata.applied_position().unwrap();
    let term = cluster["quorum"]["term"].as_u64().unwrap();
    assert!(term >= 1, "{cluster}");
    assert_eq!(
        cluster,
        json!({
            "cluster_id": metadata.cluster_id,
            "controller_id": 0,
            "broker_count": 1,
            "brokers": [{
                "node_id": 0,
                "host": "127.0.0.1",
                "port": broker.client_addr().port(),
                "external_address": null,
                "rack": null,
                "fenced": false,
                "broker_epoch": metadata.brokers[&0].broker_epoch,
                "incarnation_id": metadata.brokers[&0].incarnation_id.to_string(),
            }],
            "version": env!("CARGO_PKG_VERSION"),
            "quorum": {
                "role": "leader",
                "leader": 0,
                "term": term,
                "last_log_index": applied.index,
                "committed_index": applied.index,
                "applied_index": applied.index,
                "snapshot_index": null,
                "voters": [{
                    "node_id": 0,
                    "address": broker.internal_addr().to_string(),
                    "matched_index": applied.index,
                    "lag": 0,
                }],
                "learners": [],
            },
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
            "external_address": null,
            "rack": null,
            "fenced": false,
            "broker_epoch": 1,
            "incarnation_id": metadata.brokers[&0].incarnation_id.to_string(),
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
    // Config errors are invalid_config with a message naming the setting: an unknown
    // key, a wrong type, a value outside the type's range or an unsupported choice.
    let message = create(json!({"name": "odd", "config": {"retention.mss": 1}}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("retention.mss"), "{message}");
    let message = create(json!({"name": "odd", "config": {"retention.ms": "5"}}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("retention.ms"), "{message}");
    let message = create(json!({"name": "odd", "config": {"cleanup.policy": "compact"}}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("cleanup.policy"), "{message}");
    let message = create(json!({"name": "odd", "config": {"min.insync.replicas": 40_000}}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("min.insync.replicas"), "{message}");
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
        .expect_error(400, "invalid_config");
    assert!(message.contains("unknown topic config `k`"), "{message}");
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
    let message = send_json(addr, "PATCH", path, &json!({"durability": "sometimes"}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("durability"), "{message}");
    send_json(addr, "PATCH", path, &json!({"durability": 1}))
        .await
        .expect_error(400, "invalid_config");
    let message = send_json(addr, "PATCH", path, &json!({"flush.ms": 1.5}))
        .await
        .expect_error(400, "invalid_config");
    assert!(message.contains("flush.ms"), "{message}");
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

/// During a graceful shutdown the HTTP server keeps answering, `/readyz` with 503 and
/// "shutting down", for as long as the broker is stopping: here, until a request it
/// had partly received is complete and answered with BROKER_SHUTTING_DOWN. Then the
/// HTTP server stops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_broker_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    // Shutdown would give up on the partial request after `shutdown_timeout_ms` and
    // close its connection; on a loaded machine that could come first.
    let broker = start(dir.path(), |config| config.shutdown_timeout_ms = 600_000).await;
    let http_addr = broker.http_addr();
    assert_eq!(get(http_addr, "/readyz").await.status, 200);
    let memory = broker.broker().request_memory.clone();
    let idle = memory.available_bytes();
    let mut client = NativeClient::connect(broker.client_addr()).await;
    let header = fjord_protocol::frame::RequestHeader {
        api_key: ApiKey::Metadata.code(),
        api_version: 0,
        correlation_id: 7,
        client_id: Some("http-test".into()),
    };
    let mut frame = bytes::BytesMut::new();
    fjord_protocol::frame::encode_request(&mut frame, &header, |out| {
        fjord_protocol::messages::Message::encode(&MetadataRequest { topics: None }, out)
    });
    // A full request first, so that the connection has been accepted: one still in the
    // listener's backlog when shutdown closes the listener is reset.
    let _: MetadataResponse = client
        .call(ApiKey::Metadata, &MetadataRequest { topics: None })
        .await;
    // The first request's memory is released just after its response is written.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while memory.available_bytes() != idle {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first request's memory was never released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first, rest) = frame.split_at(frame.len() - 1);
    tokio::io::AsyncWriteExt::write_all(&mut client.stream, first)
        .await
        .unwrap();
    // The broker has read the frame's length and reserved it whole: a connection with
    // nothing received when shutdown begins is idle, and closes at once.
    while memory.available_bytes() != idle - frame.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never read the partial request"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = tokio::spawn(broker.shutdown());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let response = get(http_addr, "/readyz").await;
        if response.status == 503 {
            let message = response.expect_error(503, "not_ready");
            assert!(message.contains("shutting down"), "{message}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said the broker is shutting down"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !stopping.is_finished(),
        "the partial request holds shutdown up"
    );
    tokio::io::AsyncWriteExt::write_all(&mut client.stream, rest)
        .await
        .unwrap();
    let (answer, _) = client.receive().await;
    assert_eq!(
        (answer.correlation_id, answer.error_code),
        (7, ErrorCode::BrokerShuttingDown)
    );
    tokio::time::timeout(TIMEOUT, stopping)
        .await
        .expect("shutdown finishes")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(http_addr).await.is_err(),
        "the HTTP server stopped last"
    );
}

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

const ROUTES: [(&str, &str); 14] = [
    ("get", "/v1/cluster"),
    ("get", "/v1/brokers"),
    ("get", "/v1/topics"),
    ("post", "/v1/topics"),
    ("get", "/v1/topics/{name}"),
    ("delete", "/v1/topics/{name}"),
    ("patch", "/v1/topics/{name}/config"),
    ("get", "/v1/topics/{name}/partitions/{partition}/records"),
    ("post", "/v1/topics/{name}/partitions/{partition}/recover"),
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
