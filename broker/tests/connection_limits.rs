//! The client listener's limits over real TCP on 127.0.0.1, with the broker in process:
//! stalled frames, oversized requests, the connection cap, the order of pipelined
//! produce requests, and requests that arrive during shutdown.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_broker::Broker;
use fjord_broker::config::BrokerConfig;
use fjord_protocol::batch::{BatchBuilder, RecordBatches, RecordInput};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::AsyncWriteExt;

mod common;
use common::raw_client::{RawClient, now_ms};

fn batch(value: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.push(&RecordInput {
        key: None,
        value: Some(value.as_bytes()),
        timestamp_ms: now_ms(),
        ..Default::default()
    });
    builder.finish()
}

fn produce_request(topic: &str, acks: Acks, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: acks.code(),
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition: 0,
                current_leader_epoch: -1,
                records,
            }],
        }],
    }
}

fn fetch_request(topic: &str, offset: i64) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
            }],
        }],
    }
}

/// Every value stored in partition 0 of `topic`, in offset order.
async fn stored_values(client: &mut RawClient, topic: &str) -> Vec<String> {
    let mut values = Vec::new();
    for _ in 0..1_000 {
        let response: FetchResponse = client
            .call(ApiKey::Fetch, &fetch_request(topic, values.len() as i64))
            .await;
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, ErrorCode::None);
        if partition.records.is_empty() {
            break;
        }
        for batch in RecordBatches::new(partition.records.clone()) {
            for record in batch.unwrap().records() {
                let record = record.unwrap();
                assert_eq!(record.offset, values.len() as i64);
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    values
}

/// Forty connections that each announce a frame of `max_request_bytes` (together far
/// more than `request_memory_bytes`) and send nothing more: another client is served
/// as usual, and each of them is closed once `request_read_timeout_ms` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_that_never_arrive_lock_nobody_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.request_read_timeout_ms = 1_000;
    let max_request_bytes = config.max_request_bytes;
    let broker = Broker::start(config).await.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut client = RawClient::connect(broker.client_addr()).await;
        client
            .stream
            .write_all(&(max_request_bytes as i32).to_be_bytes())
            .await
            .unwrap();
        stalled.push(client);
    }
    let mut honest = RawClient::connect(broker.client_addr()).await;
    honest.create_topic("served").await;
    let response: ProduceResponse = honest
        .call(
            ApiKey::Produce,
            &produce_request("served", Acks::Leader, batch("still served")),
        )
        .await;
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    assert_eq!(stored_values(&mut honest, "served").await, ["still served"]);
    for client in &mut stalled {
        assert!(
            client.receive().await.is_none(),
            "a stalled frame must close its connection after request_read_timeout_ms"
        );
    }
    broker.shutdown().await.unwrap();
}

/// A request over `max_request_bytes` (but within a frame) is read, discarded and
/// answered with INVALID_REQUEST; the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_answered_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.max_request_bytes = 64 * 1024;
    config.max_message_bytes = 64 * 1024;
    let broker = Broker::start(config).await.unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    client.create_topic("small").await;
    let value = "x".repeat(300 * 1024);
    let correlation_id = client
        .send(
            ApiKey::Produce,
            &produce_request("small", Acks::Leader, batch(&value)),
        )
        .await;
    let (header, _) = client.receive().await.expect("an answer, not a close");
    assert_eq!(header.correlation_id, correlation_id);
    assert_eq!(header.error_code, ErrorCode::InvalidRequest);
    let versions: ApiVersionsResponse = client.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    assert_eq!(versions, ApiVersionsResponse::current());
    assert!(stored_values(&mut client, "small").await.is_empty());
    broker.shutdown().await.unwrap();
}

/// A connection over `max_connections` gets BROKER_BUSY in answer to its first
/// request, then is closed; the connection within the cap keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_over_the_cap_is_told_the_broker_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.max_connections = 1;
    let broker = Broker::start(config).await.unwrap();
    let mut first = RawClient::connect(broker.client_addr()).await;
    let _: ApiVersionsResponse = first.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let mut second = RawClient::connect(broker.client_addr()).await;
    let correlation_id = second.send(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let (header, body) = second
        .receive()
        .await
        .expect("BROKER_BUSY, not a bare close");
    assert_eq!(header.correlation_id, correlation_id);
    assert_eq!(header.error_code, ErrorCode::BrokerBusy);
    assert!(body.is_empty());
    assert!(
        second.receive().await.is_none(),
        "then the connection is closed"
    );
    let _: ApiVersionsResponse = first.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    broker.shutdown().await.unwrap();
}

/// Produce requests sent back to back on one connection to one partition are appended
/// in the order sent, acks=none ones included, in every one of many rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produce_requests_are_appended_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    client.create_topic("ordered").await;
    let mut expected = Vec::new();
    for round in 0..20 {
        let mut out = BytesMut::new();
        let mut answered = Vec::new();
        for index in 0..6 {
            let value = format!("r{round}-{index}");
            let acks = if index % 2 == 0 {
                Acks::None
            } else {
                Acks::Leader
            };
            let (correlation_id, frame) = client.encode(
                ApiKey::Produce,
                &produce_request("ordered", acks, batch(&value)),
            );
            out.extend_from_slice(&frame);
            if acks != Acks::None {
                answered.push(correlation_id);
            }
            expected.push(value);
        }
        client.stream.write_all(&out).await.unwrap();
        let mut offsets = Vec::new();
        for correlation_id in answered {
            let (header, body) = client.receive().await.unwrap();
            assert_eq!(header.correlation_id, correlation_id);
            let response = ProduceResponse::decode_body(body).unwrap();
            assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
            offsets.push(response.topics[0].partitions[0].base_offset);
        }
        assert!(
            offsets.is_sorted(),
            "round {round}: base offsets {offsets:?}"
        );
    }
    // acks=none records become visible once durable: wait for all of them.
    let mut stored = Vec::new();
    for _ in 0..300 {
        stored = stored_values(&mut client, "ordered").await;
        if stored.len() == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, expected);
    broker.shutdown().await.unwrap();
}

/// A request that arrives once shutdown has begun is answered BROKER_SHUTTING_DOWN:
/// its first bytes reach the broker before the shutdown, the rest after (once an idle
/// connection has been closed, which shows the shutdown has begun).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_during_shutdown_is_answered_broker_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let mut idle = RawClient::connect(broker.client_addr()).await;
    let _: ApiVersionsResponse = idle.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let mut late = RawClient::connect(broker.client_addr()).await;
    // One write: a whole request, then the first bytes of the next. The answer to the
    // first shows that the broker has read both (they arrive as one segment).
    let (first, mut out) = late.encode(ApiKey::ApiVersions, &ApiVersionsRequest);
    let (correlation_id, frame) = late.encode(ApiKey::ApiVersions, &ApiVersionsRequest);
    out.extend_from_slice(&frame[..6]);
    late.stream.write_all(&out).await.unwrap();
    let (header, _) = late.receive().await.unwrap();
    assert_eq!(
        (header.correlation_id, header.error_code),
        (first, ErrorCode::None)
    );

    let stopping = tokio::spawn(broker.shutdown());
    assert!(
        idle.receive().await.is_none(),
        "an idle connection closes at shutdown"
    );
    late.stream.write_all(&frame[6..]).await.unwrap();
    let (header, body) = late.receive().await.expect("an answer to the late request");
    assert_eq!(header.correlation_id, correlation_id);
    assert_eq!(header.error_code, ErrorCode::BrokerShuttingDown);
    assert!(body.is_empty());
    assert!(late.receive().await.is_none());
    stopping.await.unwrap().unwrap();
}

/// One connection that stops reading while pipelining large produce requests holds at
/// most its share of `request_memory_bytes` (a quarter here), so another client's
/// large produce still gets through at once, not after the stalled connection's
/// responses time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_take_all_request_memory() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.max_request_bytes = MIB;
    config.max_message_bytes = MIB as u32;
    config.request_memory_bytes = 4 * MIB;
    config.response_write_timeout_ms = 600_000;
    config.log_durability = fjord_broker::config::DurabilityPolicy::Interval;
    let broker = Broker::start(config).await.unwrap();
    let mut admin = RawClient::connect(broker.client_addr()).await;
    admin.create_topic("bulk").await;
    let value = "v".repeat(MIB / 2);
    for _ in 0..64 {
        let response: ProduceResponse = admin
            .call(
                ApiKey::Produce,
                &produce_request("bulk", Acks::Leader, batch(&value)),
            )
            .await;
        assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    }

    // The stalled client: a 32 MiB fetch it never reads blocks its responses, then
    // produce requests of almost 1 MiB each, whose memory stays held behind it.
    let mut stalled = RawClient::connect(broker.client_addr()).await;
    let mut fetch = fetch_request("bulk", 0);
    fetch.max_bytes = 32 * MIB as i32;
    fetch.topics[0].partitions[0].partition_max_bytes = 32 * MIB as i32;
    stalled.send(ApiKey::Fetch, &fetch).await;
    let big = "s".repeat(MIB - 1024);
    let mut out = BytesMut::new();
    for _ in 0..8 {
        let request = produce_request("bulk", Acks::Leader, batch(&big));
        out.extend_from_slice(&stalled.encode(ApiKey::Produce, &request).1);
    }
    let writing = tokio::spawn(async move {
        // Blocks once the broker stops reading; the test ends before that matters.
        stalled.stream.write_all(&out).await.ok();
        stalled
    });

    let mut honest = RawClient::connect(broker.client_addr()).await;
    let response: ProduceResponse = honest
        .call(
            ApiKey::Produce,
            &produce_request("bulk", Acks::Leader, batch(&big)),
        )
        .await;
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    writing.abort();
    broker.shutdown().await.unwrap();
}

/// Frames received in part that together need more than `request_memory_bytes` all
/// complete: each is reserved whole before the rest of it is read, so no partial frame
/// holds memory another needs. Eight connections send the first half of a ~1 MiB
/// produce (4 MiB of budget, so the halves alone would fill it), then the second
/// halves; with `request_read_timeout_ms` far beyond the test's patience, a stall
/// would show as a missing answer, not as a timeout that closes a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_beyond_request_memory_all_complete() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.max_request_bytes = MIB;
    config.max_message_bytes = MIB as u32;
    config.request_memory_bytes = 4 * MIB;
    config.request_read_timeout_ms = 600_000;
    let broker = Broker::start(config).await.unwrap();
    let mut admin = RawClient::connect(broker.client_addr()).await;
    admin.create_topic("halves").await;

    let value = "h".repeat(MIB - 4096);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut client = RawClient::connect(broker.client_addr()).await;
        let (_, frame) = client.encode(
            ApiKey::Produce,
            &produce_request("halves", Acks::Leader, batch(&value)),
        );
        clients.push((client, frame.freeze()));
    }
    // Writes block while the broker is not reading a connection, so each connection
    // writes from its own task.
    let mut tasks = Vec::new();
    for (mut client, frame) in clients {
        let (first, second) = frame.split_at(frame.len() / 2);
        let (first, second) = (first.to_vec(), second.to_vec());
        let (halfway, all_halves) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            client.stream.write_all(&first).await.unwrap();
            all_halves.await.unwrap();
            client.stream.write_all(&second).await.unwrap();
            let (header, body) = client.receive().await.expect("an answer");
            assert_eq!(header.error_code, ErrorCode::None);
            let response = ProduceResponse::decode_body(body).unwrap();
            let partition = &response.topics[0].partitions[0];
            assert_eq!(partition.error_code, ErrorCode::None);
            partition.base_offset
        });
        tasks.push((task, halfway));
    }
    // Give the first halves time to arrive before any second half is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut offsets = Vec::new();
    let mut waiting = Vec::new();
    for (task, halfway) in tasks {
        halfway.send(()).unwrap();
        waiting.push(task);
    }
    for task in waiting {
        let offset = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("every produce is answered: reading stalled")
            .unwrap();
        offsets.push(offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..8).collect::<Vec<i64>>());
    broker.shutdown().await.unwrap();
}

/// An oversized request read ahead whole together with the requests pipelined behind
/// it (`max_request_bytes` below a read chunk) is discarded alone: the requests behind
/// it are answered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_behind_an_oversized_one_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::for_tests(dir.path());
    config.max_request_bytes = 1024;
    config.max_message_bytes = 1024;
    let broker = Broker::start(config).await.unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    client.create_topic("small").await;
    let (oversized, mut out) = client.encode(
        ApiKey::Produce,
        &produce_request("small", Acks::Leader, batch(&"x".repeat(2000))),
    );
    let (behind, versions) = client.encode(ApiKey::ApiVersions, &ApiVersionsRequest);
    out.extend_from_slice(&versions);
    let (last, small) = client.encode(
        ApiKey::Produce,
        &produce_request("small", Acks::Leader, batch("fits")),
    );
    out.extend_from_slice(&small);
    client.stream.write_all(&out).await.unwrap();
    let (header, _) = client.receive().await.expect("an answer, not a close");
    assert_eq!(
        (header.correlation_id, header.error_code),
        (oversized, ErrorCode::InvalidRequest)
    );
    let (header, body) = client.receive().await.expect("the request behind it");
    assert_eq!(
        (header.correlation_id, header.error_code),
        (behind, ErrorCode::None)
    );
    assert_eq!(
        ApiVersionsResponse::decode_body(body).unwrap(),
        ApiVersionsResponse::current()
    );
    let (header, body) = client.receive().await.expect("the last request");
    assert_eq!(header.correlation_id, last);
    let response = ProduceResponse::decode_body(body).unwrap();
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    assert_eq!(stored_values(&mut client, "small").await, ["fits"]);
    broker.shutdown().await.unwrap();
}
