//! Three real `fjord-broker` processes, voters of one metadata quorum on 127.0.0.1,
//! under the failures a cluster must survive: the active controller killed with
//! SIGKILL and restarted, two of three voters gone and one back, the whole cluster
//! stopped and started again while a topic was deleted and re-created behind a broker's
//! back, and bad settings. Every process is killed and reaped when a test fails
//! (`BrokerProcess` does it on drop). Timings are printed, never asserted.

mod common;

use std::path::{Path, PathBuf};

use common::http_client::send_json;
use common::native_client::{NativeClient, values_batch};
use common::process::{BrokerProcess, broker_command, run_to_end};
use common::process_cluster::{ProcessCluster, wait_for};
use fjord_protocol::ErrorCode;
use serde_json::json;
use tokio::time::Instant;

/// The partitions of `topic` each node leads, from one node's description.
fn led_by(leaders: &[i64], node_id: i32) -> Vec<i32> {
    (0..leaders.len() as i32)
        .filter(|partition| leaders[*partition as usize] == i64::from(node_id))
        .collect()
}

/// Kill -9 the active controller: another is elected and changes work again; the
/// killed one rejoins as a follower. Then two of three down: changes fail with the
/// documented retriable error while the last metadata is still read; one back: changes
/// succeed, and every broker holds the same metadata at the same log index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_survives_its_controller_and_waits_out_a_lost_majority() {
    let mut cluster = ProcessCluster::new();
    let started = Instant::now();
    cluster.start_all().await;
    println!("three brokers ready in {:?}", started.elapsed());
    let controller = cluster.settled(3).await;
    let follower = (1..=3).find(|id| *id != controller).unwrap();
    println!("active controller {controller}");

    // Created through a broker that is not the controller; every broker describes it
    // alike, with leaders spread over all three.
    cluster.create_retrying(follower, "orders", 6).await;
    cluster.same_metadata().await;
    let leaders = cluster.leaders(3, "orders").await;
    for node_id in 1..=3 {
        assert_eq!(cluster.leaders(node_id, "orders").await, leaders);
        assert!(!led_by(&leaders, node_id).is_empty(), "{leaders:?}");
    }
    // Each broker takes records for the partitions it leads.
    for node_id in 1..=3 {
        let mut client = NativeClient::connect(cluster.client(node_id)).await;
        for partition in led_by(&leaders, node_id) {
            let produced = client
                .produce("orders", partition, values_batch("o", 3))
                .await;
            assert_eq!(
                produced,
                ErrorCode::None,
                "orders-{partition} at broker {node_id}"
            );
        }
    }

    // The active controller killed: a survivor takes over and changes work again.
    let killed = Instant::now();
    cluster.kill(controller);
    let survivor = (1..=3).find(|id| *id != controller).unwrap();
    cluster.create_retrying(survivor, "after-failover", 3).await;
    println!(
        "controller {controller} killed: a creation succeeded {:?} later",
        killed.elapsed()
    );
    let new_controller = cluster.cluster_view(survivor).await["controller_id"]
        .as_i64()
        .unwrap();
    assert_ne!(new_controller, i64::from(controller));

    // Restarted, it rejoins as a follower of the new controller.
    cluster.spawn(controller).await;
    cluster.ready(controller).await;
    cluster.settled(3).await;
    let view = cluster.cluster_view(controller).await;
    assert_eq!(view["quorum"]["role"], "follower", "{view}");
    assert_eq!(view["controller_id"], new_controller, "{view}");
    cluster.same_metadata().await;

    // Two of three gone: a change is refused, retriably, within the propose timeout;
    // the last known metadata is still served.
    let last = (1..=3).find(|id| i64::from(*id) != new_controller).unwrap();
    for node_id in cluster.running() {
        if node_id != last {
            cluster.kill(node_id);
        }
    }
    let asked = Instant::now();
    let refused = send_json(
        cluster.http(last),
        "POST",
        "/v1/topics",
        &json!({"name": "while-down", "partitions": 1}),
    )
    .await;
    println!(
        "without a majority the creation was answered {} after {:?}: {}",
        refused.status,
        asked.elapsed(),
        refused.text()
    );
    let message = refused.expect_error(503, "quorum_unavailable");
    assert!(
        message.matches("active controller").count() <= 1,
        "{message}"
    );
    let topics = cluster.topics(last).await;
    assert!(topics.contains_key("orders") && topics.contains_key("after-failover"));
    assert!(!topics.contains_key("while-down"));

    // One back: a majority again, and changes succeed.
    let back = (1..=3).find(|id| *id != last).unwrap();
    let returned = Instant::now();
    cluster.spawn(back).await;
    cluster.ready(back).await;
    cluster.create_retrying(last, "after-return", 2).await;
    println!(
        "broker {back} back: a creation succeeded {:?} later",
        returned.elapsed()
    );
    let index = cluster.same_metadata().await;
    println!(
        "brokers {:?} agree at metadata index {index}",
        cluster.running()
    );
}

/// The whole cluster stopped and started again keeps its metadata; a broker that was
/// down while a topic was deleted and re-created comes back without the old data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_keeps_its_metadata_and_drops_what_was_deleted() {
    let mut cluster = ProcessCluster::new();
    cluster.start_all().await;
    cluster.settled(3).await;
    cluster.create_retrying(1, "events", 3).await;
    cluster.same_metadata().await;
    let leaders = cluster.leaders(1, "events").await;

    // Broker 3 takes records for its partitions, then stops.
    let away = 3;
    let away_partitions = led_by(&leaders, away);
    assert!(!away_partitions.is_empty(), "{leaders:?}");
    let mut client = NativeClient::connect(cluster.client(away)).await;
    for partition in &away_partitions {
        let produced = client
            .produce("events", *partition, values_batch("old", 5))
            .await;
        assert_eq!(produced, ErrorCode::None);
    }
    drop(client);
    cluster.terminate(away).await;
    let old_dirs = partition_dirs(&cluster.node(away).data_dir, "events");
    assert_eq!(old_dirs.len(), away_partitions.len(), "{old_dirs:?}");

    // While it is down (and fenced), the topic is deleted and created again: the new
    // one is placed on the two live brokers.
    wait_for("the stopped broker fenced", || async {
        let view = cluster.cluster_view(1).await;
        let fenced = view["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|broker| broker["node_id"] == away && broker["fenced"] == true);
        fenced.then_some(())
    })
    .await;
    let deleted =
        common::http_client::http(cluster.http(1), "DELETE", "/v1/topics/events", None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    cluster.create_retrying(2, "events", 3).await;
    let before = cluster.topics(1).await;

    // The whole cluster stops and starts again.
    for node_id in cluster.running() {
        cluster.terminate(node_id).await;
    }
    let restarted = Instant::now();
    cluster.start_all().await;
    cluster.settled(3).await;
    println!("the cluster restarted in {:?}", restarted.elapsed());
    cluster.same_metadata().await;
    for node_id in 1..=3 {
        assert_eq!(cluster.topics(node_id).await, before, "broker {node_id}");
    }

    // The returning broker removed the old topic's partitions; the new topic holds
    // nothing of the old records.
    let data_dir = cluster.node(away).data_dir.clone();
    wait_for(
        "the old topic's partitions removed from the returning broker",
        || {
            let left = partition_dirs(&data_dir, "events");
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
    let leaders = cluster.leaders(1, "events").await;
    for (partition, leader) in leaders.iter().enumerate() {
        let mut client = NativeClient::connect(cluster.client(*leader as i32)).await;
        let fetched = client.fetch("events", partition as i32, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None, "events-{partition}");
        assert_eq!(fetched.high_watermark, 0, "events-{partition}");
    }
}

/// Partition directories of `topic` under a data directory.
fn partition_dirs(data_dir: &Path, topic: &str) -> Vec<PathBuf> {
    let prefix = format!("{topic}-");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.strip_prefix(&prefix))
                    .is_some_and(|rest| rest.parse::<u32>().is_ok())
        })
        .collect();
    dirs.sort();
    dirs
}

/// A second process with a node id the cluster already has is refused with one line
/// and exit status 1, whether it listens elsewhere than the voter list says or tries
/// the address the first one holds; the cluster goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_node_id_in_use_is_refused() {
    let mut cluster = ProcessCluster::new();
    cluster.start_all().await;
    cluster.settled(3).await;
    let dir = tempfile::tempdir().unwrap();
    let voters = cluster.voters.clone();
    let listed = cluster.node(2).internal.to_string();
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "elsewhere",
            &["--internal-listen", "127.0.0.1:0"],
            "node 2 is listed at",
        ),
        (
            "at the address in use",
            &["--internal-listen", &listed],
            "cannot bind the internal listener",
        ),
    ];
    for (what, listen, expected) in cases {
        let mut arguments = vec!["--node-id", "2", "--controller-quorum-voters", &voters];
        arguments.extend(listen);
        let data_dir = dir.path().join(what);
        let mut impostor = BrokerProcess::spawn(dir.path(), &data_dir, &arguments);
        let status = impostor.wait_exit().await;
        let log = impostor.log();
        println!("a second node 2 {what}: {status}\n{log}");
        assert_eq!(status.code(), Some(1), "{what}: {log}");
        let errors: Vec<&str> = log
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: {log}");
        assert!(errors[0].contains(expected), "{what}: {log}");
    }
    cluster.create_retrying(1, "still-works", 1).await;
    cluster.settled(3).await;
}

/// Settings that cannot make a cluster member: one line, exit status 2, nothing
/// started.
#[test]
fn bad_cluster_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "a malformed voter list",
            &[
                "--node-id",
                "1",
                "--controller-quorum-voters",
                "1@127.0.0.1",
            ],
        ),
        (
            "a node that is not a voter",
            &[
                "--node-id",
                "4",
                "--controller-quorum-voters",
                "1@127.0.0.1:9194,2@127.0.0.1:9294",
            ],
        ),
        (
            "a voter listed twice",
            &[
                "--node-id",
                "1",
                "--controller-quorum-voters",
                "1@127.0.0.1:9194,1@127.0.0.1:9294",
            ],
        ),
    ];
    for (what, arguments) in cases {
        let mut command = broker_command();
        command.args(["--data-dir", dir.path().join("data").to_str().unwrap()]);
        command.args(arguments);
        let output = run_to_end(command).unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("{what}: {:?} {stderr}", output.status.code());
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("controller_quorum_voters"),
            "{what}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
    }
}
