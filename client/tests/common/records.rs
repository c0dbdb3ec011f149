//! Records in and out through the client library, as the container tests use them:
//! values written round robin with acks=all, and everything read back from the start.

use std::time::{Duration, Instant};

use fjord_client::{
    Acks, Client, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};

/// A record as `(partition, offset, value)`.
pub type Stored = (i32, i64, String);

/// Sends `{prefix}-0` … `{prefix}-{count - 1}` round robin over the first `partitions`
/// partitions of `topic` with acks=all, and returns where each was stored, sorted.
pub async fn produce_round_robin(
    client: &Client,
    topic: &str,
    partitions: i32,
    prefix: &str,
    count: usize,
) -> Vec<Stored> {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::All,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..count {
        let value = format!("{prefix}-{index}");
        let partition = (index % partitions as usize) as i32;
        let record = ProducerRecord::new(topic, value.clone()).with_partition(partition);
        deliveries.push((value, producer.send(record).await.unwrap()));
    }
    let mut stored = Vec::new();
    for (value, delivery) in deliveries {
        let (partition, offset) = delivery.await.expect("acknowledged");
        stored.push((partition, offset, value));
    }
    producer.close().await.unwrap();
    stored.sort();
    stored
}

/// Every record of the first `partitions` partitions of `topic`, from the beginning,
/// once `count` have arrived, sorted; fails the test after `patience`.
pub async fn consume_from_beginning(
    client: &Client,
    topic: &str,
    partitions: i32,
    count: usize,
    patience: Duration,
) -> Vec<Stored> {
    let mut consumer = Consumer::new(client, ConsumerConfig::default()).unwrap();
    let assignment: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition::new(topic, partition))
        .collect();
    consumer.assign(assignment.clone());
    consumer.seek_to_beginning(&assignment).await.unwrap();
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            started.elapsed() < patience,
            "only {} of {count} records: {records:?}",
            records.len()
        );
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8(record.value.unwrap_or_default().to_vec()).unwrap();
            records.push((record.partition, record.offset, value));
        }
    }
    records.sort();
    records
}
