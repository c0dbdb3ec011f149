//! Three real `fjord-broker` processes, voters of one metadata quorum on 127.0.0.1 (or
//! each in a network namespace of its own, see [`ProcessCluster::in_network`]):
//! started, killed (SIGKILL), frozen (SIGSTOP), stopped (SIGTERM) and started again.
//! Every process is killed and reaped when a test fails (`BrokerProcess` does it on
//! drop).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::http_client::{get, send_json};
use super::netns::Network;
use super::process::{Bound, BrokerProcess, clean_environment, port_below_the_ephemeral_range};

/// Generous: elections take seconds, a change without a quorum takes the propose
/// timeout (4 s here), and the machine may be loaded.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Waits until `condition` gives `Some`, failing the test after [`PATIENCE`]; prints
/// how long it took.
pub async fn wait_for<T, F: Future<Output = Option<T>>>(
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

pub struct Node {
    pub node_id: i32,
    pub work_dir: PathBuf,
    pub data_dir: PathBuf,
    pub internal: SocketAddr,
    pub process: Option<BrokerProcess>,
    pub bound: Option<Bound>,
}

pub struct ProcessCluster {
    pub voters: String,
    /// Flags every node's process gets besides the cluster's own.
    pub extra_arguments: Vec<String>,
    pub nodes: Vec<Node>,
    /// `--broker-session-timeout-ms` of every node (2000 unless a test changes it).
    pub session_timeout_ms: u64,
    /// The network namespaces the nodes run in, if any; dropped after the nodes
    /// (fields drop in order), so that no process outlives its namespace.
    pub network: Option<Network>,
    /// Holds every node's directory and log file: dropped last, so that a failing
    /// test's nodes can still print their logs when they are dropped.
    _dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Three nodes, none started yet.
    pub fn new() -> Self {
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
            voters,
            extra_arguments: Vec::new(),
            nodes,
            session_timeout_ms: 2_000,
            network: None,
            _dir: dir,
        }
    }

    /// Three nodes, none started yet, each in its namespace of `network` (its
    /// listeners on its own address there, the internal one at port 9094).
    pub fn in_network(network: Network) -> Self {
        let mut cluster = Self::new();
        for (index, node) in cluster.nodes.iter_mut().enumerate() {
            node.internal = SocketAddr::from((network.address(index + 1), 9094));
        }
        cluster.voters = cluster
            .nodes
            .iter()
            .map(|node| format!("{}@{}", node.node_id, node.internal))
            .collect::<Vec<_>>()
            .join(",");
        cluster.network = Some(network);
        cluster
    }

    pub fn node(&mut self, node_id: i32) -> &mut Node {
        &mut self.nodes[(node_id - 1) as usize]
    }

    /// Starts a node's process (not waiting for it to be ready). Its internal listener
    /// is at the same address every time: if the previous process's port is still
    /// held for a moment, the start is tried again.
    pub async fn spawn(&mut self, node_id: i32) {
        let voters = self.voters.clone();
        let internal = self.node(node_id).internal.to_string();
        let node_id_text = node_id.to_string();
        let session_timeout = self.session_timeout_ms.to_string();
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
            &session_timeout,
            // Shorter than the default 10 s: the tests wait for it without a majority.
            "--metadata-propose-timeout-ms",
            "4000",
        ];
        let extra = self.extra_arguments.clone();
        let index = (node_id - 1) as usize;
        let arguments: Vec<&str> = arguments
            .into_iter()
            .chain(extra.iter().map(String::as_str))
            .collect();
        let started = Instant::now();
        loop {
            let node = &self.nodes[index];
            let mut process = match &self.network {
                None => BrokerProcess::spawn(&node.work_dir, &node.data_dir, &arguments),
                Some(network) => {
                    let mut command =
                        network.command(index + 1, env!("CARGO_BIN_EXE_fjord-broker"));
                    clean_environment(&mut command);
                    let any_port = format!("{}:0", network.address(index + 1));
                    command
                        .args(["--listen", &any_port, "--http-listen", &any_port])
                        .arg("--data-dir")
                        .arg(&node.data_dir)
                        .args(&arguments);
                    BrokerProcess::spawn_command(&node.work_dir, command)
                }
            };
            let node = &mut self.nodes[index];
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

    pub fn http(&self, node_id: i32) -> SocketAddr {
        self.nodes[(node_id - 1) as usize]
            .bound
            .expect("the broker runs")
            .http_listen
    }

    pub fn client(&self, node_id: i32) -> SocketAddr {
        self.nodes[(node_id - 1) as usize]
            .bound
            .expect("the broker runs")
            .listen
    }

    pub fn running(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|node| node.process.is_some())
            .map(|node| node.node_id)
            .collect()
    }

    /// Waits until a node answers `/readyz` with 200.
    pub async fn ready(&self, node_id: i32) {
        let http = self.http(node_id);
        wait_for(&format!("broker {node_id} ready"), || async move {
            (get(http, "/readyz").await.status == 200).then_some(())
        })
        .await;
    }

    /// Starts every node at once and waits until each is ready.
    pub async fn start_all(&mut self) {
        for node_id in 1..=3 {
            self.spawn(node_id).await;
        }
        for node_id in 1..=3 {
            self.ready(node_id).await;
        }
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self, node_id: i32) {
        let node = self.node(node_id);
        node.process.take().expect("the broker runs").kill();
        node.bound = None;
    }

    /// SIGSTOP: the process is frozen, its sockets open, until [`Self::resume`].
    pub fn pause(&mut self, node_id: i32) {
        self.signal(node_id, "-STOP");
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self, node_id: i32) {
        self.signal(node_id, "-CONT");
    }

    fn signal(&mut self, node_id: i32, signal: &str) {
        let pid = self
            .node(node_id)
            .process
            .as_ref()
            .expect("the broker runs")
            .id();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    /// SIGTERM, and the exit status must be 0.
    pub async fn terminate(&mut self, node_id: i32) {
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
    pub async fn cluster_view(&self, node_id: i32) -> Value {
        let response = get(self.http(node_id), "/v1/cluster").await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Waits until every running node sees `expected` brokers, all unfenced, and the
    /// same active controller; returns the controller.
    pub async fn settled(&self, expected: usize) -> i32 {
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
    pub async fn create_retrying(&self, node_id: i32, name: &str, partitions: i32) {
        self.create_replicated(node_id, name, partitions, 1).await;
    }

    /// [`Self::create_retrying`] with `replication_factor` replicas per partition.
    pub async fn create_replicated(
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
    pub async fn topics(&self, node_id: i32) -> BTreeMap<String, (String, Vec<Value>)> {
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
    pub async fn leaders(&self, node_id: i32, topic: &str) -> Vec<i64> {
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
    pub async fn same_metadata(&self) -> u64 {
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
