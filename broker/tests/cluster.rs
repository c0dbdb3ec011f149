//! Three brokers that are voters of one metadata quorum, in this process, over real TCP
//! on 127.0.0.1: they agree on an active controller, register with it and are
//! unfenced; a topic created and deleted through a broker that is not the controller is
//! carried out by the controller (forwarded over the internal listener) and is known to
//! the broker that took the request as soon as it answers; every broker serves the
//! partitions it leads; a broker that shuts down is fenced in the others' view, and
//! comes back unfenced with a new broker epoch; without a majority, changes are refused
//! with a retriable error and the last known metadata is still served; clients of a
//! second (external) client listener are given every broker's external address.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http_client::{get, http, send_json};
use common::in_process_cluster::*;
use common::native_client::{NativeClient, values_batch};
use fjord_broker::{Broker, BrokerHandle, Listeners};
use fjord_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use fjord_protocol::ApiKey;
use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{
    Acks, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};
use serde_json::json;

/// Changes made through brokers that are not the active controller are carried out by
/// it, answered once the broker that took them knows them, and followed by every
/// broker; a broker that shuts down is fenced and comes back unfenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_forward_changes_to_the_active_controller() {
    let mut cluster = Cluster::start().await;
    let controller = cluster.settled().await;
    let follower = (1..=3).find(|id| *id != controller).unwrap();
    let other = (1..=3)
        .find(|id| *id != controller && *id != follower)
        .unwrap();
    println!("controller {controller}, follower {follower}, other {other}");

    // Created through a follower: known to it as soon as it answers.
    let http_addr = cluster.broker(follower).http_addr();
    let created = send_json(
        http_addr,
        "POST",
        "/v1/topics",
        &json!({"name": "orders", "partitions": 6}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let image = cluster.image(follower);
    let topic = image
        .topic("orders")
        .expect("known when the creation answers");
    let leaders: std::collections::BTreeSet<i32> = topic
        .partitions
        .iter()
        .map(|partition| partition.leader)
        .collect();
    assert_eq!(leaders, [1, 2, 3].into(), "{topic:?}");
    let described = get(http_addr, "/v1/topics/orders").await;
    assert_eq!(described.status, 200, "{}", described.text());

    // Every partition is served by its leader, whichever broker that is.
    let topic = topic.clone();
    wait_until("every broker knows the topic", || {
        let known = (1..=3).all(|node_id| cluster.image(node_id).topic("orders").is_some());
        async move { known }
    })
    .await;
    for partition in &topic.partitions {
        let leader = cluster.broker(partition.leader);
        let mut client = NativeClient::connect(leader.client_addr()).await;
        let value = format!("p{}", partition.partition);
        // acks=all: answered once the followers have the record, so it is committed.
        let produced = client
            .produce_with(
                Acks::All,
                "orders",
                partition.partition,
                values_batch(&value, 1),
            )
            .await
            .error_code;
        assert_eq!(produced, ErrorCode::None, "partition {partition:?}");
        let fetched = client.fetch("orders", partition.partition, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None);
        assert_eq!(fetched.high_watermark, 1);
        assert!(!fetched.records.is_empty());
    }

    // The same name again, through the other follower: refused by the controller.
    let again = send_json(
        cluster.broker(other).http_addr(),
        "POST",
        "/v1/topics",
        &json!({"name": "orders", "partitions": 1}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());

    // Deleted through a follower: gone there when it answers, then everywhere.
    let deleted = http(http_addr, "DELETE", "/v1/topics/orders", None).await;
    assert!(
        deleted.status < 300,
        "{} {}",
        deleted.status,
        deleted.text()
    );
    assert!(cluster.image(follower).topic("orders").is_none());
    wait_until("every broker forgot the topic", || {
        let gone = (1..=3).all(|node_id| cluster.image(node_id).topic("orders").is_none());
        async move { gone }
    })
    .await;

    // A follower that shuts down is fenced in the survivors' view; restarted, it is
    // a new registration, unfenced.
    let epoch_before = cluster.image(controller).brokers[&follower].broker_epoch;
    let stopping = Instant::now();
    cluster.stop(follower).await;
    println!("broker {follower} stopped in {:?}", stopping.elapsed());
    wait_until("the survivors see the stopped broker fenced", || {
        let fenced = [controller, other]
            .iter()
            .all(|node_id| cluster.image(*node_id).brokers[&follower].fenced);
        async move { fenced }
    })
    .await;
    cluster.restart(follower).await;
    cluster.settled().await;
    let epoch_after = cluster.image(controller).brokers[&follower].broker_epoch;
    assert!(
        epoch_after > epoch_before,
        "{epoch_before} -> {epoch_after}"
    );

    // Two of three gone: a change fails with a retriable error within the propose
    // timeout (an answer with a body, not a dropped connection), and the last known
    // metadata is still read.
    cluster.stop(controller).await;
    cluster.stop(other).await;
    let http_addr = cluster.broker(follower).http_addr();
    let asked = Instant::now();
    let refused = send_json(
        http_addr,
        "POST",
        "/v1/topics",
        &json!({"name": "payments", "partitions": 1}),
    )
    .await;
    println!(
        "creation without a quorum answered {} after {:?}: {}",
        refused.status,
        asked.elapsed(),
        refused.text()
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("quorum_unavailable"),
        "{}",
        refused.text()
    );
    let listed = get(http_addr, "/v1/topics").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    cluster.shutdown().await;
}

/// A voter alone among three cannot make a cluster: its start-up waits for a leader
/// (it does not give up at the first propose timeout), and once the others come it
/// joins them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_alone_waits_for_the_others() {
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
    let mut internal = internal.into_iter();
    let mut start = |node_id: i32| {
        let config = config(
            &dirs[(node_id - 1) as usize].path().join("data"),
            node_id,
            &voters,
        );
        let internal = internal.next().unwrap();
        tokio::spawn(async move {
            let listeners = Listeners {
                client: ephemeral().await,
                internal,
                http: ephemeral().await,
                external: None,
            };
            Broker::start_on(config, listeners).await
        })
    };
    let first = start(1);
    // Longer than a propose timeout: the start must still be waiting.
    tokio::time::sleep(PROPOSE_TIMEOUT + Duration::from_secs(2)).await;
    assert!(!first.is_finished(), "a voter alone finished starting");
    let (second, third) = (start(2), start(3));
    let mut brokers = Vec::new();
    for broker in [first, second, third] {
        brokers.push(broker.await.unwrap().expect("the voter starts"));
    }
    wait_until("all three unfenced", || {
        let done = brokers
            .iter()
            .all(|broker| all_unfenced(&broker.broker().metadata(), &[1, 2, 3]));
        async move { done }
    })
    .await;
    for broker in brokers {
        broker.shutdown().await.unwrap();
    }
}

/// Roles: node 3 is a controller only (a voter that holds no partitions) and node 4 a
/// broker only (it follows the quorum as a learner, without voting). Node 4 joins the
/// cluster, takes partitions and forwards changes like any broker; node 3 never
/// registers. Restarted, node 4 joins again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_only_and_controller_only_nodes() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut internal = Vec::new();
    for _ in 0..4 {
        internal.push(ephemeral().await);
    }
    let addresses: Vec<SocketAddr> = internal.iter().map(|l| l.local_addr().unwrap()).collect();
    let voters = (1..=3)
        .zip(&addresses)
        .map(|(node_id, address)| format!("{node_id}@{address}"))
        .collect::<Vec<_>>()
        .join(",");
    let node_config = |node_id: i32| {
        let mut config = config(
            &dirs[(node_id - 1) as usize].path().join("data"),
            node_id,
            &voters,
        );
        config.process_roles = match node_id {
            3 => "controller",
            4 => "broker",
            _ => "broker,controller",
        }
        .to_owned();
        config
    };
    let mut starting = Vec::new();
    for (node_id, internal) in (1..=4).zip(internal) {
        let config = node_config(node_id);
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
        brokers.push(Some(start.await.unwrap().expect("the node starts")));
    }
    let image = |brokers: &[Option<BrokerHandle>], node_id: i32| {
        brokers[(node_id - 1) as usize]
            .as_ref()
            .unwrap()
            .broker()
            .metadata()
    };
    wait_until("brokers 1, 2 and 4 unfenced everywhere", || {
        let done = (1..=4).all(|node_id| all_unfenced(&image(&brokers, node_id), &[1, 2, 4]));
        async move { done }
    })
    .await;
    for node_id in 1..=4 {
        let registered: Vec<i32> = image(&brokers, node_id).brokers.keys().copied().collect();
        assert_eq!(registered, [1, 2, 4], "as node {node_id} sees it");
    }

    // Node 4 follows as a learner; the quorum lists it apart from the voters.
    let http_4 = brokers[3].as_ref().unwrap().http_addr();
    let view = get(http_4, "/v1/cluster").await.json();
    assert_eq!(view["quorum"]["role"], "learner", "{view}");
    let voters: Vec<i64> = view["quorum"]["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|voter| voter["node_id"].as_i64().unwrap())
        .collect();
    assert_eq!(voters, [1, 2, 3], "{view}");
    assert_eq!(view["quorum"]["learners"][0]["node_id"], 4, "{view}");

    // A topic created through the broker-only node: partitions on 1, 2 and 4 only.
    let created = send_json(
        http_4,
        "POST",
        "/v1/topics",
        &json!({"name": "orders", "partitions": 6}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let topic = image(&brokers, 4).topic("orders").unwrap().clone();
    let leaders: std::collections::BTreeSet<i32> = topic
        .partitions
        .iter()
        .map(|partition| partition.leader)
        .collect();
    assert_eq!(leaders, [1, 2, 4].into(), "{topic:?}");
    wait_until("every node knows the topic", || {
        let known = (1..=4).all(|node_id| image(&brokers, node_id).topic("orders").is_some());
        async move { known }
    })
    .await;
    for partition in topic.partitions.iter().filter(|p| p.leader == 4) {
        let mut client = NativeClient::connect(brokers[3].as_ref().unwrap().client_addr()).await;
        let produced = client
            .produce("orders", partition.partition, values_batch("four", 2))
            .await;
        assert_eq!(produced, ErrorCode::None);
    }

    // Restarted on its address, the broker-only node joins again.
    let epoch_before = image(&brokers, 1).brokers[&4].broker_epoch;
    brokers[3].take().unwrap().shutdown().await.unwrap();
    let listeners = Listeners {
        client: ephemeral().await,
        internal: rebind(addresses[3]).await,
        http: ephemeral().await,
        external: None,
    };
    let started = Instant::now();
    brokers[3] = Some(Broker::start_on(node_config(4), listeners).await.unwrap());
    println!("broker-only node restarted in {:?}", started.elapsed());
    wait_until("node 4 unfenced again with a new epoch", || {
        let broker = image(&brokers, 1).brokers.get(&4).cloned();
        async move { broker.is_some_and(|broker| !broker.fenced && broker.broker_epoch > epoch_before) }
    })
    .await;
    assert!(image(&brokers, 4).topic("orders").is_some());
    for broker in brokers.into_iter().flatten() {
        broker.shutdown().await.unwrap();
    }
}

/// Each broker has a second client listener (`external_listen`), as in the compose
/// cluster, where clients on the Docker host use published ports and clients in other
/// containers the containers' names. Metadata and FindCoordinator answer with every
/// broker's address for the listener the request came in on, and a producer and a
/// consumer bootstrapped on external listeners work end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_listener_is_given_its_own_addresses() {
    let cluster = Cluster::start_with_external_listeners().await;
    cluster.settled().await;
    let address = |node_id: i32, external: bool| {
        let broker = cluster.broker(node_id);
        if external {
            broker.external_addr().unwrap()
        } else {
            broker.client_addr()
        }
    };
    let external = |node_id: i32| address(node_id, true);
    for node_id in 1..=3 {
        for external in [false, true] {
            let asked = address(node_id, external);
            let mut client = NativeClient::connect(asked).await;
            let metadata: MetadataResponse = client
                .call(ApiKey::Metadata, &MetadataRequest { topics: None })
                .await;
            let given: Vec<(i32, String)> = metadata
                .brokers
                .iter()
                .map(|broker| (broker.node_id, format!("{}:{}", broker.host, broker.port)))
                .collect();
            let wanted: Vec<(i32, String)> = (1..=3)
                .map(|id| (id, address(id, external).to_string()))
                .collect();
            assert_eq!(given, wanted, "metadata asked at {asked}");
        }
    }
    let described = get(cluster.broker(1).http_addr(), "/v1/cluster")
        .await
        .json();
    assert_eq!(
        described["brokers"][1]["external_address"].as_str(),
        Some(external(2).to_string().as_str()),
        "{described}"
    );

    let bootstrap = external(2).to_string();
    let client = Client::connect(ClientConfig::new([bootstrap.as_str()]))
        .await
        .unwrap();
    Admin::new(&client)
        .create_topics(&[NewTopic::new("orders", 3, 3)])
        .await
        .unwrap();
    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: fjord_client::Acks::All,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..30 {
        let record =
            ProducerRecord::new("orders", format!("value-{index}")).with_partition(index % 3);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await.unwrap();
    let mut consumer = Consumer::new(&client, ConsumerConfig::default()).unwrap();
    let partitions: Vec<TopicPartition> = (0..3)
        .map(|partition| TopicPartition::new("orders", partition))
        .collect();
    consumer.assign(partitions.clone());
    consumer.seek_to_beginning(&partitions).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    while seen.len() < 30 {
        assert!(started.elapsed() < PATIENCE, "consumed only {seen:?}");
        for record in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            seen.insert(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }

    // The group coordinator is given at its external address too.
    let mut client = NativeClient::connect(external(3)).await;
    let coordinator = wait_for_coordinator(&mut client, "readers").await;
    assert_eq!(
        format!("{}:{}", coordinator.host, coordinator.port),
        external(coordinator.node_id).to_string()
    );
}

/// FindCoordinator until it names a coordinator (the offsets topic is created by the
/// first request, and its leaders take a moment).
async fn wait_for_coordinator(client: &mut NativeClient, group: &str) -> FindCoordinatorResponse {
    let started = Instant::now();
    loop {
        let response: FindCoordinatorResponse = client
            .call(
                ApiKey::FindCoordinator,
                &FindCoordinatorRequest {
                    group_id: group.into(),
                },
            )
            .await;
        if response.error_code == ErrorCode::None {
            return response;
        }
        assert!(started.elapsed() < PATIENCE, "no coordinator: {response:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
