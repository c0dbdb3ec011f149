//! The broker over real TCP on 127.0.0.1: produce and fetch, long-polling, pipelining,
//! topics, offsets, every kind of bad input, limits, graceful restart, and a real
//! `fjord-broker` process killed with SIGKILL mid-stream.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_broker::Broker;
use fjord_broker::config::BrokerConfig;
use fjord_protocol::batch::{BatchBuilder, RecordBatches, RecordInput};
use fjord_protocol::frame::{
    Decoded, RequestHeader, ResponseHeader, decode_frame, encode_request, split_response,
};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{BrokerProcess, PROCESS_PATIENCE, respawn_on};

/// A minimal client speaking the raw protocol, so that tests control every byte.
struct TestClient {
    stream: TcpStream,
    next_correlation_id: i32,
    buffer: BytesMut,
}

impl TestClient {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
            buffer: BytesMut::new(),
        }
    }

    async fn send_version(&mut self, api: ApiKey, version: i16, body: &impl Message) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: api.code(),
            api_version: version,
            correlation_id,
            client_id: Some("test".into()),
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, |out| body.encode(out));
        self.stream.write_all(&out).await.unwrap();
        correlation_id
    }

    async fn send(&mut self, api: ApiKey, body: &impl Message) -> i32 {
        self.send_version(api, 0, body).await
    }

    /// The next response frame, or `None` when the broker closed the connection.
    async fn receive(&mut self) -> Option<(ResponseHeader, Bytes)> {
        loop {
            if let Ok(Decoded::Complete { consumed, .. }) = decode_frame(&self.buffer) {
                return Some(split_response(self.buffer.split_to(consumed).freeze()).unwrap());
            }
            let read = tokio::time::timeout(
                Duration::from_secs(20),
                self.stream.read_buf(&mut self.buffer),
            )
            .await
            .expect("no response within 20 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn call<T: Message>(&mut self, api: ApiKey, body: &impl Message) -> T {
        let correlation_id = self.send(api, body).await;
        let (header, body) = self.receive().await.expect("connection closed");
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(header.error_code, ErrorCode::None);
        T::decode_body(body).unwrap()
    }

    async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> CreateTopicResult {
        let configs = configs
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect();
        let request = CreateTopicsRequest {
            topics: vec![CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs,
            }],
            timeout_ms: 5000,
            validate_only: false,
        };
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, &request).await;
        response.topics.into_iter().next().unwrap()
    }

    async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: Acks,
        records: Bytes,
    ) -> ProducePartitionResponse {
        let request = produce_request(topic, partition, acks, records);
        let response: ProduceResponse = self.call(ApiKey::Produce, &request).await;
        response.topics[0].partitions[0].clone()
    }

    async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> FetchPartitionResponse {
        let response: FetchResponse = self
            .call(
                ApiKey::Fetch,
                &fetch_request(topic, partition, offset, max_wait_ms),
            )
            .await;
        response.topics[0].partitions[0].clone()
    }
}

fn produce_request(topic: &str, partition: i32, acks: Acks, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: acks.code(),
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch: -1,
                records,
            }],
        }],
    }
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                current_leader_epoch: -1,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
            }],
        }],
    }
}

/// A batch of values `prefix-0`, `prefix-1`, … stamped at `timestamp_ms`.
fn batch(prefix: &str, count: usize, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for index in 0..count {
        let value = format!("{prefix}-{index}");
        builder.push(&RecordInput {
            key: Some(prefix.as_bytes()),
            value: Some(value.as_bytes()),
            timestamp_ms,
            ..Default::default()
        });
    }
    builder.finish()
}

fn values(records: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for batch in RecordBatches::new(records) {
        for record in batch.unwrap().records() {
            let record = record.unwrap();
            out.push((
                record.offset,
                String::from_utf8(record.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

/// Polls `condition` until it holds, failing the test after 30 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PROCESS_PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn test_config(dir: &Path) -> BrokerConfig {
    BrokerConfig::for_tests(dir)
}

/// Produce with each acks level and fetch back: offsets are assigned in order, the
/// records come back byte for byte, and acks=none gets no response but is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.create_topic("orders", 2, &[]).await.error_code,
        ErrorCode::None
    );

    let first = client
        .produce("orders", 1, Acks::Leader, batch("a", 3, 1000))
        .await;
    assert_eq!((first.error_code, first.base_offset), (ErrorCode::None, 0));
    let second = client
        .produce("orders", 1, Acks::All, batch("b", 2, 1000))
        .await;
    assert_eq!(
        (second.error_code, second.base_offset),
        (ErrorCode::None, 3)
    );
    client
        .send(
            ApiKey::Produce,
            &produce_request("orders", 1, Acks::None, batch("c", 1, 1000)),
        )
        .await;

    // acks=none sends nothing back, so the next response is the fetch's.
    let mut fetched = Vec::new();
    while fetched.len() < 6 {
        let response = client.fetch("orders", 1, fetched.len() as i64, 5000).await;
        assert_eq!(response.error_code, ErrorCode::None);
        fetched.extend(values(response.records));
    }
    let expected: Vec<_> = ["a-0", "a-1", "a-2", "b-0", "b-1", "c-0"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    assert_eq!(fetched, expected);
    let empty = client.fetch("orders", 0, 0, 0).await;
    assert_eq!(
        (empty.error_code, empty.high_watermark, empty.records.len()),
        (ErrorCode::None, 0, 0)
    );
    broker.shutdown().await.unwrap();
}

/// Many requests sent back to back on one connection are answered in request order,
/// even when an earlier one (a long-poll fetch) finishes after later ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    client.create_topic("t", 1, &[]).await;
    let mut producer = TestClient::connect(broker.client_addr()).await;

    let mut sent = vec![
        client
            .send(ApiKey::Fetch, &fetch_request("t", 0, 0, 10_000))
            .await,
    ];
    for _ in 0..20 {
        sent.push(client.send(ApiKey::ApiVersions, &ApiVersionsRequest).await);
    }
    // The fetch is parked until this produce wakes it.
    wait_until("the fetch is parked", || {
        broker.broker().fetches_waiting.load(Ordering::Acquire) == 1
    })
    .await;
    assert_eq!(
        producer
            .produce("t", 0, Acks::Leader, batch("x", 1, 1))
            .await
            .error_code,
        ErrorCode::None
    );
    let mut received = Vec::new();
    for _ in 0..sent.len() {
        received.push(client.receive().await.unwrap().0.correlation_id);
    }
    assert_eq!(received, sent);
    broker.shutdown().await.unwrap();
}

/// A parked long-polling fetch is woken by an append on another connection well before
/// its 60 s wait ends (the receive helper gives up after 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_is_woken_by_produce() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut consumer = TestClient::connect(broker.client_addr()).await;
    consumer.create_topic("events", 1, &[]).await;
    let waiting = consumer
        .send(ApiKey::Fetch, &fetch_request("events", 0, 0, 60_000))
        .await;
    // Produce only once the fetch has read nothing and parked, so that the wake-up
    // path, not a first read, answers it.
    wait_until("the fetch is parked", || {
        broker.broker().fetches_waiting.load(Ordering::Acquire) == 1
    })
    .await;
    let mut producer = TestClient::connect(broker.client_addr()).await;
    producer
        .produce("events", 0, Acks::Leader, batch("e", 2, 1))
        .await;
    let (header, body) = consumer.receive().await.unwrap();
    assert_eq!(header.correlation_id, waiting);
    let response = FetchResponse::decode_body(body).unwrap();
    assert_eq!(
        values(response.topics[0].partitions[0].records.clone()).len(),
        2
    );
    assert_eq!(broker.broker().fetches_waiting.load(Ordering::Acquire), 0);
    broker.shutdown().await.unwrap();
}

/// Topic administration: metadata lists topics with leaders and epochs, invalid
/// requests get their specific codes, deletion removes the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_administration() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    assert_eq!(
        client
            .create_topic("payments", 3, &[("retention.ms", "60000")])
            .await
            .error_code,
        ErrorCode::None
    );
    assert_eq!(
        client.create_topic("payments", 3, &[]).await.error_code,
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        client.create_topic("bad/name", 1, &[]).await.error_code,
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        client.create_topic("zero", 0, &[]).await.error_code,
        ErrorCode::InvalidPartitions
    );
    assert_eq!(
        client
            .create_topic("cfg", 1, &[("retention.mss", "1")])
            .await
            .error_code,
        ErrorCode::InvalidConfig
    );
    let request = CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: "rf".into(),
            partitions: 1,
            replication_factor: 3,
            configs: vec![],
        }],
        timeout_ms: 1000,
        validate_only: false,
    };
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, &request).await;
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::InvalidReplicationFactor
    );
    assert!(
        response.topics[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("number of brokers")
    );

    let metadata: MetadataResponse = client
        .call(ApiKey::Metadata, &MetadataRequest { topics: None })
        .await;
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port as u16, broker.client_addr().port());
    let payments = metadata
        .topics
        .iter()
        .find(|t| t.name == "payments")
        .unwrap();
    assert_eq!(payments.partitions.len(), 3);
    assert!(
        payments
            .partitions
            .iter()
            .all(|p| p.leader == 0 && p.leader_epoch == 0 && p.isr == vec![0])
    );
    let unknown: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            &MetadataRequest {
                topics: Some(vec!["nope".into()]),
            },
        )
        .await;
    assert_eq!(
        unknown.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition
    );

    client
        .produce("payments", 0, Acks::Leader, batch("p", 1, 1))
        .await;
    assert!(dir.path().join("payments-0").exists());
    let deleted: DeleteTopicsResponse = client
        .call(
            ApiKey::DeleteTopics,
            &DeleteTopicsRequest {
                names: vec!["payments".into(), "nope".into()],
                timeout_ms: 1000,
            },
        )
        .await;
    assert_eq!(deleted.topics[0].error_code, ErrorCode::None);
    assert_eq!(
        deleted.topics[1].error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert!(!dir.path().join("payments-0").exists());
    assert_eq!(
        client
            .produce("payments", 0, Acks::Leader, batch("p", 1, 1))
            .await
            .error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    broker.shutdown().await.unwrap();
}

/// With automatic creation on, producing to an unknown topic creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_topics_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auto_create_topics = true;
    let broker = Broker::start(config).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    assert_eq!(
        client
            .produce("fresh", 0, Acks::Leader, batch("f", 1, 1))
            .await
            .error_code,
        ErrorCode::None
    );
    assert_eq!(
        client
            .produce("bad name", 0, Acks::Leader, batch("f", 1, 1))
            .await
            .error_code,
        ErrorCode::InvalidTopic
    );
    broker.shutdown().await.unwrap();
}

/// ListOffsets answers earliest, latest and by timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    client.create_topic("t", 1, &[]).await;
    client
        .produce("t", 0, Acks::Leader, batch("old", 5, 1_000))
        .await;
    client
        .produce("t", 0, Acks::Leader, batch("new", 5, 2_000))
        .await;
    let request = |timestamp| ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                current_leader_epoch: -1,
                timestamp,
            }],
        }],
    };
    let mut ask = async |timestamp| {
        let response: ListOffsetsResponse =
            client.call(ApiKey::ListOffsets, &request(timestamp)).await;
        let partition = &response.topics[0].partitions[0];
        (partition.error_code, partition.offset)
    };
    assert_eq!(ask(-2).await, (ErrorCode::None, 0));
    assert_eq!(ask(-1).await, (ErrorCode::None, 10));
    assert_eq!(ask(1_500).await, (ErrorCode::None, 5));
    assert_eq!(ask(500).await, (ErrorCode::None, 0));
    assert_eq!(ask(3_000).await, (ErrorCode::None, -1));
    assert_eq!(ask(-7).await.0, ErrorCode::InvalidTimestamp);
    broker.shutdown().await.unwrap();
}

/// Each kind of bad input gets its error code or a closed connection, and a second
/// connection keeps working throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_request_bytes = 64 * 1024;
    config.max_message_bytes = 32 * 1024;
    config.request_read_timeout_ms = 1_000;
    let broker = Broker::start(config).await.unwrap();
    let addr = broker.client_addr();
    let mut bystander = TestClient::connect(addr).await;
    bystander.create_topic("t", 1, &[]).await;

    // Unknown API key and unsupported version: an error header, connection stays open.
    let mut client = TestClient::connect(addr).await;
    let correlation_id = {
        let header = RequestHeader {
            api_key: 999,
            api_version: 0,
            correlation_id: 77,
            client_id: None,
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, |_| {});
        client.stream.write_all(&out).await.unwrap();
        77
    };
    let (header, _) = client.receive().await.unwrap();
    assert_eq!(
        (header.correlation_id, header.error_code),
        (correlation_id, ErrorCode::UnsupportedApiKey)
    );
    client
        .send_version(ApiKey::Metadata, 9, &MetadataRequest { topics: None })
        .await;
    assert_eq!(
        client.receive().await.unwrap().0.error_code,
        ErrorCode::UnsupportedVersion
    );
    // A body that does not decode.
    let header = RequestHeader {
        api_key: ApiKey::Produce.code(),
        api_version: 0,
        correlation_id: 5,
        client_id: None,
    };
    let mut out = BytesMut::new();
    encode_request(&mut out, &header, |out| {
        out.extend_from_slice(&[0, 1, 0xff, 0xff])
    });
    client.stream.write_all(&out).await.unwrap();
    assert_eq!(
        client.receive().await.unwrap().0.error_code,
        ErrorCode::InvalidRequest
    );

    // Per-partition errors: bad CRC, unknown topic and partition, too large, bad acks.
    let mut damaged = BytesMut::from(&batch("d", 2, 1)[..]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert_eq!(
        client
            .produce("t", 0, Acks::Leader, damaged.freeze())
            .await
            .error_code,
        ErrorCode::CorruptMessage
    );
    assert_eq!(
        client
            .produce("nope", 0, Acks::Leader, batch("d", 1, 1))
            .await
            .error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        client
            .produce("t", 7, Acks::Leader, batch("d", 1, 1))
            .await
            .error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    let big = "x".repeat(40 * 1024);
    let mut builder = BatchBuilder::new();
    builder.push(&RecordInput {
        value: Some(big.as_bytes()),
        ..Default::default()
    });
    assert_eq!(
        client
            .produce("t", 0, Acks::Leader, builder.finish())
            .await
            .error_code,
        ErrorCode::MessageTooLarge
    );
    let mut bad_acks = produce_request("t", 0, Acks::Leader, batch("d", 1, 1));
    bad_acks.acks = 5;
    let response: ProduceResponse = client.call(ApiKey::Produce, &bad_acks).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::InvalidRequiredAcks
    );
    let out_of_range = client.fetch("t", 0, 99, 0).await;
    assert_eq!(out_of_range.error_code, ErrorCode::OffsetOutOfRange);
    let mut fenced = fetch_request("t", 0, 0, 0);
    fenced.topics[0].partitions[0].current_leader_epoch = 3;
    let response: FetchResponse = client.call(ApiKey::Fetch, &fenced).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::UnknownLeaderEpoch
    );

    // An oversized frame whose rest never comes: closed after request_read_timeout_ms
    // (one that does come is answered; see connection_limits.rs).
    let mut oversized = TestClient::connect(addr).await;
    oversized
        .stream
        .write_all(&(1_000_000i32).to_be_bytes())
        .await
        .unwrap();
    assert!(oversized.receive().await.is_none());
    // Garbage: a negative length closes the connection.
    let mut garbage = TestClient::connect(addr).await;
    garbage
        .stream
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .await
        .unwrap();
    assert!(garbage.receive().await.is_none());
    // A frame whose header cannot be read (client id longer than the frame).
    let mut torn = TestClient::connect(addr).await;
    torn.stream
        .write_all(&[0, 0, 0, 10, 0, 3, 0, 0, 0, 0, 0, 1, 0, 50])
        .await
        .unwrap();
    assert!(torn.receive().await.is_none());

    // The bystander never noticed.
    assert_eq!(
        bystander
            .produce("t", 0, Acks::All, batch("ok", 1, 1))
            .await
            .error_code,
        ErrorCode::None
    );
    assert_eq!(
        values(bystander.fetch("t", 0, 0, 0).await.records),
        vec![(0, "ok-0".to_string())]
    );
    broker.shutdown().await.unwrap();
}

/// Connections beyond `max_connections` are answered BROKER_BUSY and closed; existing
/// ones keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_connections = 2;
    let broker = Broker::start(config).await.unwrap();
    let mut first = TestClient::connect(broker.client_addr()).await;
    let mut second = TestClient::connect(broker.client_addr()).await;
    let _: ApiVersionsResponse = first.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let _: ApiVersionsResponse = second.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let mut third = TestClient::connect(broker.client_addr()).await;
    third.send(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let (header, _) = third.receive().await.expect("BROKER_BUSY before the close");
    assert_eq!(header.error_code, ErrorCode::BrokerBusy);
    assert!(
        third.receive().await.is_none(),
        "third connection must be closed"
    );
    let versions: ApiVersionsResponse = first.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    assert_eq!(versions, ApiVersionsResponse::current());
    broker.shutdown().await.unwrap();
}

/// After a graceful shutdown the broker starts again with its topics and records, and
/// continues offsets where they ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    client
        .create_topic("durable", 1, &[("durability", "interval")])
        .await;
    client
        .produce("durable", 0, Acks::Leader, batch("before", 4, 1))
        .await;
    broker.shutdown().await.unwrap();

    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    // The shutdown flushed and checkpointed every log as clean: the reopen scanned
    // nothing (a crash recovery would rebuild the same state from the page cache).
    let reports = broker.broker().recovery_reports();
    assert!(
        reports
            .iter()
            .any(|(partition, _)| partition.to_string() == "durable-0"),
        "{reports:?}"
    );
    for (partition, report) in reports {
        assert!(report.clean_shutdown, "{partition}: {report:?}");
        assert_eq!(
            (report.segments_scanned, report.truncated_bytes),
            (0, 0),
            "{partition}"
        );
    }
    let mut client = TestClient::connect(broker.client_addr()).await;
    assert_eq!(
        client
            .produce("durable", 0, Acks::Leader, batch("after", 1, 1))
            .await
            .base_offset,
        4
    );
    let all = values(client.fetch("durable", 0, 0, 0).await.records);
    assert_eq!(all.len(), 5);
    assert_eq!(all[4], (4, "after-0".to_string()));
    broker.shutdown().await.unwrap();
}

/// The real binary, killed with SIGKILL while several connections produce with
/// acks=all, restarts and serves every acknowledged record at its acknowledged offset,
/// with no gap before the log end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = BrokerProcess::spawn(dir.path(), &data_dir, &[]);
    let addr = child.addresses().await.listen;
    let mut admin = TestClient::connect(addr).await;
    admin.create_topic("ledger", 1, &[]).await;

    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for producer in 0..4 {
        let acknowledged_count = acknowledged_count.clone();
        producers.push(tokio::spawn(async move {
            let mut client = TestClient::connect(addr).await;
            let mut acknowledged = Vec::new();
            for round in 0..10_000 {
                let prefix = format!("p{producer}r{round}");
                let correlation_id = client
                    .send(
                        ApiKey::Produce,
                        &produce_request("ledger", 0, Acks::All, batch(&prefix, 2, 1)),
                    )
                    .await;
                let Some((header, body)) = client.receive().await else {
                    break;
                };
                assert_eq!(header.correlation_id, correlation_id);
                let response = ProduceResponse::decode_body(body).unwrap();
                let partition = &response.topics[0].partitions[0];
                assert_eq!(partition.error_code, ErrorCode::None);
                acknowledged.push((partition.base_offset, prefix));
                acknowledged_count.fetch_add(1, Ordering::AcqRel);
            }
            acknowledged
        }));
    }
    // Kill it mid-stream: once the producers have made progress, not after a guess.
    let deadline = tokio::time::Instant::now() + PROCESS_PATIENCE;
    while acknowledged_count.load(Ordering::Acquire) < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the producers made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill(); // SIGKILL
    let mut acknowledged = Vec::new();
    for producer in producers {
        acknowledged.extend(producer.await.unwrap());
    }
    assert!(acknowledged.len() >= 40);
    println!(
        "measured: {} batches acknowledged before SIGKILL",
        acknowledged.len()
    );

    // The same client address again: what a client that knows only it would reconnect to.
    let (mut child, _) = respawn_on(dir.path(), &data_dir, addr, &[]).await;
    let mut client = TestClient::connect(addr).await;
    let mut stored = Vec::new();
    loop {
        let response = client.fetch("ledger", 0, stored.len() as i64, 0).await;
        assert_eq!(response.error_code, ErrorCode::None);
        let batch = values(response.records);
        if batch.is_empty() {
            break;
        }
        stored.extend(batch);
    }
    // No gaps: offsets are 0..end in order.
    assert!(
        stored
            .iter()
            .enumerate()
            .all(|(index, (offset, _))| *offset == index as i64)
    );
    for (offset, prefix) in &acknowledged {
        assert_eq!(
            stored[*offset as usize].1,
            format!("{prefix}-0"),
            "acknowledged batch at {offset}"
        );
        assert_eq!(stored[*offset as usize + 1].1, format!("{prefix}-1"));
    }
    // SIGTERM is a graceful shutdown: exit status 0.
    let status = child.terminate().await;
    assert!(status.success(), "fjord-broker must exit 0 after SIGTERM");
}

/// A fetch that asks for more than a frame can carry is capped, not failed: with 75 MiB
/// stored, a fetch with every budget at i32::MAX returns whole batches within the
/// broker's cap, and fetching on from there returns the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fetch_budgets_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_message_bytes = 16 << 20;
    config.log_durability = fjord_broker::config::DurabilityPolicy::Interval;
    let broker = Broker::start(config).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    client.create_topic("big", 1, &[]).await;
    let value = vec![7u8; 15 << 20];
    for _ in 0..5 {
        let mut builder = BatchBuilder::new();
        builder.push(&RecordInput {
            value: Some(&value),
            ..Default::default()
        });
        assert_eq!(
            client
                .produce("big", 0, Acks::Leader, builder.finish())
                .await
                .error_code,
            ErrorCode::None
        );
    }
    let mut offset = 0;
    while offset < 5 {
        let mut request = fetch_request("big", 0, offset, 0);
        request.max_bytes = i32::MAX;
        request.topics[0].partitions[0].partition_max_bytes = i32::MAX;
        let response: FetchResponse = client.call(ApiKey::Fetch, &request).await;
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, ErrorCode::None);
        assert!(
            !partition.records.is_empty() && partition.records.len() <= 32 << 20,
            "{} bytes",
            partition.records.len()
        );
        for batch in RecordBatches::new(partition.records.clone()) {
            let batch = batch.unwrap();
            assert_eq!(batch.base_offset(), offset);
            offset = batch.next_offset();
        }
    }
    broker.shutdown().await.unwrap();
}

/// Settings come from the file, then `FJORD_*` variables, then flags, each later source
/// winning: `node_id` is set by all three (the flag wins), `advertised_host` by the
/// file and the environment (the environment wins), `data_dir` only by the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_precedence_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("from-file");
    let file = dir.path().join("fjord.toml");
    std::fs::write(
        &file,
        format!(
            "node_id = 1\nadvertised_host = \"file-host\"\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n",
            data_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut command = common::broker_command();
    command
        .arg("--config")
        .arg(&file)
        .args(["--node-id", "3"])
        .env("FJORD_NODE_ID", "2")
        .env("FJORD_ADVERTISED_HOST", "environment-host");
    let mut child = BrokerProcess::spawn_command(dir.path(), command);
    let addr = child.addresses().await.listen;
    let mut client = TestClient::connect(addr).await;
    let metadata: MetadataResponse = client
        .call(ApiKey::Metadata, &MetadataRequest { topics: None })
        .await;
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].node_id, 3, "the flag wins");
    assert_eq!(
        metadata.brokers[0].host, "environment-host",
        "the environment wins over the file"
    );
    assert!(
        data_dir.join(".lock").exists(),
        "the file's data_dir is used"
    );
    assert!(child.terminate().await.success());
}

/// A configuration that cannot work ends the process with status 2 and one line
/// naming the problem, whether it comes from a flag, the environment or the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "node_idd = 3\n").unwrap();
    /// (where the bad setting comes from, flags, environment variable, expected error)
    type Case<'a> = (&'a str, Vec<String>, Option<(&'a str, &'a str)>, &'a str);
    let voters = |list: &str| vec!["--controller-quorum-voters".to_owned(), list.to_owned()];
    let cases: [Case<'_>; 6] = [
        (
            "flag",
            vec!["--max-in-flight-requests".into(), "0".into()],
            None,
            "invalid setting `max_in_flight_requests`",
        ),
        (
            "environment",
            vec![],
            Some(("FJORD_REQUEST_TIMEOUT_MS", "0")),
            "invalid setting `request_timeout_ms`",
        ),
        (
            "file",
            vec!["--config".into(), bad_file.to_str().unwrap().into()],
            None,
            "node_idd",
        ),
        (
            "malformed voters",
            voters("0@127.0.0.1:9194,2-127.0.0.1:9294"),
            None,
            "invalid setting `controller_quorum_voters`: `2-127.0.0.1:9294` is not `id@host:port`",
        ),
        (
            "duplicate voters",
            voters("0@127.0.0.1:9194,0@127.0.0.1:9294"),
            None,
            "invalid setting `controller_quorum_voters`: node id 0 is listed twice",
        ),
        (
            "node id not among the voters",
            voters("1@127.0.0.1:9194,2@127.0.0.1:9294"),
            None,
            "invalid setting `controller_quorum_voters`: node 0 is not among the voters (1, 2)",
        ),
    ];
    for (source, arguments, environment, expected) in cases {
        let mut command = common::broker_command();
        command
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--internal-listen", "127.0.0.1:0"])
            .args(&arguments);
        if let Some((name, value)) = environment {
            command.env(name, value);
        }
        let mut child = BrokerProcess::spawn_command(dir.path(), command);
        let status = child.wait_exit().await;
        let log = child.log();
        assert_eq!(status.code(), Some(2), "{source}: {log}");
        assert!(log.contains(expected), "{source}: {log}");
        assert!(!log.contains("listeners bound"), "{source}: {log}");
    }
}

/// The data directory is locked: a second broker on it refuses to start (and exits
/// non-zero), while the first keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let first_dir = dir.path().join("first");
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let mut first = BrokerProcess::spawn(&first_dir, &data_dir, &[]);
    let addr = first.addresses().await.listen;
    let mut client = TestClient::connect(addr).await;
    client.create_topic("kept", 1, &[]).await;

    let mut second = BrokerProcess::spawn(&second_dir, &data_dir, &[]);
    let status = second.wait_exit().await;
    assert!(!status.success(), "{status}");
    let log = second.log();
    assert!(log.contains("in use by another broker process"), "{log}");

    assert_eq!(
        client
            .produce("kept", 0, Acks::All, batch("k", 1, 1))
            .await
            .error_code,
        ErrorCode::None
    );
    assert!(first.terminate().await.success());
}

/// With automatic creation on, a Metadata request naming an unknown topic creates it
/// with the default partition count; the broker is given to clients under
/// `advertised_host` and its listener's port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_topics_and_advertises_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auto_create_topics = true;
    config.default_partitions = 3;
    config.advertised_host = "broker-0.example.internal".into();
    let broker = Broker::start(config).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            &MetadataRequest {
                topics: Some(vec!["appeared".into()]),
            },
        )
        .await;
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].host, "broker-0.example.internal");
    assert_eq!(metadata.brokers[0].port as u16, broker.client_addr().port());
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].error_code, ErrorCode::None);
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    assert!(broker.broker().metadata().topic("appeared").is_some());
    assert_eq!(
        client
            .produce("appeared", 2, Acks::All, batch("a", 1, 1))
            .await
            .error_code,
        ErrorCode::None
    );
    broker.shutdown().await.unwrap();
}

/// Behind a port mapping (`docker run -p 29192:9192`) the broker is given to clients
/// under `advertised_port`, not the port its listener bound, and a restart with another
/// mapping replaces the registered address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_advertises_the_configured_port() {
    let dir = tempfile::tempdir().unwrap();
    for advertised_port in [29192, 29193] {
        let mut config = test_config(dir.path());
        config.advertised_host = "127.0.0.1".into();
        config.advertised_port = advertised_port;
        let broker = Broker::start(config).await.unwrap();
        let mut client = TestClient::connect(broker.client_addr()).await;
        let metadata: MetadataResponse = client
            .call(ApiKey::Metadata, &MetadataRequest { topics: None })
            .await;
        assert_eq!(metadata.brokers.len(), 1);
        assert_eq!(metadata.brokers[0].host, "127.0.0.1");
        assert_eq!(metadata.brokers[0].port, i32::from(advertised_port));
        broker.shutdown().await.unwrap();
    }
}

/// Clients cannot produce to `__consumer_offsets` (only the group coordinator writes
/// it); a `min.insync.replicas` above a topic's replication factor is refused, and the
/// broker's default minimum of two lets acks=all work on a single broker's topics.
/// (NOT_ENOUGH_REPLICAS needs replicas: `replication.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_produce_and_unmeetable_minimums_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    let offsets = client
        .produce("__consumer_offsets", 0, Acks::All, batch("x", 1, 1))
        .await;
    assert_eq!(offsets.error_code, ErrorCode::InvalidTopic);
    let (_, _, log) = broker
        .broker()
        .leader_log_now("__consumer_offsets", 0)
        .unwrap();
    assert_eq!(log.log_end_offset(), 0, "nothing was written");

    // A single broker's topic has one replica: a minimum of two could never be met,
    // and is refused when it is set (the broker's default of two is capped to one).
    assert_eq!(
        client
            .create_topic("strict", 1, &[("min.insync.replicas", "2")])
            .await
            .error_code,
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        client.create_topic("plain", 1, &[]).await.error_code,
        ErrorCode::None
    );
    let all = client
        .produce("plain", 0, Acks::All, batch("s", 1, 1))
        .await;
    assert_eq!((all.error_code, all.base_offset), (ErrorCode::None, 0));
    broker.shutdown().await.unwrap();
}

/// A request that takes longer than `request_timeout_ms` (here a long poll asking to
/// wait far longer) is answered with REQUEST_TIMED_OUT, and the connection goes on.
/// The topic is created in-process: under load a CreateTopics request (an fsynced
/// metadata append) could itself outlast the short timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_answered_with_request_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.request_timeout_ms = 2_000;
    let broker = Broker::start(config).await.unwrap();
    broker
        .broker()
        .create_topic(
            fjord_broker::metadata::CreateTopic {
                name: "quiet".into(),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    let correlation_id = client
        .send(ApiKey::Fetch, &fetch_request("quiet", 0, 0, 600_000))
        .await;
    let (header, _) = client.receive().await.unwrap();
    assert_eq!(
        (header.correlation_id, header.error_code),
        (correlation_id, ErrorCode::RequestTimedOut)
    );
    let versions: ApiVersionsResponse = client.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    assert_eq!(versions, ApiVersionsResponse::current());
    broker.shutdown().await.unwrap();
}

/// With `max_in_flight_requests` = 1 the broker reads nothing more from a connection
/// while a request is in flight: a produce sent behind a parked fetch on the same
/// connection is read only after the fetch ends, so the fetch cannot see its records.
/// With room for two, the produce is read at once and wakes the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_requests_stops_reading() {
    for (in_flight, fetch_sees_the_produce) in [(1, false), (2, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.max_in_flight_requests = in_flight;
        let broker = Broker::start(config).await.unwrap();
        let mut client = TestClient::connect(broker.client_addr()).await;
        client.create_topic("t", 1, &[]).await;
        let fetch = client
            .send(ApiKey::Fetch, &fetch_request("t", 0, 0, 3_000))
            .await;
        let produce = client
            .send(
                ApiKey::Produce,
                &produce_request("t", 0, Acks::Leader, batch("p", 1, 1)),
            )
            .await;
        let (header, body) = client.receive().await.unwrap();
        assert_eq!(header.correlation_id, fetch);
        let fetched = FetchResponse::decode_body(body).unwrap();
        let records = values(fetched.topics[0].partitions[0].records.clone());
        assert_eq!(
            !records.is_empty(),
            fetch_sees_the_produce,
            "max_in_flight_requests = {in_flight}: {records:?}"
        );
        let (header, body) = client.receive().await.unwrap();
        assert_eq!(header.correlation_id, produce);
        let produced = ProduceResponse::decode_body(body).unwrap();
        assert_eq!(produced.topics[0].partitions[0].error_code, ErrorCode::None);
        broker.shutdown().await.unwrap();
    }
}

/// Under the `interval` policy nothing waits for an fsync: the background flushes a log
/// once `flush.ms` has passed since its last flush, and a produce starts a flush once
/// `flush.bytes` are waiting. A log with neither due is not flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_durability_flushes_by_time_and_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    let hour = "3600000";
    let interval = ("durability", "interval");
    for (topic, flush_ms, flush_bytes) in [
        ("idle", hour, "1073741824"),
        ("by-time", "50", "1073741824"),
        ("by-bytes", hour, "1024"),
    ] {
        let created = client
            .create_topic(
                topic,
                1,
                &[
                    interval,
                    ("flush.ms", flush_ms),
                    ("flush.bytes", flush_bytes),
                ],
            )
            .await;
        assert_eq!(created.error_code, ErrorCode::None, "{topic}");
    }
    let log = |topic: &str| broker.broker().leader_log_now(topic, 0).unwrap().2;
    let produce = async |client: &mut TestClient, topic: &str, count: usize| {
        let response = client
            .produce(topic, 0, Acks::All, batch(topic, count, 1))
            .await;
        assert_eq!(response.error_code, ErrorCode::None, "{topic}");
    };

    // Below flush.bytes, flush.ms an hour away: acknowledged without any flush.
    produce(&mut client, "by-bytes", 1).await;
    assert_eq!(log("by-bytes").flush_count(), 0);
    produce(&mut client, "idle", 1).await;
    produce(&mut client, "by-time", 1).await;
    wait_until("flush.ms flushes the log", || {
        log("by-time").flush_count() >= 1
    })
    .await;
    // Meanwhile neither `idle` nor `by-bytes` was due: no pass flushed them.
    assert_eq!(log("idle").flush_count(), 0);
    assert_eq!(log("by-bytes").flush_count(), 0);

    // Past flush.bytes: the produce starts a flush.
    while log("by-bytes").size_bytes() < 2048 {
        produce(&mut client, "by-bytes", 20).await;
    }
    wait_until("flush.bytes flushes the log", || {
        log("by-bytes").flush_count() >= 1
    })
    .await;
    assert_eq!(log("idle").flush_count(), 0);
    broker.shutdown().await.unwrap();
}

/// The active segment rolls once it is older than the topic's `segment.ms`, at the
/// next append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_ms_rolls_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    for (topic, segment_ms) in [("aging", "5"), ("steady", "3600000")] {
        let created = client
            .create_topic(topic, 1, &[("segment.ms", segment_ms)])
            .await;
        assert_eq!(created.error_code, ErrorCode::None);
    }
    // Records stamped now: retention (7 days) must not delete the sealed segments.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for round in 0..3 {
        for topic in ["aging", "steady"] {
            let response = client
                .produce(topic, 0, Acks::All, batch(topic, 1, now_ms))
                .await;
            assert_eq!(response.base_offset, round);
        }
        // More than segment.ms passes between appends (time must pass; nothing here
        // depends on how much more).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let segments = |topic: &str| {
        broker
            .broker()
            .leader_log_now(topic, 0)
            .unwrap()
            .2
            .segment_count()
    };
    assert_eq!(segments("aging"), 3, "one segment per append");
    assert_eq!(segments("steady"), 1);
    assert_eq!(
        values(client.fetch("aging", 0, 0, 0).await.records).len(),
        1,
        "a fetch reads within one segment"
    );
    let mut all = Vec::new();
    while all.len() < 3 {
        let records = values(client.fetch("aging", 0, all.len() as i64, 0).await.records);
        assert!(!records.is_empty());
        all.extend(records);
    }
    assert_eq!(
        all.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    broker.shutdown().await.unwrap();
}

/// Start-up finishes topic deletions a crash interrupted (directories renamed to
/// `*.deleted`) and leaves the directories of topics it does not know alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_finishes_interrupted_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let interrupted = dir.path().join("gone-0.1700000000000.deleted");
    std::fs::create_dir_all(&interrupted).unwrap();
    std::fs::write(interrupted.join(format!("{:020}.log", 0)), b"half deleted").unwrap();
    let stray = dir.path().join("stray-0");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join(format!("{:020}.log", 0)), b"not ours").unwrap();

    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    assert!(
        !interrupted.exists(),
        "the interrupted deletion was finished"
    );
    assert_eq!(
        std::fs::read(stray.join(format!("{:020}.log", 0))).unwrap(),
        b"not ours",
        "a directory of an unknown topic is left alone"
    );
    assert!(broker.broker().metadata().topic("stray").is_none());
    broker.shutdown().await.unwrap();
}

/// A graceful shutdown lets requests in flight finish: a long-polling fetch parked when
/// the shutdown starts still gets its (empty) response, on the connection it came on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(test_config(dir.path())).await.unwrap();
    let mut client = TestClient::connect(broker.client_addr()).await;
    client.create_topic("calm", 1, &[]).await;
    let waiting = client
        .send(ApiKey::Fetch, &fetch_request("calm", 0, 0, 1_000))
        .await;
    wait_until("the fetch is parked", || {
        broker.broker().fetches_waiting.load(Ordering::Acquire) == 1
    })
    .await;
    let shutdown = tokio::spawn(broker.shutdown());
    let (header, body) = client
        .receive()
        .await
        .expect("the connection closed with the fetch unanswered");
    assert_eq!(
        (header.correlation_id, header.error_code),
        (waiting, ErrorCode::None)
    );
    let response = FetchResponse::decode_body(body).unwrap();
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    tokio::time::timeout(PROCESS_PATIENCE, shutdown)
        .await
        .expect("shutdown in time")
        .unwrap()
        .unwrap();
    assert!(client.receive().await.is_none(), "closed after the answer");
}

/// `request_memory_bytes` bounds the request bytes held across all connections: while
/// one connection's half-received frame holds most of it, another connection's request
/// that does not fit in the rest is not read until the first frame is complete, so the
/// second produce, sent first in full, is appended after the first. Neither stalls:
/// frames are admitted whole, so the first needs no more memory to complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_bytes_makes_reading_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.max_request_bytes = 64 * 1024;
    config.request_memory_bytes = 64 * 1024;
    config.max_message_bytes = 60 * 1024;
    let broker = Broker::start(config).await.unwrap();
    let memory = broker.broker().request_memory.clone();
    let total = memory.available_bytes();
    let mut admin = TestClient::connect(broker.client_addr()).await;
    admin.create_topic("bounded", 1, &[]).await;
    // The topic creation's bytes are released just after its response is written.
    wait_until("nothing is held between requests", || {
        memory.available_bytes() == total
    })
    .await;

    let frame = |value_bytes: usize, correlation_id: i32| {
        let value = vec![b'v'; value_bytes];
        let mut builder = BatchBuilder::new();
        builder.push(&RecordInput {
            value: Some(&value),
            ..Default::default()
        });
        let request = produce_request("bounded", 0, Acks::Leader, builder.finish());
        let header = RequestHeader {
            api_key: ApiKey::Produce.code(),
            api_version: 0,
            correlation_id,
            client_id: None,
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, |out| request.encode(out));
        out
    };
    let first_frame = frame(50 * 1024, 1);
    let second_frame = frame(20 * 1024, 2);
    let mut first = TestClient::connect(broker.client_addr()).await;
    let split = first_frame.len() - 100;
    first.stream.write_all(&first_frame[..split]).await.unwrap();
    // The first frame is reserved whole as soon as its length is read, which leaves
    // less than the second frame needs.
    assert!(second_frame.len() > total - first_frame.len());
    wait_until("the first frame is reserved whole", || {
        memory.available_bytes() <= total - first_frame.len()
    })
    .await;
    let mut second = TestClient::connect(broker.client_addr()).await;
    second.stream.write_all(&second_frame).await.unwrap();
    // Room for a broker without the bound to read and append the second produce first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.stream.write_all(&first_frame[split..]).await.unwrap();

    let offset = |(header, body): (ResponseHeader, Bytes)| {
        assert_eq!(header.error_code, ErrorCode::None);
        let response = ProduceResponse::decode_body(body).unwrap();
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, ErrorCode::None);
        partition.base_offset
    };
    assert_eq!(offset(first.receive().await.unwrap()), 0);
    assert_eq!(
        offset(second.receive().await.unwrap()),
        1,
        "the second produce was read while the first frame held the memory"
    );
    wait_until("every reserved byte is released", || {
        memory.available_bytes() == total
    })
    .await;
    broker.shutdown().await.unwrap();
}

/// SIGTERM as early as the listeners are bound (start-up still running) is a graceful
/// shutdown too: the broker finishes starting, then stops cleanly with status 0, and
/// the data directory reopens clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_is_a_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    for attempt in 0..3 {
        let mut child = BrokerProcess::spawn(dir.path(), &data_dir, &[]);
        child.addresses().await;
        let status = child.terminate().await;
        assert!(
            status.success(),
            "attempt {attempt}: {status}; log:\n{}",
            child.log()
        );
    }
    let broker = Broker::start(test_config(&data_dir)).await.unwrap();
    let reports = broker.broker().recovery_reports();
    assert!(!reports.is_empty());
    assert!(
        reports.iter().all(|(_, report)| report.clean_shutdown),
        "{reports:?}"
    );
    broker.shutdown().await.unwrap();
}
