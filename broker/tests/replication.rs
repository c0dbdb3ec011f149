//! Partition replication between three brokers in this process, over real TCP on
//! 127.0.0.1: followers copy their leaders' logs byte for byte, acks=all answers once
//! every in-sync replica has the records, a leader that stops is replaced by an
//! in-sync follower that holds every acknowledged record, and a broker that comes back
//! catches up and rejoins the in-sync set.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::http_client::send_json;
use common::in_process_cluster::*;
use common::native_client::{NativeClient, values_batch};
use fjord_broker::storage::TopicPartition;
use fjord_protocol::messages::{
    Acks, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, JOIN_MEMBER_EPOCH, OffsetFetchRequest, OffsetFetchResponse,
};
use fjord_protocol::{ApiKey, ErrorCode};
use serde_json::json;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;

/// Creates `orders` with three partitions of three replicas through `node_id`, and
/// waits until every broker knows it with full in-sync sets.
async fn create_replicated_topic(cluster: &Cluster, node_id: i32) {
    let created = send_json(
        cluster.broker(node_id).http_addr(),
        "POST",
        "/v1/topics",
        &json!({"name": TOPIC, "partitions": PARTITIONS, "replication_factor": 3}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    wait_until("every broker knows the replicated topic", || {
        let known = cluster.running().into_iter().all(|node_id| {
            cluster.image(node_id).topic(TOPIC).is_some_and(|topic| {
                topic
                    .partitions
                    .iter()
                    .all(|partition| partition.replicas.len() == 3)
            })
        });
        async move { known }
    })
    .await;
}

/// Three brokers, settled, with `orders` created through broker 1.
async fn cluster_with_topic() -> Cluster {
    let cluster = Cluster::start().await;
    cluster.settled().await;
    create_replicated_topic(&cluster, 1).await;
    cluster
}

fn leader_of(cluster: &Cluster, partition: i32) -> i32 {
    let image = cluster.image(cluster.running()[0]);
    image.topic(TOPIC).unwrap().partitions[partition as usize].leader
}

fn isr_of(cluster: &Cluster, node_id: i32, partition: i32) -> Vec<i32> {
    let image = cluster.image(node_id);
    let mut isr = image.topic(TOPIC).unwrap().partitions[partition as usize]
        .isr
        .clone();
    isr.sort();
    isr
}

/// The bytes of the log of `partition` on `node_id`, from its start to its end, its
/// end and its high watermark.
fn log_of(cluster: &Cluster, node_id: i32, partition: i32) -> (Bytes, i64, i64) {
    let logs = &cluster.broker(node_id).broker().logs;
    let log = logs
        .get(&TopicPartition::new(TOPIC, partition))
        .expect("the replica has a log");
    let end = log.log_end_offset();
    let records = log
        .read(log.log_start_offset(), 64 << 20, end)
        .unwrap()
        .records;
    (records, end, log.high_watermark())
}

/// Produces `batches` batches of `per_batch` records to `partition` with acks=all
/// through its leader; returns each batch's base offset.
async fn produce_all(
    cluster: &Cluster,
    partition: i32,
    prefix: &str,
    batches: usize,
    per_batch: usize,
) -> Vec<i64> {
    let leader = leader_of(cluster, partition);
    let mut client = NativeClient::connect(cluster.broker(leader).client_addr()).await;
    let mut offsets = Vec::new();
    for batch in 0..batches {
        let answer = client
            .produce_with(
                Acks::All,
                TOPIC,
                partition,
                values_batch(&format!("{prefix}-{batch}"), per_batch),
            )
            .await;
        assert_eq!(
            answer.error_code,
            ErrorCode::None,
            "batch {batch} to partition {partition} via {leader}: {:?}",
            answer.error_message
        );
        offsets.push(answer.base_offset);
    }
    offsets
}

/// Waits until every running replica of every partition holds the same bytes as its
/// leader, up to the same end and high watermark.
async fn replicas_converge(cluster: &Cluster) {
    wait_until("every replica holds its leader's log", || {
        let converged = (0..PARTITIONS).all(|partition| {
            let leader = leader_of(cluster, partition);
            let expected = log_of(cluster, leader, partition);
            cluster
                .running()
                .into_iter()
                .all(|node_id| log_of(cluster, node_id, partition) == expected)
        });
        async move { converged }
    })
    .await;
}

/// acks=all records reach every replica byte for byte, the high watermark moves on
/// every broker, and consumers of the leader see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_copy_their_leaders_logs() {
    let cluster = cluster_with_topic().await;
    let mut produced = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let offsets = produce_all(&cluster, partition, &format!("p{partition}"), 20, 5).await;
        assert_eq!(offsets, (0..20).map(|b| b * 5).collect::<Vec<i64>>());
        produced.insert(partition, 100i64);
    }
    replicas_converge(&cluster).await;
    for partition in 0..PARTITIONS {
        for node_id in 1..=3 {
            let (_, end, high_watermark) = log_of(&cluster, node_id, partition);
            assert_eq!(
                (end, high_watermark),
                (100, 100),
                "partition {partition} on {node_id}"
            );
        }
        assert_eq!(isr_of(&cluster, 1, partition), vec![1, 2, 3]);
        let leader = leader_of(&cluster, partition);
        let mut client = NativeClient::connect(cluster.broker(leader).client_addr()).await;
        let fetched = client.fetch(TOPIC, partition, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None);
        assert_eq!(fetched.high_watermark, 100);
        // Followers do not serve consumers.
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let mut client = NativeClient::connect(cluster.broker(follower).client_addr()).await;
        let refused = client.fetch(TOPIC, partition, 0).await;
        assert_eq!(refused.error_code, ErrorCode::NotLeaderOrFollower);
        println!("partition {partition} checked");
    }
    println!("shutting down");
    cluster.shutdown().await;
}

/// The leader of a partition stops: an in-sync follower takes over with every
/// acknowledged record, acks=all goes on with the two left, and the old leader, back,
/// catches up and rejoins the in-sync set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_has_every_acknowledged_record() {
    let mut cluster = cluster_with_topic().await;
    produce_all(&cluster, 0, "before", 30, 4).await;
    let old_leader = leader_of(&cluster, 0);
    println!("stopping broker {old_leader}, the leader of partition 0");
    cluster.stop(old_leader).await;
    wait_until("partition 0 has another leader", || {
        let moved = {
            let leader = leader_of(&cluster, 0);
            leader != old_leader && leader >= 0
        };
        async move { moved }
    })
    .await;
    let new_leader = leader_of(&cluster, 0);
    let (_, end, _) = log_of(&cluster, new_leader, 0);
    assert_eq!(end, 120, "the new leader holds every acknowledged record");
    // A producer that knows an older leader epoch is fenced, one that knows a newer
    // one than the broker is told to wait (Produce version 1); neither is stored.
    let epoch = cluster.image(new_leader).topic(TOPIC).unwrap().partitions[0].leader_epoch;
    assert!(epoch > 0, "the failover bumped the leader epoch");
    let mut client = NativeClient::connect(cluster.broker(new_leader).client_addr()).await;
    for (known, expected) in [
        (epoch - 1, ErrorCode::FencedLeaderEpoch),
        (epoch + 1, ErrorCode::UnknownLeaderEpoch),
    ] {
        let refused = client
            .produce_at_epoch(Acks::All, TOPIC, 0, known, values_batch("stale", 1))
            .await;
        assert_eq!(refused.error_code, expected, "{:?}", refused.error_message);
    }
    assert_eq!(log_of(&cluster, new_leader, 0).1, 120, "nothing was stored");
    let offsets = produce_all(&cluster, 0, "after", 10, 4).await;
    assert_eq!(offsets[0], 120);

    cluster.restart(old_leader).await;
    wait_until("the old leader is back in the in-sync set", || {
        let back = isr_of(&cluster, new_leader, 0) == vec![1, 2, 3];
        async move { back }
    })
    .await;
    replicas_converge(&cluster).await;
    let (_, end, high_watermark) = log_of(&cluster, old_leader, 0);
    assert_eq!((end, high_watermark), (160, 160));
    cluster.shutdown().await;
}

/// Two of three brokers stop (each shutdown takes it out of the in-sync sets while the
/// quorum is still there): acks=all is refused with NOT_ENOUGH_REPLICAS before anything
/// is appended, acks=leader still works on the leader left, and the leader's HTTP view
/// and metrics show the partition under-replicated. Both back: they catch up, rejoin
/// the in-sync set, and acks=all works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_down_refuses_acks_all_until_they_return() {
    let mut cluster = cluster_with_topic().await;
    produce_all(&cluster, 0, "before", 5, 2).await;
    let leader = leader_of(&cluster, 0);
    let http = cluster.broker(leader).http_addr();

    // All in sync: the leader sees both followers caught up.
    wait_until("the leader shows both followers in sync", || async move {
        let view = common::http_client::get(http, &format!("/v1/topics/{TOPIC}"))
            .await
            .json();
        let followers = view["partitions"][0]["followers"].as_array().cloned();
        followers.is_some_and(|followers| {
            followers.len() == 2
                && followers
                    .iter()
                    .all(|f| f["in_sync"] == true && f["fetch_offset"] == 10 && f["lag"] == 0)
        })
    })
    .await;
    let metrics = common::http_client::scrape(http).await;
    let partition_labels = [&format!("topic=\"{TOPIC}\"")[..], "partition=\"0\""];
    for follower in (1..=3).filter(|id| *id != leader) {
        let replica = format!("replica=\"{follower}\"");
        let labels = [partition_labels[0], partition_labels[1], &replica];
        assert_eq!(
            metrics.value("fjord_replication_follower_lag", &labels),
            Some(0.0)
        );
        assert!(
            metrics
                .value("fjord_replication_follower_lag_seconds", &labels)
                .is_some()
        );
    }
    assert_eq!(
        metrics.value("fjord_replication_under_replicated_partitions", &[]),
        Some(0.0)
    );

    let away: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
    for node_id in &away {
        println!("stopping broker {node_id}");
        cluster.stop(*node_id).await;
    }
    let isr = isr_of(&cluster, leader, 0);
    assert_eq!(
        isr,
        vec![leader],
        "the shutdowns left the leader alone in sync"
    );
    let mut client = NativeClient::connect(cluster.broker(leader).client_addr()).await;
    let end_before = log_of(&cluster, leader, 0).1;
    let refused = client
        .produce_with(Acks::All, TOPIC, 0, values_batch("refused", 1))
        .await;
    assert_eq!(refused.error_code, ErrorCode::NotEnoughReplicas);
    assert_eq!(
        log_of(&cluster, leader, 0).1,
        end_before,
        "nothing appended"
    );
    let alone = client
        .produce_with(Acks::Leader, TOPIC, 0, values_batch("alone", 2))
        .await;
    assert_eq!(
        (alone.error_code, alone.base_offset),
        (ErrorCode::None, end_before)
    );
    let metrics = common::http_client::scrape(http).await;
    assert_eq!(
        metrics.value("fjord_replication_under_replicated_partitions", &[]),
        Some(f64::from(PARTITIONS)),
        "the leader leads every partition now"
    );
    let view = common::http_client::get(http, &format!("/v1/topics/{TOPIC}"))
        .await
        .json();
    let followers = view["partitions"][0]["followers"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        followers.iter().all(|f| f["in_sync"] == false),
        "{followers:?}"
    );

    for node_id in &away {
        cluster.restart(*node_id).await;
    }
    wait_until("both are back in the in-sync set", || {
        let back = isr_of(&cluster, leader, 0) == vec![1, 2, 3];
        async move { back }
    })
    .await;
    let offsets = produce_all(&cluster, 0, "after", 3, 1).await;
    assert_eq!(offsets[0], end_before + 2);
    replicas_converge(&cluster).await;
    cluster.shutdown().await;
}

/// The broker coordinating group `group` now, as `asked` answers FindCoordinator.
async fn coordinator_of(cluster: &Cluster, asked: i32, group: &str) -> Option<i32> {
    let mut client = NativeClient::connect(cluster.broker(asked).client_addr()).await;
    let found: FindCoordinatorResponse = client
        .call(
            ApiKey::FindCoordinator,
            &FindCoordinatorRequest {
                group_id: group.into(),
            },
        )
        .await;
    (found.error_code == ErrorCode::None).then_some(found.node_id)
}

/// Waits until `asked` names a coordinator for `group` other than `not`.
async fn wait_for_coordinator(cluster: &Cluster, asked: i32, group: &str, not: Option<i32>) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(found) = coordinator_of(cluster, asked, group).await
            && Some(found) != not
        {
            println!(
                "{group} coordinated by {found} after {:?}",
                started.elapsed()
            );
            return found;
        }
        assert!(started.elapsed() < PATIENCE, "no coordinator for {group}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every committed offset of `group`, as the broker `client` talks to answers.
async fn offset_fetch(client: &mut NativeClient, group: &str) -> OffsetFetchResponse {
    client
        .call(
            ApiKey::OffsetFetch,
            &OffsetFetchRequest {
                group_id: group.into(),
                topics: None,
            },
        )
        .await
}

/// The group's committed offsets of `TOPIC` at `node_id`, by partition, once it
/// coordinates the group and has loaded it.
async fn committed_at(cluster: &Cluster, node_id: i32, group: &str) -> BTreeMap<i32, i64> {
    let mut client = NativeClient::connect(cluster.broker(node_id).client_addr()).await;
    let started = std::time::Instant::now();
    loop {
        let fetched = offset_fetch(&mut client, group).await;
        if fetched.error_code == ErrorCode::None {
            println!(
                "offsets fetched from {node_id} after {:?}",
                started.elapsed()
            );
            return fetched
                .topics
                .iter()
                .filter(|topic| topic.name == TOPIC)
                .flat_map(|topic| &topic.partitions)
                .map(|partition| (partition.partition, partition.committed_offset))
                .collect();
        }
        assert_eq!(
            fetched.error_code,
            ErrorCode::CoordinatorNotAvailable,
            "only while the groups load"
        );
        assert!(
            started.elapsed() < PATIENCE,
            "{node_id} never loaded {group}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Joins `group` at `node_id` and commits `offsets`, retrying while the coordinator
/// is still loading.
async fn commit_at(cluster: &Cluster, node_id: i32, group: &str, offsets: &[(i32, i64)]) {
    let mut client = NativeClient::connect(cluster.broker(node_id).client_addr()).await;
    let started = std::time::Instant::now();
    let member = loop {
        let joined: ConsumerGroupHeartbeatResponse = client
            .call(
                ApiKey::ConsumerGroupHeartbeat,
                &ConsumerGroupHeartbeatRequest {
                    group_id: group.into(),
                    member_id: String::new(),
                    member_epoch: JOIN_MEMBER_EPOCH,
                    rebalance_timeout_ms: 30_000,
                    subscribed_topic_names: Some(vec![TOPIC.into()]),
                    owned_partitions: Vec::new(),
                },
            )
            .await;
        if joined.error_code == ErrorCode::None {
            break joined;
        }
        assert_eq!(joined.error_code, ErrorCode::CoordinatorNotAvailable);
        assert!(started.elapsed() < PATIENCE, "{node_id} never took {group}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for (partition, offset) in offsets {
        assert_eq!(
            client
                .commit(group, &member, TOPIC, *partition, *offset)
                .await,
            ErrorCode::None
        );
    }
}

/// A group's coordinator moves with the leadership of its partition of
/// `__consumer_offsets` (three replicas in a cluster of three): when the coordinating
/// broker stops, the new leader loads the group and its committed offsets are all
/// there; stopped in turn, the group moves again with the offsets committed meanwhile,
/// and a broker that no longer leads the partition sends clients on (NOT_COORDINATOR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_move_with_the_coordinator() {
    let mut cluster = cluster_with_topic().await;
    let group = "billing";
    let first = wait_for_coordinator(&cluster, 1, group, None).await;
    let offsets_topic = cluster.image(1);
    let offsets_topic = offsets_topic.topic("__consumer_offsets").unwrap();
    assert!(
        offsets_topic
            .partitions
            .iter()
            .all(|partition| partition.replicas.len() == 3),
        "the offsets topic has three replicas"
    );
    commit_at(&cluster, first, group, &[(0, 10), (1, 11), (2, 12)]).await;

    println!("stopping broker {first}, the group's coordinator");
    cluster.stop(first).await;
    let survivor = (1..=3).find(|id| *id != first).unwrap();
    let second = wait_for_coordinator(&cluster, survivor, group, Some(first)).await;
    let moved = committed_at(&cluster, second, group).await;
    assert_eq!(moved, BTreeMap::from([(0, 10), (1, 11), (2, 12)]));
    commit_at(&cluster, second, group, &[(0, 20)]).await;

    // Back, the first broker follows, catches up and rejoins every in-sync set; then
    // the second coordinator stops, and the group moves once more.
    cluster.restart(first).await;
    wait_until("every offsets partition is fully in sync", || {
        let image = cluster.image(first);
        let synced = image
            .topic("__consumer_offsets")
            .unwrap()
            .partitions
            .iter()
            .all(|partition| partition.isr.len() == 3);
        async move { synced }
    })
    .await;
    println!("stopping broker {second}, the group's second coordinator");
    cluster.stop(second).await;
    let third = wait_for_coordinator(&cluster, first, group, Some(second)).await;
    let again = committed_at(&cluster, third, group).await;
    assert_eq!(again, BTreeMap::from([(0, 20), (1, 11), (2, 12)]));
    // The second, back, follows: it forgot the group and sends clients on.
    cluster.restart(second).await;
    let mut client = NativeClient::connect(cluster.broker(second).client_addr()).await;
    assert_eq!(
        offset_fetch(&mut client, group).await.error_code,
        ErrorCode::NotCoordinator
    );
    cluster.shutdown().await;
}

/// A follower that was away while its leader deleted old records finds its log ending
/// below the leader's log start: it starts over, empty, at that start, copies the rest,
/// and rejoins the in-sync set, holding the leader's bytes from there on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let mut cluster = cluster_with_topic().await;
    produce_all(&cluster, 0, "old", 10, 2).await;
    let leader = leader_of(&cluster, 0);
    let away = (1..=3).find(|id| *id != leader).unwrap();
    println!("stopping broker {away}, a follower");
    cluster.stop(away).await;
    let offsets = produce_all(&cluster, 0, "while-away", 20, 5).await;
    assert_eq!(offsets[0], 20);
    // What retention does, below the high watermark (120).
    let partition = TopicPartition::new(TOPIC, 0);
    let leader_log = cluster
        .broker(leader)
        .broker()
        .logs
        .get(&partition)
        .unwrap();
    assert_eq!(leader_log.delete_records_before(110).unwrap(), 110);

    cluster.restart(away).await;
    wait_until("the follower is back in the in-sync set", || {
        let back = isr_of(&cluster, leader, 0) == vec![1, 2, 3];
        async move { back }
    })
    .await;
    let follower_log = cluster.broker(away).broker().logs.get(&partition).unwrap();
    assert_eq!(follower_log.log_start_offset(), 110);
    let read = |log: &fjord_broker::storage::PartitionLog| {
        let end = log.log_end_offset();
        (log.read(110, 64 << 20, end).unwrap().records, end)
    };
    wait_until("the follower holds the leader's log from 110", || {
        let same = read(&follower_log) == read(&leader_log);
        async move { same }
    })
    .await;
    assert_eq!(follower_log.log_end_offset(), 120);
    cluster.shutdown().await;
}

/// A topic that allows unclean elections stays available when its only in-sync
/// replica is gone: the other replica, back, leads alone, without the records only the
/// lost one had, and the active controller counts the election. (Without the setting
/// the partition would wait for its in-sync replica: the leadership table tests it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_unclean_election_makes_the_partition_available_again() {
    let mut cluster = Cluster::start().await;
    cluster.settled().await;
    let created = send_json(
        cluster.broker(1).http_addr(),
        "POST",
        "/v1/topics",
        &json!({"name": "risky", "replication_factor": 2, "config": {
            "unclean.leader.election.enable": true,
            "min.insync.replicas": 1,
        }}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let partition = |cluster: &Cluster, node_id: i32| {
        cluster
            .image(node_id)
            .topic("risky")
            .map(|topic| topic.partitions[0].clone())
    };
    wait_until("every broker knows the topic", || {
        let known = (1..=3).all(|node_id| partition(&cluster, node_id).is_some());
        async move { known }
    })
    .await;
    let placed = partition(&cluster, 1).unwrap();
    let (first, second) = (placed.replicas[0], placed.replicas[1]);
    assert_eq!(placed.leader, first);
    let produce = |address: std::net::SocketAddr, prefix: &'static str, count: usize| async move {
        let mut client = NativeClient::connect(address).await;
        client
            .produce_with(Acks::All, "risky", 0, values_batch(prefix, count))
            .await
    };
    // The image may name the leader before its broker has taken the leadership up.
    wait_until("the first replica leads", || {
        let leads = cluster
            .broker(first)
            .broker()
            .leader_log_now("risky", 0)
            .is_ok();
        async move { leads }
    })
    .await;
    let first_address = cluster.broker(first).client_addr();
    assert_eq!(
        produce(first_address, "both", 2).await.error_code,
        ErrorCode::None
    );
    wait_until("both replicas are in sync", || {
        let synced = partition(&cluster, first).unwrap().isr.len() == 2;
        async move { synced }
    })
    .await;

    println!("stopping broker {second}, then broker {first}, the leader");
    cluster.stop(second).await;
    let alone = produce(first_address, "alone", 3).await;
    assert_eq!((alone.error_code, alone.base_offset), (ErrorCode::None, 2));
    cluster.stop(first).await;
    cluster.restart(second).await;
    wait_until("the out-of-sync replica leads, alone in sync", || {
        let now = partition(&cluster, second).unwrap();
        let taken = now.leader == second && now.isr == vec![second];
        async move { taken }
    })
    .await;
    let log = cluster
        .broker(second)
        .broker()
        .logs
        .get(&TopicPartition::new("risky", 0))
        .unwrap();
    assert_eq!(
        log.log_end_offset(),
        2,
        "the records only the lost leader had"
    );
    let after = produce(cluster.broker(second).client_addr(), "after", 1).await;
    assert_eq!((after.error_code, after.base_offset), (ErrorCode::None, 2));
    let metrics = common::http_client::scrape(cluster.broker(second).http_addr()).await;
    assert_eq!(
        metrics.value("fjord_controller_unclean_leader_elections_total", &[]),
        Some(1.0)
    );
    cluster.shutdown().await;
}
