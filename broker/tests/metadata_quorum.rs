//! The metadata quorum as a library: three in-process nodes on 127.0.0.1, each with its
//! own directory of real files, talking over real TCP through their internal listeners.
//! Elections, replication, failover, restart, loss of the majority, snapshot
//! installation and a peer speaking garbage.
//!
//! Timings are measured and printed, never asserted; every wait has a generous deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_broker::internal::{InternalListener, NoService};
use fjord_broker::metadata::MetadataRecord;
use fjord_broker::metadata::raft::{
    AppliedImage, ProposeError, QuorumConfig, QuorumError, QuorumNode, QuorumTiming, Role,
};
use tempfile::TempDir;

/// Long enough for elections and catch-up on a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Faster than the defaults, yet several heartbeats per election timeout so that a busy
/// machine does not cause needless elections.
fn timing() -> QuorumTiming {
    QuorumTiming {
        heartbeat_interval: Duration::from_millis(150),
        election_timeout_min: Duration::from_millis(1000),
        election_timeout_max: Duration::from_millis(2000),
        connect_timeout: Duration::from_millis(500),
        propose_timeout: Duration::from_secs(3),
        snapshot_chunk_timeout: Duration::from_secs(10),
    }
}

/// Polls `condition` until it gives a value, panicking with `what` after [`PATIENCE`].
async fn wait_until<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three voters. Each keeps its listening socket for the whole test (a node gets a
/// duplicate of it), so a stopped node's port is never free for someone else to take.
struct Cluster {
    dir: TempDir,
    sockets: BTreeMap<i32, std::net::TcpListener>,
    voters: BTreeMap<i32, String>,
    nodes: BTreeMap<i32, QuorumNode>,
    snapshot_every_entries: u64,
}

impl Cluster {
    async fn start(snapshot_every_entries: u64) -> Self {
        let mut sockets = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3 {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            voters.insert(id, socket.local_addr().unwrap().to_string());
            sockets.insert(id, socket);
        }
        let mut cluster = Self {
            dir: tempfile::tempdir().unwrap(),
            sockets,
            voters,
            nodes: BTreeMap::new(),
            snapshot_every_entries,
        };
        for id in 1..=3 {
            cluster.start_node(id).await;
        }
        cluster
    }

    async fn start_node(&mut self, id: i32) {
        let socket = self.sockets[&id].try_clone().unwrap();
        let listener =
            InternalListener::from_listener(tokio::net::TcpListener::from_std(socket).unwrap());
        let config = QuorumConfig {
            node_id: id,
            voter: true,
            data_dir: self.dir.path().join(format!("node-{id}")),
            voters: self.voters.clone(),
            timing: timing(),
            snapshot_every_entries: self.snapshot_every_entries,
        };
        let node = QuorumNode::start(config, listener, Arc::new(NoService))
            .await
            .unwrap();
        self.nodes.insert(id, node);
    }

    async fn stop_node(&mut self, id: i32) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.shutdown().await;
    }

    fn address(&self, id: i32) -> SocketAddr {
        self.voters[&id].parse().unwrap()
    }

    /// The leader that every running node recognises, once there is one.
    async fn leader(&self) -> i32 {
        let nodes = &self.nodes;
        wait_until(
            "a leader recognised by every running node",
            move || async move {
                let mut leader = None;
                for node in nodes.values() {
                    let status = node.status().await;
                    match (status.leader, leader) {
                        (None, _) => return None,
                        (Some(seen), Some(agreed)) if seen != agreed => return None,
                        (Some(seen), _) => leader = Some(seen),
                    }
                }
                let leader = leader?;
                let status = nodes.get(&leader)?.status().await;
                (status.role == Role::Leader).then_some(leader)
            },
        )
        .await
    }

    /// Proposes on the leader, retrying on the new leader when leadership moves.
    async fn propose(&self, records: Vec<MetadataRecord>) -> u64 {
        let records = &records;
        wait_until("a proposal applied by the leader", move || async move {
            let leader = self.leader().await;
            match self.nodes[&leader].propose(records.clone()).await {
                Ok(applied) => Some(applied.index),
                Err(error) if error.is_retriable() => {
                    println!("retrying a proposal: {error}");
                    None
                }
                Err(error) => panic!("proposal failed: {error}"),
            }
        })
        .await
    }

    /// Waits until every running node has applied `index` and all stand at the same
    /// position (a new leader's blank entry may follow `index`), then checks that they
    /// hold the same image there.
    async fn wait_applied_everywhere(&self, index: u64) -> AppliedImage {
        let nodes = &self.nodes;
        let images = wait_until(
            &format!("every node applies entry {index}"),
            move || async move {
                let images: Vec<(i32, AppliedImage)> = nodes
                    .iter()
                    .map(|(id, node)| (*id, node.image().borrow().clone()))
                    .collect();
                let position = images[0].1.applied_index;
                let settled = images
                    .iter()
                    .all(|(_, image)| image.applied_index == position);
                (settled && position >= Some(index)).then_some(images)
            },
        )
        .await;
        let (first_id, first) = images[0].clone();
        for (id, image) in &images[1..] {
            assert_eq!(
                image.image, first.image,
                "node {id} and node {first_id} differ"
            );
        }
        first
    }

    async fn shutdown(mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}

fn topic(name: &str) -> Vec<MetadataRecord> {
    vec![MetadataRecord::TopicCreated {
        name: name.to_owned(),
        topic_id: uuid::Uuid::new_v4().to_string(),
        config: BTreeMap::new(),
        replicas: vec![vec![1, 2, 3]],
    }]
}

fn cluster_records() -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::ClusterInitialized {
            cluster_id: "quorum-test".to_owned(),
        },
        MetadataRecord::BrokerRegistered {
            node_id: 1,
            host: "127.0.0.1".to_owned(),
            port: 9092,
            internal_address: String::new(),
            incarnation_id: String::new(),
            rack: None,
            broker_epoch: 1,
            fenced: false,
            external: None,
        },
    ]
}

/// Three nodes elect one leader; a batch proposed on it is applied on all three, with
/// identical images at the same index; a proposal on a follower is refused with the
/// leader's id and address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_apply_proposals_everywhere() {
    let started = Instant::now();
    let cluster = Cluster::start(1000).await;
    let leader = cluster.leader().await;
    println!("leader {leader} elected after {:?}", started.elapsed());

    let index = cluster.propose(cluster_records()).await;
    let applied = cluster.wait_applied_everywhere(index).await;
    assert_eq!(applied.image.cluster_id, "quorum-test");
    assert!(applied.image.brokers.contains_key(&1));

    let index = cluster.propose(topic("orders")).await;
    let applied = cluster.wait_applied_everywhere(index).await;
    assert!(applied.image.topic("orders").is_some());

    // The leader's status: committed past the proposal, and every voter's log matched
    // up to it once replication reaches the last follower.
    let status = wait_until("the leader sees every voter matched", || async {
        let leader = cluster.leader().await;
        let status = cluster.nodes[&leader].status().await;
        let matched = status
            .voters
            .iter()
            .all(|voter| voter.matched_index >= Some(index));
        (status.role == Role::Leader && matched).then_some(status)
    })
    .await;
    println!("leader status: {status:?}");
    assert!(status.committed_index >= Some(index), "{status:?}");
    assert!(status.applied_index >= Some(index), "{status:?}");
    assert_eq!(status.voters.len(), 3);
    let leader = status.node_id;

    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    match cluster.nodes[&follower].propose(topic("refused")).await {
        Err(ProposeError::NotLeader {
            node_id,
            leader: Some(hint),
        }) => {
            // The leader, unless leadership moved in between (a busy machine).
            assert_eq!(node_id, follower);
            assert_ne!(hint.node_id, follower);
            assert_eq!(hint.address, cluster.voters[&hint.node_id]);
        }
        Err(error) => assert!(error.is_retriable(), "{error}"),
        Ok(applied) => panic!("a follower accepted a proposal: {applied:?}"),
    }
    cluster.shutdown().await;
}

/// The leader stops: the other two elect a new one and take proposals; the old leader
/// restarts from its directory and catches up with what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up() {
    let mut cluster = Cluster::start(1000).await;
    let index = cluster.propose(cluster_records()).await;
    cluster.wait_applied_everywhere(index).await;

    let old_leader = cluster.leader().await;
    let stopped = Instant::now();
    cluster.stop_node(old_leader).await;
    let new_leader = cluster.leader().await;
    println!(
        "node {new_leader} took over from node {old_leader} {:?} after it stopped",
        stopped.elapsed()
    );
    assert_ne!(new_leader, old_leader);
    let index = cluster.propose(topic("after-failover")).await;
    cluster.wait_applied_everywhere(index).await;

    let restarted = Instant::now();
    cluster.start_node(old_leader).await;
    let applied = cluster.wait_applied_everywhere(index).await;
    println!(
        "node {old_leader} caught up {:?} after restarting",
        restarted.elapsed()
    );
    assert!(applied.image.topic("after-failover").is_some());
    assert_eq!(applied.image.cluster_id, "quorum-test");
    cluster.shutdown().await;
}

/// With two of three voters down, a proposal fails within the propose timeout with a
/// retriable error (it does not hang); with one of them back, proposals succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_proposals_fail_within_the_timeout() {
    let mut cluster = Cluster::start(1000).await;
    let index = cluster.propose(cluster_records()).await;
    cluster.wait_applied_everywhere(index).await;

    let survivor = cluster.leader().await;
    let others: Vec<i32> = (1..=3).filter(|id| *id != survivor).collect();
    for id in &others {
        cluster.stop_node(*id).await;
    }
    let proposed = Instant::now();
    // The outer timeout only catches a hang; the node's own timeout is 3 s.
    let result = tokio::time::timeout(
        PATIENCE,
        cluster.nodes[&survivor].propose(topic("no-majority")),
    )
    .await
    .expect("a proposal without a majority hung");
    println!(
        "without a majority, the proposal failed after {:?}: {result:?}",
        proposed.elapsed()
    );
    match result {
        Err(error @ (ProposeError::TimedOut { .. } | ProposeError::NotLeader { .. })) => {
            assert!(error.is_retriable());
            println!("error as the caller sees it: {error}");
        }
        other => panic!("expected a timeout or not-leader error, got {other:?}"),
    }
    // Reads of the last applied image keep working.
    assert_eq!(
        cluster.nodes[&survivor].image().borrow().image.cluster_id,
        "quorum-test"
    );

    cluster.start_node(others[0]).await;
    let index = cluster.propose(topic("majority-again")).await;
    let applied = cluster.wait_applied_everywhere(index).await;
    assert!(applied.image.topic("majority-again").is_some());
    cluster.shutdown().await;
}

/// A node that is down while the others take more entries than the snapshot interval
/// comes back to a log purged behind a snapshot: it installs the snapshot and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_far_behind_installs_a_snapshot() {
    let mut cluster = Cluster::start(5).await;
    let index = cluster.propose(cluster_records()).await;
    cluster.wait_applied_everywhere(index).await;

    let leader = cluster.leader().await;
    let away = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let away_status = cluster.nodes[&away].status().await;
    cluster.stop_node(away).await;

    let mut last = 0;
    for number in 0..20 {
        last = cluster.propose(topic(&format!("topic-{number}"))).await;
    }
    let leader = cluster.leader().await;
    let leader_node = &cluster.nodes[&leader];
    let away_last = away_status.last_log_index;
    let purged = wait_until(
        "the leader purges its log behind a snapshot",
        move || async move {
            let status = leader_node.status().await;
            status
                .purged_index
                .filter(|purged| Some(*purged) > away_last)
        },
    )
    .await;
    println!(
        "leader purged up to {purged}; node {away} stopped at {:?}",
        away_status.last_log_index
    );

    cluster.start_node(away).await;
    let applied = cluster.wait_applied_everywhere(last).await;
    assert_eq!(applied.image.topics.len(), 20);
    // Its log could not have supplied the purged entries: the snapshot did. (The status
    // reports the snapshot a moment after the image has it, hence the wait.)
    let away_node = &cluster.nodes[&away];
    let status = wait_until(
        &format!("node {away} reports the snapshot it installed"),
        move || async move {
            let status = away_node.status().await;
            (status.snapshot_index >= Some(purged)).then_some(status)
        },
    )
    .await;
    println!("node {away} after catching up: {status:?}");
    cluster.shutdown().await;
}

/// Peers that speak garbage on a node's internal listener are disconnected, and the
/// quorum goes on working while they try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_garbage_is_disconnected_and_harms_no_one() {
    let cluster = Cluster::start(1000).await;
    let index = cluster.propose(cluster_records()).await;
    cluster.wait_applied_everywhere(index).await;

    let leader = cluster.leader().await;
    let header = |kind: u8, crc: u32, body: &[u8]| {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(20 + body.len() as u32).to_be_bytes());
        frame.extend_from_slice(b"FJIN");
        frame.extend_from_slice(&[1, kind, 0, 0]);
        frame.extend_from_slice(&1u64.to_be_bytes());
        frame.extend_from_slice(&crc.to_be_bytes());
        frame.extend_from_slice(body);
        frame
    };
    let body = b"{}";
    let crc = crc32c::crc32c(body);
    let mut bad_magic = header(0x01, crc, body);
    bad_magic[4..8].copy_from_slice(b"HTTP");
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("a bad magic", bad_magic),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "an oversize length",
            vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        ("a bad checksum", header(0x01, crc ^ 1, body)),
        ("an unknown kind", header(0x7e, crc, body)),
        ("a body that is not a vote", header(0x01, crc, body)),
        ("a response kind", header(0x81, crc, body)),
    ];
    let target = cluster.address(leader);
    let probes = std::thread::spawn(move || {
        for (what, bytes) in garbage {
            let mut stream = std::net::TcpStream::connect(target).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            stream.write_all(&bytes).unwrap();
            let mut answer = Vec::new();
            // The listener closes the connection without answering.
            match stream.read_to_end(&mut answer) {
                Ok(_) => assert!(answer.is_empty(), "{what}: answered {answer:?}"),
                Err(error) => assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset,
                    "{what}: {error}"
                ),
            }
        }
    });
    let index = cluster.propose(topic("after-garbage")).await;
    tokio::task::spawn_blocking(move || probes.join().unwrap())
        .await
        .unwrap();
    let index = index.max(cluster.propose(topic("after-garbage-2")).await);
    let applied = cluster.wait_applied_everywhere(index).await;
    assert!(applied.image.topic("after-garbage-2").is_some());
    cluster.shutdown().await;
}

/// A quorum of one commits on its own; restarted from its directory it has the same
/// image; restarted with other voters it refuses to start and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_restarts_with_its_image_and_refuses_other_voters() {
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let config = |voters: &[(i32, &str)]| QuorumConfig {
        node_id: 1,
        voter: true,
        data_dir: dir.path().join("node-1"),
        voters: voters
            .iter()
            .map(|(id, address)| (*id, address.to_string()))
            .collect(),
        timing: timing(),
        snapshot_every_entries: 1000,
    };
    let listener = || {
        let socket = socket.try_clone().unwrap();
        InternalListener::from_listener(tokio::net::TcpListener::from_std(socket).unwrap())
    };

    let node = QuorumNode::start(config(&[(1, &address)]), listener(), Arc::new(NoService))
        .await
        .unwrap();
    let applied = wait_until("a quorum of one commits", || async {
        node.propose(cluster_records()).await.ok()
    })
    .await;
    let before = node.image().borrow().clone();
    assert_eq!(before.applied_index, Some(applied.index));
    node.shutdown().await;

    let node = QuorumNode::start(config(&[(1, &address)]), listener(), Arc::new(NoService))
        .await
        .unwrap();
    let mut watch = node.image();
    let after = wait_until("the restarted node applies its log again", || {
        let current = watch.borrow_and_update().clone();
        async move { (current.applied_index >= before.applied_index).then_some(current) }
    })
    .await;
    assert_eq!(after.image, before.image);
    node.shutdown().await;

    let others = [
        (1, address.as_str()),
        (2, "127.0.0.1:1"),
        (3, "127.0.0.1:2"),
    ];
    match QuorumNode::start(config(&others), listener(), Arc::new(NoService)).await {
        Err(error @ QuorumError::VotersDiffer { .. }) => println!("refused: {error}"),
        other => panic!("expected the voters to be refused, got {other:?}"),
    }
}
