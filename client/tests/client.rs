//! The client library and the `fjord` tool against a real in-process broker on
//! 127.0.0.1: ordering per key, the producer's memory bound, retries across a broker
//! restart, seeking by timestamp, acks=none, and a produce/consume round trip through
//! the built `fjord` binary.
//!
//! One test binary for everything, so the broker is linked once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fjord_broker::config::BrokerConfig;
use fjord_broker::{Broker, BrokerHandle};
use fjord_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    Error, NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use futures::StreamExt;

mod common;
use common::{fjord, refusing_address, stdout, words};

/// Longest any wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

async fn start_broker(data_dir: &Path) -> BrokerHandle {
    Broker::start(BrokerConfig::for_tests(data_dir))
        .await
        .expect("broker starts")
}

/// Starts a broker on the address a stopped one had (the address its clients know).
/// The port was just freed; if something else holds it for a moment, binding is
/// retried until [`PATIENCE`] ends.
async fn restart_broker(data_dir: &Path, listen: SocketAddr) -> BrokerHandle {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut config = BrokerConfig::for_tests(data_dir);
        config.listen = listen;
        match Broker::start(config).await {
            Ok(broker) => return broker,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot restart on {listen}: {error:#}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connect(address: SocketAddr) -> Client {
    Client::connect(ClientConfig::new([address.to_string()]))
        .await
        .expect("client connects")
}

async fn create_topic(client: &Client, name: &str, partitions: i32) {
    Admin::new(client)
        .create_topics(&[NewTopic::new(name, partitions, 1)])
        .await
        .expect("topic is created");
}

fn value_text(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.clone().unwrap_or_default().to_vec()).unwrap()
}

/// Reads every partition of `topic` from the beginning until `count` records arrived.
async fn consume_all(
    client: &Client,
    topic: &str,
    partitions: i32,
    count: usize,
) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::new(client, ConsumerConfig::default()).unwrap();
    let assignment: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition::new(topic, partition))
        .collect();
    consumer.assign(assignment.clone());
    consumer.seek_to_beginning(&assignment).await.unwrap();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while records.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} records",
            records.len()
        );
        records.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    records
}

/// Records with the same key land in one partition, at increasing offsets in the
/// order they were sent, and the acknowledged (partition, offset) of each record is
/// where a consumer finds it. The consumer's stream yields them in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_key_keep_their_order() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(broker.client_addr()).await;
    create_topic(&client, "orders", 4).await;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            linger_ms: 2,
            batch_bytes_max: 4 * 1024,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let keys = 16;
    let per_key = 100;
    let mut deliveries: Vec<(String, usize, DeliveryFuture)> = Vec::new();
    for sequence in 0..per_key {
        for key in 0..keys {
            let key = format!("order-{key}");
            let record =
                ProducerRecord::new("orders", format!("{key}:{sequence}")).with_key(key.clone());
            deliveries.push((key, sequence, producer.send(record).await.unwrap()));
        }
    }
    producer.flush().await.unwrap();
    let mut acknowledged: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    let mut by_position: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for (key, sequence, delivery) in deliveries {
        let (partition, offset) = delivery.await.unwrap();
        acknowledged
            .entry(key.clone())
            .or_default()
            .push((partition, offset));
        by_position.insert((partition, offset), format!("{key}:{sequence}"));
    }
    for (key, positions) in &acknowledged {
        assert!(
            positions
                .iter()
                .all(|(partition, _)| *partition == positions[0].0),
            "{key} moved partition"
        );
        assert!(
            positions.windows(2).all(|pair| pair[0].1 < pair[1].1),
            "{key} out of order"
        );
    }
    producer.close().await.unwrap();

    let mut consumer = Consumer::new(&client, ConsumerConfig::default()).unwrap();
    let assignment: Vec<TopicPartition> = (0..4)
        .map(|partition| TopicPartition::new("orders", partition))
        .collect();
    consumer.assign(assignment.clone());
    consumer.seek_to_beginning(&assignment).await.unwrap();
    let mut next_sequence: HashMap<String, usize> = HashMap::new();
    {
        let mut stream = std::pin::pin!(consumer.stream());
        for _ in 0..keys * per_key {
            let record = tokio::time::timeout(PATIENCE, stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let text = value_text(&record);
            assert_eq!(
                by_position.get(&(record.partition, record.offset)),
                Some(&text)
            );
            let (key, sequence) = text.split_once(':').unwrap();
            let expected = next_sequence.entry(key.to_owned()).or_insert(0);
            assert_eq!(sequence.parse::<usize>().unwrap(), *expected, "{key}");
            *expected += 1;
        }
    }
    assert!(next_sequence.values().all(|count| *count == per_key));
    broker.shutdown().await.unwrap();
}

/// However fast the application sends, the bytes the producer buffers never exceed
/// buffer_bytes_max: send waits instead. 4 MiB go through a 64 KiB buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_bounds_the_buffer() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(broker.client_addr()).await;
    create_topic(&client, "bulk", 2).await;
    let buffer_bytes_max = 64 * 1024;
    let producer = Arc::new(
        Producer::new(
            &client,
            ProducerConfig {
                buffer_bytes_max,
                batch_bytes_max: 16 * 1024,
                linger_ms: 20,
                ..ProducerConfig::default()
            },
        )
        .unwrap(),
    );
    let sending = Arc::new(AtomicBool::new(true));
    let highest = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (producer, sending, highest) = (producer.clone(), sending.clone(), highest.clone());
        async move {
            while sending.load(Ordering::Acquire) {
                highest.fetch_max(producer.buffered_bytes(), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    });
    let value = vec![b'x'; 1024];
    let mut deliveries = Vec::new();
    for _ in 0..4 * 1024 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("bulk", value.clone()))
                .await
                .unwrap(),
        );
        let buffered = producer.buffered_bytes();
        assert!(buffered <= buffer_bytes_max, "{buffered} bytes buffered");
        highest.fetch_max(buffered, Ordering::AcqRel);
    }
    producer.flush().await.unwrap();
    sending.store(false, Ordering::Release);
    sampler.await.unwrap();
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    let highest = highest.load(Ordering::Acquire);
    assert!(highest <= buffer_bytes_max, "{highest} bytes buffered");
    assert!(
        highest > buffer_bytes_max / 2,
        "the buffer was never filled ({highest} bytes), so nothing was proven"
    );
    assert_eq!(
        producer.buffered_bytes(),
        0,
        "everything acknowledged is released"
    );
    broker.shutdown().await.unwrap();
}

/// With acks=all, a producer that keeps sending while its broker shuts down and comes
/// back on the same address (same data directory) loses nothing and keeps the
/// partition's order: every record is acknowledged, and each acknowledged offset holds
/// that record, with offsets increasing in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_survive_a_broker_restart() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let address = broker.client_addr();
    let client = connect(address).await;
    create_topic(&client, "events", 1).await;
    let mut client_config = ClientConfig::new([address.to_string()]);
    client_config.reconnect_backoff_ms = 20;
    client_config.reconnect_backoff_max_ms = 200;
    let producer_client = Client::connect(client_config).await.unwrap();
    let producer = Arc::new(
        Producer::new(
            &producer_client,
            ProducerConfig {
                acks: Acks::All,
                linger_ms: 1,
                // Small batches, so that several queue up behind a failing one.
                batch_bytes_max: 512,
                delivery_timeout_ms: PATIENCE.as_millis() as u64,
                retry_backoff_ms: 20,
                retry_backoff_max_ms: 200,
                ..ProducerConfig::default()
            },
        )
        .unwrap(),
    );
    let total = 3_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let (producer, sent) = (producer.clone(), sent.clone());
        async move {
            let mut deliveries = Vec::with_capacity(total);
            for sequence in 0..total {
                let record = ProducerRecord::new("events", sequence.to_string()).with_partition(0);
                deliveries.push(producer.send(record).await.unwrap());
                sent.store(sequence + 1, Ordering::Release);
                // Paced, so that sending spans the whole restart.
                if sequence % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            deliveries
        }
    });
    while sent.load(Ordering::Acquire) < total / 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    broker.shutdown().await.unwrap();
    let sent_at_shutdown = sent.load(Ordering::Acquire);
    // Records are sent (and buffered) while the broker is away.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sent.load(Ordering::Acquire) < sent_at_shutdown + 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was sent while the broker was away"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sent_at_restart = sent.load(Ordering::Acquire);
    let restarted = restart_broker(directory.path(), address).await;
    assert_eq!(restarted.client_addr(), address);
    assert!(
        sent_at_restart < total,
        "the sender must still be sending when the broker is back ({sent_at_shutdown}, {sent_at_restart})"
    );

    let deliveries = tokio::time::timeout(PATIENCE, sender)
        .await
        .unwrap()
        .unwrap();
    let mut offsets = Vec::with_capacity(total);
    for delivery in deliveries {
        let (partition, offset) = tokio::time::timeout(PATIENCE, delivery)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(partition, 0);
        offsets.push(offset);
    }
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "acknowledged offsets out of order"
    );
    producer.close().await.unwrap();

    let log_end = *offsets.last().unwrap() as usize + 1;
    let records = consume_all(&client, "events", 1, log_end).await;
    let by_offset: HashMap<i64, String> = records
        .iter()
        .map(|record| (record.offset, value_text(record)))
        .collect();
    for (sequence, offset) in offsets.iter().enumerate() {
        assert_eq!(
            by_offset.get(offset),
            Some(&sequence.to_string()),
            "offset {offset}"
        );
    }
    // A retried request whose first attempt was stored shows up twice; first
    // appearances must still be in send order.
    let mut seen = std::collections::HashSet::new();
    let first_appearances: Vec<usize> = records
        .iter()
        .map(|record| value_text(record).parse::<usize>().unwrap())
        .filter(|sequence| seen.insert(*sequence))
        .collect();
    assert_eq!(first_appearances, (0..total).collect::<Vec<_>>());
    restarted.shutdown().await.unwrap();
}

/// seek_to_timestamp finds the first record at or after a timestamp, and the end of
/// the log when there is none; seek_to_beginning and seek_to_end go to the log's ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_timestamp() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(broker.client_addr()).await;
    create_topic(&client, "clock", 1).await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    let base_ms = 1_700_000_000_000_i64;
    for index in 0..10 {
        let record = ProducerRecord::new("clock", format!("tick {index}"))
            .with_partition(0)
            .with_timestamp_ms(base_ms + index * 1_000);
        producer.send(record).await.unwrap().await.unwrap();
    }
    producer.close().await.unwrap();

    let partition = TopicPartition::new("clock", 0);
    let mut consumer = Consumer::new(
        &client,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        },
    )
    .unwrap();
    consumer.assign([partition.clone()]);
    let chosen = consumer
        .seek_to_timestamp(std::slice::from_ref(&partition), base_ms + 4_500)
        .await
        .unwrap();
    assert_eq!(chosen[&partition], 5);
    assert_eq!(consumer.position(&partition), Some(5));
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while records.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing fetched from offset 5"
        );
        records = consumer.poll(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(records[0].offset, 5);
    assert_eq!(records[0].timestamp_ms, base_ms + 5_000);
    assert_eq!(value_text(&records[0]), "tick 5");

    consumer
        .seek_to_timestamp(std::slice::from_ref(&partition), base_ms + 60_000)
        .await
        .unwrap();
    assert_eq!(
        consumer.position(&partition),
        Some(10),
        "past the last record: the end"
    );
    consumer
        .seek_to_beginning(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(consumer.position(&partition), Some(0));
    consumer
        .seek_to_end(std::slice::from_ref(&partition))
        .await
        .unwrap();
    assert_eq!(consumer.position(&partition), Some(10));
    assert_eq!(
        consumer
            .end_offsets(std::slice::from_ref(&partition))
            .await
            .unwrap()[&partition],
        10
    );

    // Past the end the broker answers OFFSET_OUT_OF_RANGE, and the Error policy
    // reports it.
    consumer.seek(&partition, 1_000).unwrap();
    let error = consumer.poll(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        matches!(error, Error::OffsetOutOfRange { offset: 1_000, .. }),
        "{error}"
    );
    broker.shutdown().await.unwrap();
}

/// acks=none records get no response; they resolve once written (offset -1) and are
/// stored all the same. Producing to a missing topic fails at once, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_and_unknown_topics() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(broker.client_addr()).await;
    create_topic(&client, "fire", 1).await;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..100 {
        deliveries.push(
            producer
                .send(ProducerRecord::new("fire", index.to_string()))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    for delivery in deliveries {
        assert_eq!(delivery.await.unwrap(), (0, -1));
    }
    let missing = producer
        .send(ProducerRecord::new("missing", "x"))
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "topic 'missing' does not exist");
    producer.close().await.unwrap();
    let records = consume_all(&client, "fire", 1, 100).await;
    let values: Vec<String> = records.iter().map(value_text).collect();
    assert_eq!(
        values,
        (0..100).map(|index| index.to_string()).collect::<Vec<_>>()
    );
    broker.shutdown().await.unwrap();
}

/// A file produced with `fjord produce --file` comes back line for line from
/// `fjord consume --from-beginning`, keys split off by `--key-separator`; topic
/// commands print tables and JSON; failures are one line on stderr and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let bootstrap = broker.client_addr().to_string();
    let at = |line: &str| words(&format!("--bootstrap {bootstrap} {line}"));

    let created = fjord(at(
        "topic create lines --partitions 1 --replication-factor 1 --config retention.ms=3600000",
    ))
    .await;
    assert_eq!(stdout(&created), "created topic 'lines'\n");
    let listed = stdout(&fjord(at("topic list")).await);
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|line| words(line) == ["lines", "1", "1"]),
        "{listed}"
    );
    let described: serde_json::Value = serde_json::from_str(&stdout(
        &fjord(at("topic describe lines --output json")).await,
    ))
    .unwrap();
    assert_eq!(
        described["partitions"][0]["leader"],
        described["partitions"][0]["isr"][0]
    );

    let lines: Vec<String> = (0..2_000)
        .map(|index| format!("key-{}|line {index} — ünïcödé", index % 7))
        .collect();
    let input = directory.path().join("input.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mut produce = at("produce lines --key-separator | --acks all --file");
    produce.push(input.display().to_string());
    stdout(&fjord(produce).await);

    let consumed = stdout(&fjord(at("consume lines --from-beginning")).await);
    let values: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once('|').unwrap().1)
        .collect();
    assert_eq!(consumed.lines().collect::<Vec<_>>(), values);

    let json_lines = stdout(
        &fjord(at(
            "consume lines --offset 1995 --partition 0 --format json --max-messages 3",
        ))
        .await,
    );
    let records: Vec<serde_json::Value> = json_lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["offset"], 1995);
    assert_eq!(
        records[0]["key"],
        serde_json::json!({"encoding": "utf8", "data": "key-0"})
    );

    let missing = fjord(at("topic describe nothing")).await;
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "error: topic 'nothing' does not exist\n"
    );

    let (_refusing, unused) = refusing_address();
    let unreachable = fjord(words(&format!("--bootstrap {unused} topic list"))).await;
    assert!(!unreachable.status.success());
    assert_eq!(
        String::from_utf8_lossy(&unreachable.stderr),
        format!("error: cannot reach broker at {unused}: connection refused\n")
    );
    broker.shutdown().await.unwrap();
}

/// `fjord consume` without a starting point starts at the end of each partition; with
/// `--follow` it prints only records produced after it started, waits for more, and
/// Ctrl-C (SIGINT) ends it with status 0 and nothing more printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_consume_defaults_follow_and_ctrl_c() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let bootstrap = broker.client_addr().to_string();
    let at = |line: &str| words(&format!("--bootstrap {bootstrap} {line}"));
    let client = connect(broker.client_addr()).await;
    create_topic(&client, "feed", 2).await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for index in 0..6 {
        let record = ProducerRecord::new("feed", format!("old-{index}")).with_partition(index % 2);
        producer.send(record).await.unwrap().await.unwrap();
    }

    // Without a starting point, `fjord consume` starts at the end and follows (as
    // Kafka's console consumer does; `cli_consume.rs` covers that default): here
    // `--follow` says so explicitly, and only records produced afterwards appear.
    let parked = || {
        broker
            .broker()
            .fetches_waiting
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let mut follower = common::FjordProcess::spawn(&at("consume feed --follow"));
    // Positioned at the end once its fetch waits at the broker for new data.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while parked() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fjord consume --follow never waited for records"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for index in 0..3 {
        let record = ProducerRecord::new("feed", format!("new-{index}")).with_partition(0);
        producer.send(record).await.unwrap().await.unwrap();
    }
    let mut printed = Vec::new();
    while printed.len() < 3 {
        let line = follower.next_line(PATIENCE).await;
        printed.push(line.expect("fjord consume --follow ended early"));
    }
    assert_eq!(printed, ["new-0", "new-1", "new-2"]);
    // Waiting for more: its next fetch is parked again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while parked() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fjord consume --follow stopped fetching"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follower.guard.signal("INT");
    let (status, rest, stderr) = follower.finish(PATIENCE).await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(rest.is_empty(), "printed after Ctrl-C: {rest:?}");
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}
