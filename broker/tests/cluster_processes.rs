//! Three real `fjord-broker` processes, voters of one metadata quorum on 127.0.0.1,
//! under the failures a cluster must survive: the active controller killed with
//! SIGKILL and restarted, two of three voters gone and one back, the whole cluster
//! stopped and started again while a topic was deleted and re-created behind a broker's
//! back, and bad settings. Every process is killed and reaped when a test fails
//! (`BrokerProcess` does it on drop). Timings are printed, never asserted.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http_client::{get, send_json};
use common::native_client::{NativeClient, values_batch};
use common::process::{
    Bound, BrokerProcess, broker_command, port_below_the_ephemeral_range, run_to_end,
};
use fjord_protocol::ErrorCode;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Generous: elections take seconds, a change without a quorum takes the propose
/// timeout (4 s here), and the machine may be loaded.
const PATIENCE: Duration = Duration::from_secs(90);

/// Waits until `condition` gives `Some`, failing the test after [`PATIENCE`]; prints
/// how long it took.
async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = condition().await {
            println!("{what}: {:?}", started.elapsed());
            return value;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Node {
    node_id: i32,
    work_dir: PathBuf,
    data_dir: PathBuf,
    internal: SocketAddr,
    process: Option<BrokerProcess>,
    bound: Option<Bound>,
}

struct ProcessCluster {
    _dir: tempfile::TempDir,
    voters: String,
    nodes: Vec<Node>,
}

impl ProcessCluster {
    /// Three nodes, none started yet.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=3)
            .map(|node_id| {
                let work_dir = dir.path().join(format!("node-{node_id}"));
                std::fs::create_dir_all(&work_dir).unwrap();
                Node {
                    node_id,
                    data_dir: work_dir.join("data"),
                    work_dir,
                    internal: SocketAddr::from(([127, 0, 0, 1], port_below_the_ephemeral_range())),
                    process: None,
                    bound: None,
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|node| format!("{}@{}", node.node_id, node.internal))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            _dir: dir,
            voters,
            nodes,
        }
    }

    fn node(&mut self, node_id: i32) -> &mut Node {
        &mut self.nodes[(node_id - 1) as usize]
    }

    /// Starts a node's process (not waiting for it to be ready). Its internal listener
    /// is at the same address every time: if the previous process's port is still
    /// held for a moment, the start is tried again.
    async fn spawn(&mut self, node_id: i32) {
        let voters = self.voters.clone();
        let node = self.node(node_id);
        let internal = node.internal.to_string();
        let node_id_text = node_id.to_string();
        let arguments = [
            "--node-id",
            &node_id_text,
            "--internal-listen",
            &internal,
            "--controller-quorum-voters",
            &voters,
            "--broker-heartbeat-interval-ms",
            "250",
            "--broker-session-timeout-ms",
            "2000",
            // Shorter than the default 10 s: the tests wait for it without a majority.
            "--metadata-propose-timeout-ms",
            "4000",
        ];
        let started = Instant::now();
        loop {
            let mut process = BrokerProcess::spawn(&node.work_dir, &node.data_dir, &arguments);
            match process.try_addresses().await {
                Ok(bound) => {
                    node.process = Some(process);
                    node.bound = Some(bound);
                    return;
                }
                Err(status) => {
                    let log = process.log();
                    assert!(
                        log.contains("cannot bind the internal listener")
                            && started.elapsed() < PATIENCE,
                        "broker {node_id} exited ({status}); log:\n{log}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn http(&self, node_id: i32) -> SocketAddr {
        self.nodes[(node_id - 1) as usize]
            .bound
            .expect("the broker runs")
            .http_listen
    }

    fn client(&self, node_id: i32) -> SocketAddr {
        self.nodes[(node_id - 1) as usize]
            .bound
            .expect("the broker runs")
            .listen
    }

    fn running(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|node| node.process.is_some())
            .map(|node| node.node_id)
            .collect()
    }

    /// Waits until a node answers `/readyz` with 200.
    async fn ready(&self, node_id: i32) {
        let http = self.http(node_id);
        wait_for(&format!("broker {node_id} ready"), || async move {
            (get(http, "/readyz").await.status == 200).then_some(())
        })
        .await;
    }

    /// Starts every node at once and waits until each is ready.
    async fn start_all(&mut self) {
        for node_id in 1..=3 {
            self.spawn(node_id).await;
        }
        for node_id in 1..=3 {
            self.ready(node_id).await;
        }
    }

    /// SIGKILL: no shutdown of any kind.
    fn kill(&mut self, node_id: i32) {
        let node = self.node(node_id);
        node.process.take().expect("the broker runs").kill();
        node.bound = None;
    }

    /// SIGTERM, and the exit status must be 0.
    async fn terminate(&mut self, node_id: i32) {
        let node = self.node(node_id);
        let mut process = node.process.take().expect("the broker runs");
        let status = process.terminate().await;
        assert!(
            status.success(),
            "broker {node_id}: {status}; log:\n{}",
            process.log()
        );
        node.bound = None;
    }

    /// `GET /v1/cluster` of a node.
    async fn cluster_view(&self, node_id: i32) -> Value {
        let response = get(self.http(node_id), "/v1/cluster").await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Waits until every running node sees `expected` brokers, all unfenced, and the
    /// same active controller; returns the controller.
    async fn settled(&self, expected: usize) -> i32 {
        wait_for(
            "every running broker sees the same unfenced brokers and controller",
            || async move {
                let mut controllers = Vec::new();
                for node_id in self.running() {
                    let view = self.cluster_view(node_id).await;
                    let brokers = view["brokers"].as_array().unwrap();
                    let unfenced = brokers
                        .iter()
                        .filter(|broker| broker["fenced"] == false)
                        .count();
                    if brokers.len() != expected || unfenced != expected {
                        return None;
                    }
                    controllers.push(view["controller_id"].as_i64().unwrap());
                }
                let agreed = controllers
                    .iter()
                    .all(|id| *id == controllers[0] && *id != -1);
                agreed.then(|| controllers[0] as i32)
            },
        )
        .await
    }

    /// Creates a topic of one replica per partition through a node, trying again while
    /// the quorum is not there (a retriable 503); a 409 after a retry means an earlier
    /// attempt's change was made though its answer was lost.
    async fn create_retrying(&self, node_id: i32, name: &str, partitions: i32) {
        self.create_replicated(node_id, name, partitions, 1).await;
    }

    /// [`Self::create_retrying`] with `replication_factor` replicas per partition.
    async fn create_replicated(
        &self,
        node_id: i32,
        name: &str,
        partitions: i32,
        replication_factor: i16,
    ) {
        let http = self.http(node_id);
        let mut attempts = 0;
        wait_for(
            &format!("topic {name} created through broker {node_id}"),
            || {
                attempts += 1;
                let retried = attempts > 1;
                async move {
                    let body = json!({
                        "name": name,
                        "partitions": partitions,
                        "replication_factor": replication_factor,
                    });
                    let response = send_json(http, "POST", "/v1/topics", &body).await;
                    match response.status {
                        201 => Some(()),
                        409 if retried => Some(()),
                        503 => {
                            println!("  attempt refused: {}", response.text());
                            None
                        }
                        status => {
                            panic!("creation of {name} answered {status}: {}", response.text())
                        }
                    }
                }
            },
        )
        .await;
    }

    /// The topics as a node describes them: name → (topic id, each partition's
    /// replicas).
    async fn topics(&self, node_id: i32) -> BTreeMap<String, (String, Vec<Value>)> {
        let http = self.http(node_id);
        let listed = get(http, "/v1/topics").await;
        assert_eq!(listed.status, 200, "{}", listed.text());
        let mut topics = BTreeMap::new();
        for topic in listed.json()["topics"].as_array().unwrap() {
            let name = topic["name"].as_str().unwrap().to_owned();
            let described = get(http, &format!("/v1/topics/{name}")).await.json();
            let replicas = described["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|partition| partition["replicas"].clone())
                .collect();
            let id = described["topic_id"].as_str().unwrap().to_owned();
            topics.insert(name, (id, replicas));
        }
        topics
    }

    /// Each partition's leader, as a node describes the topic.
    async fn leaders(&self, node_id: i32, topic: &str) -> Vec<i64> {
        let described = get(self.http(node_id), &format!("/v1/topics/{topic}")).await;
        assert_eq!(described.status, 200, "{}", described.text());
        described.json()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|partition| partition["leader"].as_i64().unwrap())
            .collect()
    }

    /// Waits until every running node has applied the same metadata log index and
    /// describes the same topics; returns that index.
    async fn same_metadata(&self) -> u64 {
        wait_for(
            "every running broker applied the same metadata",
            || async move {
                let running = self.running();
                let mut applied = Vec::new();
                let mut topics = Vec::new();
                for node_id in &running {
                    let view = self.cluster_view(*node_id).await;
                    applied.push(view["quorum"]["applied_index"].as_u64().unwrap());
                    topics.push(self.topics(*node_id).await);
                }
                let same = applied.iter().all(|index| *index == applied[0])
                    && topics.iter().all(|view| *view == topics[0]);
                same.then_some(applied[0])
            },
        )
        .await
    }
}

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
