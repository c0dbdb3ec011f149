//! The topic timestamp settings over real TCP on 127.0.0.1: a `LogAppendTime` topic
//! stores batches stamped with the broker's clock (and says so in the produce
//! response), a `CreateTime` topic refuses timestamps beyond its bounds around the
//! broker's clock, and the batches of one partition in one request are all-or-nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use fjord_broker::Broker;
use fjord_broker::config::BrokerConfig;
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::{BatchBuilder, RecordBatches, RecordInput, TimestampType};
use fjord_protocol::messages::*;

mod wire;
use wire::RawClient;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn batch(values: &[&str], timestamp_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.push(&RecordInput {
            value: Some(value.as_bytes()),
            timestamp_ms,
            ..Default::default()
        });
    }
    builder.finish().to_vec()
}

fn encode(message: &impl Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    out.to_vec()
}

async fn create(client: &mut RawClient, name: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
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
    let (_, body) = client.call(20, &encode(&request)).await;
    let response = CreateTopicsResponse::decode_body(body).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::None,
        "{response:?}"
    );
}

async fn produce(
    client: &mut RawClient,
    topic: &str,
    records: Vec<u8>,
) -> ProducePartitionResponse {
    let request = ProduceRequest {
        acks: 1,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition: 0,
                current_leader_epoch: -1,
                records: Bytes::from(records),
            }],
        }],
    };
    let (header, body) = client.call(0, &encode(&request)).await;
    assert_eq!(header.error_code, ErrorCode::None);
    ProduceResponse::decode_body(body).unwrap().topics[0].partitions[0].clone()
}

async fn fetch(client: &mut RawClient, topic: &str) -> FetchPartitionResponse {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let (_, body) = client.call(1, &encode(&request)).await;
    FetchResponse::decode_body(body).unwrap().topics[0].partitions[0].clone()
}

/// `message.timestamp.type=LogAppendTime`: the producer's old timestamp is replaced by
/// the broker's clock, in the stored batch (bit 3, max_timestamp, valid CRC) and in
/// the produce response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_are_stamped_by_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    create(
        &mut client,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before_ms = now_ms();
    let produced = produce(&mut client, "stamped", batch(&["a", "b"], 1_000)).await;
    let after_ms = now_ms();
    assert_eq!(produced.error_code, ErrorCode::None, "{produced:?}");
    let stamp = produced.log_append_time_ms;
    assert!(
        (before_ms..=after_ms).contains(&stamp),
        "{before_ms} <= {stamp} <= {after_ms}"
    );

    let fetched = fetch(&mut client, "stamped").await;
    let batches: Vec<_> = RecordBatches::new(fetched.records)
        .map(Result::unwrap)
        .collect();
    assert_eq!(batches.len(), 1);
    let stored = &batches[0];
    stored
        .verify_crc()
        .expect("the stamped batch has a valid CRC");
    assert_eq!(stored.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(stored.max_timestamp(), stamp);
    assert_eq!(stored.record_count(), 2);

    // A create-time topic keeps the producer's timestamp and answers -1.
    create(&mut client, "created", &[]).await;
    let produced = produce(&mut client, "created", batch(&["a"], 1_000)).await;
    assert_eq!(
        (produced.error_code, produced.log_append_time_ms),
        (ErrorCode::None, -1)
    );
    broker.shutdown().await.unwrap();
}

/// Create time: a record timestamp further from the broker's clock than the topic's
/// bounds is INVALID_TIMESTAMP; within them it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_bounds_around_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    let hour_ms = 3_600_000;
    create(
        &mut client,
        "bounded",
        &[("message.timestamp.before.max.ms", "3600000")],
    )
    .await;
    let day_ms = 24 * hour_ms;
    for (timestamp_ms, expected) in [
        (now_ms(), ErrorCode::None),
        (now_ms() - day_ms, ErrorCode::InvalidTimestamp),
        // The default bound ahead of the clock is one hour.
        (now_ms() + day_ms, ErrorCode::InvalidTimestamp),
    ] {
        let produced = produce(&mut client, "bounded", batch(&["v"], timestamp_ms)).await;
        assert_eq!(
            produced.error_code, expected,
            "{timestamp_ms}: {produced:?}"
        );
        if expected != ErrorCode::None {
            let message = produced.error_message.unwrap_or_default();
            assert!(message.contains("message.timestamp."), "{message}");
        }
    }
    broker.shutdown().await.unwrap();
}

/// A good batch followed by a bad one in the same partition's `records` stores
/// neither (section 5.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_one_partition_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let mut client = RawClient::connect(broker.client_addr()).await;
    create(&mut client, "atomic", &[]).await;
    let mut records = batch(&["good"], now_ms());
    let mut bad = batch(&["bad"], now_ms());
    *bad.last_mut().unwrap() ^= 0xff;
    records.extend_from_slice(&bad);
    let produced = produce(&mut client, "atomic", records).await;
    assert_eq!(produced.error_code, ErrorCode::CorruptMessage);
    let fetched = fetch(&mut client, "atomic").await;
    assert_eq!(fetched.high_watermark, 0);
    assert!(fetched.records.is_empty());
    broker.shutdown().await.unwrap();
}
