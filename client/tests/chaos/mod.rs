//! The chaos run on a compose cluster: a workload that records everything it is told,
//! faults injected with Docker while it runs, and a checker of the recorded history.
//!
//! - Producers (acks=all) record every value they send and every acknowledgement
//!   (partition, offset, value, when).
//! - A consumer assigned every partition records every record it sees; two members of
//!   a consumer group do too (auto-commit every second); a monitor reads the group's
//!   committed offsets twice a second.
//! - Faults, one kind at a time, then mixed: `kill -9` of a partition leader's
//!   container and of the active controller's; `docker pause` of a broker for longer
//!   than the session timeout; `docker network disconnect` of a broker; a rolling
//!   restart (`docker restart`, SIGTERM, one broker at a time); all three restarted at
//!   once (SIGTERM); `kill -9` of all three at once; a broker paused while another is
//!   killed.
//! - After the last fault heals and the producers stop, a fresh consumer reads every
//!   partition to its end, and [`History::check`] fails the run on: an acknowledged
//!   record missing or at another offset; two different records seen at one offset; a
//!   consumer seeing a partition's offsets go backwards without a seek (a group member
//!   restarts from the committed offset when it is given a partition: that is a seek);
//!   a committed offset going backwards; a record delivered that was never produced.
//!   Duplicates (retries without idempotence) are counted and reported apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_client::{
    Acks, Admin, Client, Consumer, ConsumerConfig, GroupConsumer, GroupConsumerConfig, NewTopic,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord, RebalanceEvent, TopicPartition,
};
use serde_json::{Value, json};

use super::common::docker::{docker_ok, wait_healthy};
use super::{CLIENT_PATIENCE, Compose, connect};

const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 3;
const GROUP: &str = "chaos-readers";
const PRODUCERS: usize = 3;
/// Most records one producer sends: the run is bounded in count as well as in time.
const RECORDS_PER_PRODUCER_MAX: usize = 200_000;
/// How long a frozen or cut-off broker stays so: longer than the brokers' default
/// session timeout (6 s), so that the controller fences it.
const OUTAGE: Duration = Duration::from_secs(10);
/// How long a killed broker stays down before it is started again.
const DOWNTIME: Duration = Duration::from_secs(5);
/// Longest the cluster may take to serve acks=all writes again after a fault heals.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(120);

/// One fault as it was injected.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    /// The brokers it hit.
    pub nodes: Vec<i32>,
    pub started: Instant,
    /// When it was healed (the container started, unpaused or reconnected).
    pub healed: Instant,
    /// When acks=all writes were acknowledged again after it healed.
    pub recovered: Instant,
}

/// Everything the workload saw, shared by its tasks.
#[derive(Debug, Default)]
pub struct History {
    pub attempted: HashSet<String>,
    /// (when, partition, offset, value), in the order acknowledgements arrived.
    pub acknowledged: Vec<(Instant, i32, i64, String)>,
    pub failed: u64,
    /// The first value seen at each (partition, offset), by any consumer.
    pub seen: HashMap<(i32, i64), String>,
    pub records_consumed: u64,
    pub consumer_errors: u64,
    /// Each consumer's last offset per partition since its last seek.
    pub positions: HashMap<(String, i32), i64>,
    pub commits_read: u64,
    /// Partition assignments the group members were told of.
    pub rebalances: u64,
    pub committed: BTreeMap<i32, i64>,
    pub violations: Vec<String>,
}

impl History {
    pub fn record_seen(&mut self, consumer: &str, partition: i32, offset: i64, value: String) {
        self.records_consumed += 1;
        if !self.attempted.contains(&value) {
            self.violations.push(format!(
                "{consumer} read {value:?} at {partition}-{offset}, which no producer sent"
            ));
        }
        let position = self
            .positions
            .entry((consumer.to_owned(), partition))
            .or_insert(-1);
        if offset <= *position {
            self.violations.push(format!(
                "{consumer} read offset {offset} of partition {partition} after offset {position}, without a seek"
            ));
        }
        *position = offset;
        match self.seen.get(&(partition, offset)) {
            Some(earlier) if *earlier != value => self.violations.push(format!(
                "two records at {partition}-{offset}: {earlier:?} and {value:?} ({consumer})"
            )),
            Some(_) => {}
            None => {
                self.seen.insert((partition, offset), value);
            }
        }
    }

    /// A consumer that was given `partition` (again) starts where the group committed:
    /// a seek.
    pub fn forget_position(&mut self, consumer: &str, partition: i32) {
        self.positions.remove(&(consumer.to_owned(), partition));
    }
}

type Shared = Arc<Mutex<History>>;

fn lock(history: &Shared) -> std::sync::MutexGuard<'_, History> {
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The run's outcome.
pub struct Report {
    pub history: History,
    pub faults: Vec<Fault>,
    /// What the final read found: (partition, offset) → value.
    pub log: BTreeMap<(i32, i64), String>,
    pub lost: Vec<String>,
    pub duplicates: usize,
    pub started: Instant,
    pub elapsed: Duration,
}

impl Report {
    /// Checks the acknowledgements against `log`, what a final read of every partition
    /// found (itself recorded as a consumer of `history`, so that anything a consumer
    /// saw earlier at an offset is compared with it).
    pub fn new(
        history: History,
        faults: Vec<Fault>,
        log: BTreeMap<(i32, i64), String>,
        started: Instant,
    ) -> Self {
        let mut lost = Vec::new();
        for (_, partition, offset, value) in &history.acknowledged {
            match log.get(&(*partition, *offset)) {
                Some(stored) if stored == value => {}
                Some(stored) => lost.push(format!(
                    "{value:?} acknowledged at {partition}-{offset}, where the log holds {stored:?}"
                )),
                None => lost.push(format!(
                    "{value:?} acknowledged at {partition}-{offset}, which the log does not hold"
                )),
            }
        }
        let distinct: HashSet<&String> = log.values().collect();
        Self {
            duplicates: log.len() - distinct.len(),
            history,
            faults,
            log,
            lost,
            started,
            elapsed: started.elapsed(),
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.lost
            .iter()
            .chain(&self.history.violations)
            .cloned()
            .collect()
    }

    /// The longest time without any acknowledgement from the fault's start to when
    /// writes were acknowledged again.
    fn unavailable(&self, fault: &Fault) -> Duration {
        let mut times: Vec<Instant> = self
            .history
            .acknowledged
            .iter()
            .map(|(at, ..)| *at)
            .filter(|at| *at >= fault.started && *at <= fault.recovered)
            .collect();
        times.sort();
        let mut edges = vec![fault.started];
        edges.extend(times);
        edges.push(fault.recovered);
        edges
            .windows(2)
            .map(|pair| pair[1].saturating_duration_since(pair[0]))
            .max()
            .unwrap_or_default()
    }

    pub fn summary(&self) -> String {
        let history = &self.history;
        let mut text = format!(
            "chaos run, {:.0} s: {} sent, {} acknowledged (acks=all), {} failed; {} records consumed ({} consumer errors, {} assignments), {} committed-offset reads\n\
             lost: {}   other violations: {}   duplicates (retries without idempotence): {}\n\
             faults:\n",
            self.elapsed.as_secs_f64(),
            history.attempted.len(),
            history.acknowledged.len(),
            history.failed,
            history.records_consumed,
            history.consumer_errors,
            history.rebalances,
            history.commits_read,
            self.lost.len(),
            history.violations.len(),
            self.duplicates,
        );
        for fault in &self.faults {
            text.push_str(&format!(
                "  {:<34} brokers {:?}: healed after {:.1} s, writes acknowledged again {:.1} s later; longest gap between acknowledgements {:.1} s\n",
                fault.name,
                fault.nodes,
                (fault.healed - fault.started).as_secs_f64(),
                (fault.recovered - fault.healed).as_secs_f64(),
                self.unavailable(fault).as_secs_f64()
            ));
        }
        for violation in self.violations().iter().take(20) {
            text.push_str(&format!("VIOLATION: {violation}\n"));
        }
        text
    }

    pub fn json(&self) -> Value {
        let history = &self.history;
        let at = |instant: Instant| (instant - self.started).as_secs_f64();
        json!({
            "seconds": self.elapsed.as_secs_f64(),
            "operations": {
                "sent": history.attempted.len(),
                "acknowledged": history.acknowledged.len(),
                "failed": history.failed,
                "consumed": history.records_consumed,
                "consumer_errors": history.consumer_errors,
                "group_assignments": history.rebalances,
                "committed_offset_reads": history.commits_read,
            },
            "lost": self.lost,
            "violations": history.violations,
            "duplicates": self.duplicates,
            "records_in_log": self.log.len(),
            "faults": self.faults.iter().map(|fault| json!({
                "fault": fault.name,
                "brokers": fault.nodes,
                "started_s": at(fault.started),
                "healed_s": at(fault.healed),
                "recovered_s": at(fault.recovered),
                "longest_gap_between_acknowledgements_s": self.unavailable(fault).as_secs_f64(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs the workload under every fault, then reads everything back and checks it.
pub async fn run(compose: &Compose) -> Report {
    let started = Instant::now();
    let bootstrap = compose.bootstrap();
    let client = connect(&bootstrap).await;
    let admin = Admin::new(&client);
    admin
        .create_topics(&[NewTopic::new(TOPIC, PARTITIONS, 3)])
        .await
        .expect("the chaos topic is created");
    let history: Shared = Arc::default();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        producers.push(tokio::spawn(produce(
            bootstrap.clone(),
            producer,
            history.clone(),
            stop_producers.clone(),
        )));
    }
    let mut consumers = vec![tokio::spawn(consume_assigned(
        bootstrap.clone(),
        history.clone(),
        stop_consumers.clone(),
    ))];
    for member in 0..2 {
        consumers.push(tokio::spawn(consume_in_group(
            bootstrap.clone(),
            member,
            history.clone(),
            stop_consumers.clone(),
        )));
    }
    consumers.push(tokio::spawn(watch_commits(
        bootstrap.clone(),
        history.clone(),
        stop_consumers.clone(),
    )));
    wait_for_acknowledgements(&history, Instant::now()).await;
    println!("workload running after {:?}", started.elapsed());

    let mut faults = Vec::new();
    for kind in [
        Kind::KillLeader,
        Kind::KillController,
        Kind::Pause,
        Kind::Disconnect,
        Kind::RollingRestart,
        Kind::RestartAll,
        Kind::KillAll,
        Kind::PauseOneKillAnother,
    ] {
        let fault = inject(compose, &admin, kind, &history).await;
        println!(
            "{} on {:?}: healed after {:?}, writes again {:?} later",
            fault.name,
            fault.nodes,
            fault.healed - fault.started,
            fault.recovered - fault.healed
        );
        faults.push(fault);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_producers.store(true, Ordering::Release);
    for producer in producers {
        producer.await.expect("producer task");
    }
    // The consumers read on for a moment, then the whole log is read once more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_consumers.store(true, Ordering::Release);
    for consumer in consumers {
        consumer.await.expect("consumer task");
    }
    let log = read_everything(&client, &history).await;
    let history = std::mem::take(&mut *lock(&history));
    Report::new(history, faults, log, started)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    KillLeader,
    KillController,
    Pause,
    Disconnect,
    RollingRestart,
    RestartAll,
    KillAll,
    PauseOneKillAnother,
}

/// Injects one fault, heals it, and waits until every broker is healthy and writes
/// are acknowledged again.
async fn inject(compose: &Compose, admin: &Admin, kind: Kind, history: &Shared) -> Fault {
    let leader = leader_of(admin, 0).await;
    let other = (1..=3).find(|node| *node != leader).unwrap();
    let (name, nodes) = match kind {
        Kind::KillLeader => ("kill -9 a partition leader", vec![leader]),
        Kind::KillController => (
            "kill -9 the active controller",
            vec![controller(admin).await],
        ),
        Kind::Pause => ("docker pause a partition leader", vec![leader]),
        Kind::Disconnect => ("network disconnect a partition leader", vec![leader]),
        Kind::RollingRestart => ("rolling restart (SIGTERM, one by one)", vec![1, 2, 3]),
        Kind::RestartAll => ("restart all three at once (SIGTERM)", vec![1, 2, 3]),
        Kind::KillAll => ("kill -9 all three brokers at once", vec![1, 2, 3]),
        Kind::PauseOneKillAnother => (
            "pause a leader and kill -9 another broker",
            vec![leader, other],
        ),
    };
    let containers: Vec<String> = nodes
        .iter()
        .map(|node| compose.container(*node).to_owned())
        .collect();
    let network = &compose.network;
    let started = Instant::now();
    match kind {
        Kind::KillLeader | Kind::KillController | Kind::KillAll => {
            let mut arguments = vec!["kill", "--signal", "KILL"];
            arguments.extend(containers.iter().map(String::as_str));
            docker_ok(&arguments).await;
            tokio::time::sleep(DOWNTIME).await;
            let mut arguments = vec!["start"];
            arguments.extend(containers.iter().map(String::as_str));
            docker_ok(&arguments).await;
        }
        Kind::RollingRestart => {
            // What an operator does to upgrade: each broker stopped gracefully (its
            // leaderships move first), started, and healthy before the next.
            for container in &containers {
                docker_ok(&["restart", "--time", "15", container]).await;
                wait_healthy(container).await;
            }
        }
        Kind::RestartAll => {
            let restarts = containers.iter().map(|container| async move {
                docker_ok(&["restart", "--time", "15", container]).await
            });
            futures::future::join_all(restarts).await;
        }
        Kind::Pause => {
            docker_ok(&["pause", &containers[0]]).await;
            tokio::time::sleep(OUTAGE).await;
            docker_ok(&["unpause", &containers[0]]).await;
        }
        Kind::Disconnect => {
            docker_ok(&["network", "disconnect", network, &containers[0]]).await;
            tokio::time::sleep(OUTAGE).await;
            // The service name is the address the other brokers know it by.
            let alias = format!("fjord-{}", nodes[0]);
            docker_ok(&[
                "network",
                "connect",
                "--alias",
                &alias,
                network,
                &containers[0],
            ])
            .await;
        }
        Kind::PauseOneKillAnother => {
            docker_ok(&["pause", &containers[0]]).await;
            docker_ok(&["kill", "--signal", "KILL", &containers[1]]).await;
            tokio::time::sleep(OUTAGE).await;
            docker_ok(&["unpause", &containers[0]]).await;
            docker_ok(&["start", &containers[1]]).await;
        }
    }
    let healed = Instant::now();
    for container in &compose.containers {
        wait_healthy(container).await;
    }
    let recovered = wait_for_acknowledgements(history, healed).await;
    Fault {
        name: name.to_owned(),
        nodes,
        started,
        healed,
        recovered,
    }
}

/// Waits until a record is acknowledged after `since`; returns when the first was.
async fn wait_for_acknowledgements(history: &Shared, since: Instant) -> Instant {
    loop {
        if let Some((at, ..)) = lock(history)
            .acknowledged
            .iter()
            .rev()
            .take_while(|(at, ..)| *at > since)
            .last()
        {
            return *at;
        }
        assert!(
            since.elapsed() < RECOVERY_PATIENCE,
            "no acks=all write acknowledged within {RECOVERY_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn leader_of(admin: &Admin, partition: i32) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(topic) = admin.describe_topic(TOPIC).await
            && let Some(leader) = topic
                .partitions
                .iter()
                .find(|described| described.partition == partition)
                .and_then(|described| described.leader)
        {
            return leader;
        }
        assert!(
            started.elapsed() < CLIENT_PATIENCE,
            "no leader of {partition}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn controller(admin: &Admin) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(cluster) = admin.describe_cluster().await
            && let Some(controller) = cluster.controller
        {
            return controller;
        }
        assert!(started.elapsed() < CLIENT_PATIENCE, "no active controller");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One producer: values `p{producer}-{sequence}`, round robin over the partitions,
/// one at a time, each awaited (so a fault's pause shows in the acknowledgements).
async fn produce(bootstrap: Vec<String>, producer: usize, history: Shared, stop: Arc<AtomicBool>) {
    let client = connect(&bootstrap).await;
    let sender = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    for sequence in 0..RECORDS_PER_PRODUCER_MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let value = format!("p{producer}-{sequence}");
        lock(&history).attempted.insert(value.clone());
        let partition = (sequence % PARTITIONS as usize) as i32;
        let record = ProducerRecord::new(TOPIC, value.clone()).with_partition(partition);
        let outcome = match sender.send(record).await {
            Ok(delivery) => delivery.await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok((partition, offset)) => {
                lock(&history)
                    .acknowledged
                    .push((Instant::now(), partition, offset, value));
            }
            Err(error) => {
                println!("producer {producer}: {value} not acknowledged: {error}");
                lock(&history).failed += 1;
            }
        }
    }
    if let Err(error) = sender.close().await {
        println!("producer {producer}: close: {error}");
    }
}

/// A consumer assigned every partition from the beginning.
async fn consume_assigned(bootstrap: Vec<String>, history: Shared, stop: Arc<AtomicBool>) {
    let client = connect(&bootstrap).await;
    let mut consumer = Consumer::new(&client, ConsumerConfig::default()).unwrap();
    let partitions = all_partitions();
    consumer.assign(partitions.clone());
    while let Err(error) = consumer.seek_to_beginning(&partitions).await {
        println!("assigned consumer: seek: {error}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let mut history = lock(&history);
                for record in records {
                    let value = value_of(&record.value);
                    history.record_seen(
                        "assigned consumer",
                        record.partition,
                        record.offset,
                        value,
                    );
                }
            }
            Err(error) => {
                println!("assigned consumer: {error}");
                lock(&history).consumer_errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A member of [`GROUP`], auto-committing every second.
async fn consume_in_group(
    bootstrap: Vec<String>,
    member: usize,
    history: Shared,
    stop: Arc<AtomicBool>,
) {
    let name = format!("group member {member}");
    let client = connect(&bootstrap).await;
    let mut config = GroupConsumerConfig::new(GROUP);
    config.auto_commit_interval_ms = Some(1_000);
    let mut consumer = GroupConsumer::new(&client, config).unwrap();
    // Partitions given to this member start at the group's committed offsets: a seek.
    let listener_history = history.clone();
    let listener_name = name.clone();
    consumer.on_rebalance(move |event| {
        if let RebalanceEvent::Assigned(partitions) = event {
            let mut history = lock(&listener_history);
            history.rebalances += 1;
            for partition in partitions {
                history.forget_position(&listener_name, partition.partition);
            }
        }
    });
    consumer.subscribe([TOPIC]).unwrap();
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let mut history = lock(&history);
                for record in records {
                    let value = value_of(&record.value);
                    history.record_seen(&name, record.partition, record.offset, value);
                }
            }
            Err(error) => {
                println!("{name}: {error}");
                lock(&history).consumer_errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if let Err(error) = consumer.close().await {
        println!("{name}: close: {error}");
    }
}

/// Reads the group's committed offsets twice a second; none may go backwards.
async fn watch_commits(bootstrap: Vec<String>, history: Shared, stop: Arc<AtomicBool>) {
    let client = connect(&bootstrap).await;
    let admin = Admin::new(&client);
    while !stop.load(Ordering::Acquire) {
        if let Ok(offsets) = admin.group_offsets(GROUP).await {
            let mut history = lock(&history);
            history.commits_read += 1;
            for (partition, offset) in offsets {
                let last = history.committed.entry(partition.partition).or_insert(-1);
                if offset < *last {
                    let message = format!(
                        "the committed offset of partition {} went back from {last} to {offset}",
                        partition.partition
                    );
                    *last = offset;
                    history.violations.push(message);
                } else {
                    *last = offset;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every record of every partition, up to its end when the read starts.
async fn read_everything(client: &Client, history: &Shared) -> BTreeMap<(i32, i64), String> {
    let admin = Admin::new(client);
    let queries: Vec<(TopicPartition, OffsetSpec)> = all_partitions()
        .into_iter()
        .map(|partition| (partition, OffsetSpec::Latest))
        .collect();
    let started = Instant::now();
    let ends = loop {
        match admin.list_offsets(&queries).await {
            Ok(ends) => break ends,
            Err(error) => {
                assert!(started.elapsed() < CLIENT_PATIENCE, "list offsets: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut consumer = Consumer::new(client, ConsumerConfig::default()).unwrap();
    let partitions = all_partitions();
    consumer.assign(partitions.clone());
    consumer.seek_to_beginning(&partitions).await.unwrap();
    let mut log = BTreeMap::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let done = |next: &HashMap<i32, i64>| {
        ends.iter().all(|(partition, end)| {
            next.get(&partition.partition).copied().unwrap_or(0) >= end.offset
        })
    };
    let started = Instant::now();
    while !done(&next) {
        assert!(
            started.elapsed() < CLIENT_PATIENCE,
            "the final read reached {next:?} of {ends:?}"
        );
        match consumer.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let mut history = lock(history);
                for record in records {
                    let value = value_of(&record.value);
                    history.record_seen(
                        "final read",
                        record.partition,
                        record.offset,
                        value.clone(),
                    );
                    next.insert(record.partition, record.offset + 1);
                    log.insert((record.partition, record.offset), value);
                }
            }
            Err(error) => println!("final read: {error}"),
        }
    }
    log
}

fn all_partitions() -> Vec<TopicPartition> {
    (0..PARTITIONS)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect()
}

fn value_of(value: &Option<bytes::Bytes>) -> String {
    String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned()
}
