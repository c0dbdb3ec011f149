//! A broker follows metadata it did not change itself: records proposed to its
//! metadata log directly (as another broker's controller would) create and delete its
//! partition logs, and moving a leadership away makes it refuse to serve that
//! partition, or the groups of that `__consumer_offsets` partition, to clients.

use std::time::{Duration, Instant};

use fjord_broker::Broker;
use fjord_broker::config::BrokerConfig;
use fjord_broker::metadata::{CreateTopic, MetadataRecord};
use fjord_broker::storage::TopicPartition;
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};

mod common;
use common::http_client::TIMEOUT;
use common::native_client::{NativeClient, values_batch};

/// Polls `condition` until it holds, failing after a generous deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn logs_and_leadership_follow_metadata_changed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let handle = Broker::start(BrokerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    let broker = handle.broker().clone();
    let me = broker.config.node_id;
    let other = me + 1;
    let mut client = NativeClient::connect(handle.client_addr()).await;

    // A topic created by another controller: its log appears here and is served.
    let elsewhere = uuid::Uuid::from_u128(42);
    broker
        .metadata_log
        .propose(vec![MetadataRecord::TopicCreated {
            name: "elsewhere".into(),
            topic_id: elsewhere.to_string(),
            config: Default::default(),
            replicas: vec![vec![me]],
        }])
        .await
        .unwrap();
    let partition = TopicPartition::new("elsewhere", 0);
    wait_until("the log exists", || broker.logs.get(&partition).is_some()).await;
    // The reconciler creates the log, then takes up its leadership.
    wait_until("the broker leads it", || {
        broker.leader_log_now("elsewhere", 0).is_ok()
    })
    .await;
    assert_eq!(
        client.produce("elsewhere", 0, values_batch("a", 2)).await,
        ErrorCode::None
    );

    // Deleted elsewhere: the log and its directory go.
    broker
        .metadata_log
        .propose(vec![MetadataRecord::TopicDeleted {
            topic_id: elsewhere.to_string(),
        }])
        .await
        .unwrap();
    let directory = dir.path().join(partition.to_string());
    wait_until("the log is deleted", || {
        broker.logs.get(&partition).is_none() && !directory.exists()
    })
    .await;
    assert_eq!(
        client.produce("elsewhere", 0, values_batch("b", 1)).await,
        ErrorCode::UnknownTopicOrPartition
    );

    // A topic and a group this broker leads and coordinates, until the leadership of
    // the topic and of every offsets partition moves to another broker.
    broker
        .create_topic(
            CreateTopic {
                name: "orders".into(),
                partitions: Some(1),
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        client.produce("orders", 0, values_batch("c", 1)).await,
        ErrorCode::None
    );
    let member = client.join_group("g", "orders").await;
    assert_eq!(
        client.commit("g", &member, "orders", 0, 1).await,
        ErrorCode::None
    );
    let image = broker.metadata();
    let moved: Vec<MetadataRecord> = ["orders", fjord_broker::group::OFFSETS_TOPIC]
        .iter()
        .flat_map(|name| {
            let topic = image.topic(name).unwrap();
            topic
                .partitions
                .iter()
                .map(|partition| MetadataRecord::PartitionChanged {
                    topic_id: topic.topic_id.to_string(),
                    partition: partition.partition,
                    leader: other,
                    leader_epoch: partition.leader_epoch + 1,
                    isr: vec![other],
                    elr: Vec::new(),
                    partition_epoch: None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    broker.metadata_log.propose(moved).await.unwrap();

    assert_eq!(
        client.produce("orders", 0, values_batch("d", 1)).await,
        ErrorCode::NotLeaderOrFollower
    );
    assert!(
        broker.logs.get(&TopicPartition::new("orders", 0)).is_some(),
        "a follower keeps its log"
    );
    assert_eq!(
        client.commit("g", &member, "orders", 0, 2).await,
        ErrorCode::NotCoordinator
    );
    let heartbeat: ConsumerGroupHeartbeatResponse = client
        .call(
            ApiKey::ConsumerGroupHeartbeat,
            &ConsumerGroupHeartbeatRequest {
                group_id: "g".into(),
                member_id: member.member_id.clone(),
                member_epoch: member.member_epoch,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: None,
                owned_partitions: Vec::new(),
            },
        )
        .await;
    assert_eq!(heartbeat.error_code, ErrorCode::NotCoordinator);
    let fetched: OffsetFetchResponse = client
        .call(
            ApiKey::OffsetFetch,
            &OffsetFetchRequest {
                group_id: "g".into(),
                topics: None,
            },
        )
        .await;
    assert_eq!(fetched.error_code, ErrorCode::NotCoordinator);

    handle.shutdown().await.unwrap();
}
