//! The client against three brokers of one cluster (in this process, real TCP on
//! 127.0.0.1), one of which is stopped: records for the partitions it led fail with a
//! delivery timeout, the others are delivered, and closing the producer returns; and
//! `fjord topic create` without counts takes the cluster's defaults.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fjord_broker::config::BrokerConfig;
use fjord_broker::{Broker, BrokerHandle, Listeners};
use fjord_client::{
    Admin, Client, ClientConfig, Error, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use fjord_protocol::ErrorCode;
use tokio::net::TcpListener;

/// Longest any wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

async fn ephemeral() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Three voters, started at once; returns them with their data directories.
async fn three_brokers() -> (Vec<tempfile::TempDir>, Vec<BrokerHandle>) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut internal = Vec::new();
    for _ in 0..3 {
        internal.push(ephemeral().await);
    }
    let voters = (1..=3)
        .zip(&internal)
        .map(|(node_id, listener)| format!("{node_id}@{}", listener.local_addr().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let mut starting = Vec::new();
    for ((node_id, dir), internal) in (1..=3).zip(&dirs).zip(internal) {
        let mut config = BrokerConfig::for_tests(&dir.path().join("data"));
        config.node_id = node_id;
        config.controller_quorum_voters = voters.clone();
        config.broker_heartbeat_interval_ms = 250;
        config.broker_session_timeout_ms = 2_000;
        starting.push(tokio::spawn(async move {
            let listeners = Listeners {
                client: ephemeral().await,
                internal,
                http: ephemeral().await,
                external: None,
            };
            Broker::start_on(config, listeners).await
        }));
    }
    let mut brokers = Vec::new();
    for start in starting {
        brokers.push(start.await.unwrap().expect("a voter starts"));
    }
    (dirs, brokers)
}

async fn connect(addresses: &[SocketAddr]) -> Client {
    Client::connect(ClientConfig::new(addresses.iter().map(|a| a.to_string())))
        .await
        .expect("client connects")
}

/// A partition whose only replica is down has no leader: a record for it fails with a
/// delivery timeout (once the next retry would come after its deadline), records for
/// the other partitions are delivered, and `close`, called while that record still
/// waits, returns once it has failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_for_a_leaderless_partition_time_out_and_close_returns() {
    let (_dirs, mut brokers) = three_brokers().await;
    let addresses: Vec<SocketAddr> = brokers.iter().map(|b| b.client_addr()).collect();
    let client = connect(&addresses[..1]).await;
    let admin = Admin::new(&client);
    admin
        .create_topics(&[NewTopic::new("orders", 3, 1)])
        .await
        .unwrap();
    let image = brokers[0].broker().metadata();
    let topic = image.topic("orders").unwrap();
    let stopped = topic.partitions[0].leader;
    let lost = topic.partitions[0].partition;
    let live = topic
        .partitions
        .iter()
        .find(|p| p.leader != stopped)
        .unwrap()
        .partition;
    let index = brokers
        .iter()
        .position(|b| b.broker().config.node_id == stopped)
        .unwrap();
    brokers.remove(index).shutdown().await.unwrap();
    let first = &brokers[0];
    let started = Instant::now();
    while first
        .broker()
        .metadata()
        .topic("orders")
        .unwrap()
        .partitions[lost as usize]
        .leader
        != -1
    {
        assert!(started.elapsed() < PATIENCE, "partition {lost} still led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let client = connect(&[first.client_addr()]).await;
    let described = Admin::new(&client).describe_topic("orders").await.unwrap();
    let partition = &described.partitions[lost as usize];
    assert_eq!(partition.leader, None, "{described:?}");
    assert_eq!(
        partition.error_code,
        ErrorCode::LeaderNotAvailable,
        "{described:?}"
    );
    let delivery_timeout_ms = 2_000;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            delivery_timeout_ms,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let sent = Instant::now();
    let to_lost = producer
        .send(ProducerRecord::new("orders", "lost").with_partition(lost))
        .await
        .unwrap();
    let to_live = producer
        .send(ProducerRecord::new("orders", "live").with_partition(live))
        .await
        .unwrap();
    // Closed while the record for the leaderless partition waits, as `fjord produce`
    // does at the end of its input: close returns once every record has settled.
    let closed = tokio::time::timeout(PATIENCE, producer.close()).await;
    println!("close returned after {:?}: {closed:?}", sent.elapsed());
    closed.expect("close returns").unwrap();
    let delivered = tokio::time::timeout(PATIENCE, to_live)
        .await
        .expect("the live partition's record settles");
    assert!(delivered.is_ok(), "{delivered:?}");
    let failed = tokio::time::timeout(PATIENCE, to_lost)
        .await
        .expect("the leaderless partition's record settles");
    println!(
        "the record for leaderless partition {lost} failed after {:?}: {failed:?}",
        sent.elapsed()
    );
    assert!(
        matches!(failed, Err(Error::DeliveryTimeout { .. })),
        "{failed:?}"
    );
    for broker in brokers {
        broker.shutdown().await.unwrap();
    }
}

/// `fjord topic create NAME` leaves the partition count and replication factor to the
/// brokers: on three brokers, three replicas (the automatic default), as the README
/// promises; given flags, it uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_topic_create_takes_the_brokers_defaults() {
    let (_dirs, brokers) = three_brokers().await;
    let bootstrap = brokers[0].client_addr().to_string();
    for arguments in [
        vec!["topic", "create", "plain"],
        vec![
            "topic",
            "create",
            "chosen",
            "--partitions",
            "2",
            "--replication-factor",
            "2",
        ],
    ] {
        let mut all = vec!["--bootstrap".to_owned(), bootstrap.clone()];
        all.extend(arguments.iter().map(|argument| argument.to_string()));
        let output = common::fjord(all).await;
        assert!(
            output.status.success(),
            "{arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let image = brokers[0].broker().metadata();
    let shape = |name: &str| {
        let topic = image.topic(name).unwrap();
        (topic.partitions.len(), topic.partitions[0].replicas.len())
    };
    assert_eq!(shape("plain"), (1, 3));
    assert_eq!(shape("chosen"), (2, 2));
}
