//! Consumer groups against a real in-process broker: partitions shared by members,
//! incremental rebalancing when a member joins, reassignment after a crash, no record
//! processed by two live members at once, committed offsets across a broker restart,
//! a commit after the coordinator forgot the member, a manual-commit member committing
//! what it processed when a partition is revoked, and the `fjord` tool's group
//! commands (reset-offsets, a group consumer stopped with SIGTERM).
//!
//! Members heartbeat every 100 ms. The session timeout is 30 s, so that a live member
//! starved of CPU on a loaded machine is never evicted, except in the crash test, which
//! needs a crash noticed and uses 5 s. Two delays are measured, not asserted (run with
//! `--nocapture` to see them): from a member's subscribe to its first record, and from
//! a member's crash to its partitions being consumed again. Order is checked with
//! events (who held what, what the group listed), never with clocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_broker::config::BrokerConfig;
use fjord_broker::{Broker, BrokerHandle};
use fjord_client::{
    Admin, Client, ClientConfig, Error, ErrorCode, GroupConsumer, GroupConsumerConfig, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, RebalanceEvent, TopicPartition,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod common;
use common::{FjordProcess, fjord, stdout, words};

/// Longest any wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);
/// Long enough that no live member is evicted however loaded the machine.
const SESSION_TIMEOUT_MS: u64 = 30_000;
/// The crash test's session timeout: the crash must be noticed within the test.
const CRASH_SESSION_TIMEOUT_MS: u64 = 5_000;
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const TOPIC: &str = "orders";

async fn start_broker(data_dir: &Path) -> BrokerHandle {
    start_broker_with_session(data_dir, SESSION_TIMEOUT_MS).await
}

async fn start_broker_with_session(data_dir: &Path, session_timeout_ms: u64) -> BrokerHandle {
    let mut config = BrokerConfig::for_tests(data_dir);
    config.group_session_timeout_ms = session_timeout_ms;
    config.group_heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
    Broker::start(config).await.expect("broker starts")
}

async fn connect(broker: &BrokerHandle) -> Client {
    Client::connect(ClientConfig::new([broker.client_addr().to_string()]))
        .await
        .expect("client connects")
}

async fn create_topic(client: &Client, partitions: i32) {
    Admin::new(client)
        .create_topics(&[NewTopic::new(TOPIC, partitions, 1)])
        .await
        .expect("topic is created");
}

fn partitions(indexes: impl IntoIterator<Item = i32>) -> BTreeSet<TopicPartition> {
    indexes
        .into_iter()
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect()
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Produces to every partition in turn, a record every few milliseconds, until stopped.
fn spawn_producer(client: &Client, partition_count: i32) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger_ms: 1,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let task = tokio::spawn(async move {
        let mut sequence = 0u64;
        while !*stopped.borrow_and_update() {
            for partition in 0..partition_count {
                let record =
                    ProducerRecord::new(TOPIC, sequence.to_string()).with_partition(partition);
                drop(producer.send(record).await.unwrap());
            }
            sequence += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        producer.close().await.unwrap();
    });
    (stop, task)
}

/// What the members of a test did, shared by their tasks.
#[derive(Debug, Default)]
struct Journal {
    /// Which live member is processing each partition; a second one is a violation.
    holders: HashMap<TopicPartition, String>,
    violations: Vec<String>,
    owned: HashMap<String, BTreeSet<TopicPartition>>,
    revoked: HashMap<String, BTreeSet<TopicPartition>>,
    /// (member, partition) → offsets received, in order, with when.
    received: HashMap<(String, TopicPartition), Vec<(i64, Instant)>>,
    first_record: HashMap<String, Instant>,
}

type SharedJournal = Arc<Mutex<Journal>>;

impl Journal {
    fn owned_by(&self, member: &str) -> BTreeSet<TopicPartition> {
        self.owned.get(member).cloned().unwrap_or_default()
    }

    /// Partition → owning member, from the members' own events.
    fn owners(&self) -> BTreeMap<TopicPartition, String> {
        self.owned
            .iter()
            .flat_map(|(member, owned)| {
                owned
                    .iter()
                    .map(move |partition| (partition.clone(), member.clone()))
            })
            .collect()
    }

    fn offsets(&self, member: &str, partition: &TopicPartition) -> Vec<i64> {
        self.received
            .get(&(member.to_owned(), partition.clone()))
            .map(|records| records.iter().map(|(offset, _)| *offset).collect())
            .unwrap_or_default()
    }

    /// The member is gone (crashed): it processes nothing any more.
    fn forget(&mut self, member: &str) {
        self.holders.retain(|_, holder| holder != member);
        self.owned.remove(member);
    }
}

/// A group member running in its own task: polls, records what it gets.
struct Member {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    subscribed_at: Instant,
}

fn spawn_member(client: &Client, group: &str, name: &str, journal: &SharedJournal) -> Member {
    let mut config = GroupConsumerConfig::new(group);
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.consumer.fetch_wait_ms = 100;
    config.auto_commit_interval_ms = Some(200);
    let mut consumer = GroupConsumer::new(client, config).unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let me = name.to_owned();
    let events = journal.clone();
    consumer.on_rebalance(move |event| {
        let mut journal = events.lock().unwrap();
        match event {
            RebalanceEvent::Assigned(added) => {
                journal
                    .owned
                    .entry(me.clone())
                    .or_default()
                    .extend(added.iter().cloned());
            }
            RebalanceEvent::Revoked(gone) | RebalanceEvent::Lost(gone) => {
                for partition in gone {
                    journal
                        .owned
                        .entry(me.clone())
                        .or_default()
                        .remove(partition);
                    journal
                        .revoked
                        .entry(me.clone())
                        .or_default()
                        .insert(partition.clone());
                    if journal.holders.get(partition) == Some(&me) {
                        journal.holders.remove(partition);
                    }
                }
            }
        }
    });
    let me = name.to_owned();
    let journal = journal.clone();
    let subscribed_at = Instant::now();
    consumer.subscribe([TOPIC]).unwrap();
    let task = tokio::spawn(async move {
        loop {
            let records = tokio::select! {
                _ = stopped.changed() => break,
                records = consumer.poll(Duration::from_millis(100)) => records.unwrap(),
            };
            let now = Instant::now();
            let mut journal = journal.lock().unwrap();
            for record in records {
                let partition = TopicPartition::new(record.topic.clone(), record.partition);
                match journal.holders.get(&partition) {
                    Some(holder) if *holder != me => {
                        let violation = format!(
                            "{me} got {partition}@{} while {holder} holds it",
                            record.offset
                        );
                        journal.violations.push(violation);
                    }
                    _ => {
                        journal.holders.insert(partition.clone(), me.clone());
                    }
                }
                journal.first_record.entry(me.clone()).or_insert(now);
                journal
                    .received
                    .entry((me.clone(), partition))
                    .or_default()
                    .push((record.offset, now));
            }
        }
        consumer.close().await.unwrap();
    });
    Member {
        name: name.to_owned(),
        stop,
        task,
        subscribed_at,
    }
}

impl Member {
    /// Closes the consumer: commits and leaves the group.
    async fn close(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }

    /// Stops the member like a crash: its task (and with it the consumer and its
    /// heartbeat task) is dropped without leaving the group.
    async fn crash(self, journal: &SharedJournal) -> Instant {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
        let crashed_at = Instant::now();
        journal.lock().unwrap().forget(&self.name);
        crashed_at
    }
}

/// Offsets are contiguous: no record skipped, none delivered twice.
fn assert_contiguous(member: &str, partition: &TopicPartition, offsets: &[i64]) {
    for pair in offsets.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{member} on {partition}: {offsets:?}");
    }
}

/// Three members of a six-partition topic get two partitions each. A fourth joins:
/// only the partitions that move to it change owner, and the members that keep theirs
/// go on consuming them through the rebalance: no revocation, records still arriving
/// while the rebalance runs, and no offset skipped or repeated. At no time do two
/// members process the same partition. The delay from the fourth member's subscribe to
/// its first record is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_moves_only_the_partitions_it_takes() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, 6).await;
    let (stop_producing, producer) = spawn_producer(&client, 6);
    let journal = SharedJournal::default();

    let members: Vec<Member> = ["m1", "m2", "m3"]
        .into_iter()
        .map(|name| spawn_member(&client, "shipping", name, &journal))
        .collect();
    wait_until("three members own two partitions each, and consume", || {
        let journal = journal.lock().unwrap();
        members.iter().all(|member| {
            let owned = journal.owned_by(&member.name);
            owned.len() == 2
                && owned
                    .iter()
                    .all(|partition| !journal.offsets(&member.name, partition).is_empty())
        })
    })
    .await;
    let before = journal.lock().unwrap().owners();
    assert_eq!(before.len(), 6);

    let joined_at = Instant::now();
    let fourth = spawn_member(&client, "shipping", "m4", &journal);
    wait_until("the fourth member consumes", || {
        journal.lock().unwrap().first_record.contains_key("m4")
    })
    .await;
    let first_record_ms = journal.lock().unwrap().first_record["m4"]
        .duration_since(fourth.subscribed_at)
        .as_millis();
    println!("measured: join -> first record of the joining member: {first_record_ms} ms");
    wait_until("the group settles at 2/2/1/1", || {
        let journal = journal.lock().unwrap();
        let mut counts: Vec<usize> = ["m1", "m2", "m3", "m4"]
            .iter()
            .map(|member| journal.owned_by(member).len())
            .collect();
        counts.sort_unstable();
        counts == [1, 1, 2, 2] && journal.owners().len() == 6
    })
    .await;
    let settled_at = Instant::now();
    // The members that kept their partitions go on consuming them after the rebalance.
    wait_until("every partition is consumed after the rebalance", || {
        let journal = journal.lock().unwrap();
        journal.owners().iter().all(|(partition, owner)| {
            journal
                .received
                .get(&(owner.clone(), partition.clone()))
                .is_some_and(|records| records.iter().any(|(_, at)| *at > settled_at))
        })
    })
    .await;

    {
        let journal_now = journal.lock().unwrap();
        let after = journal_now.owners();
        let moved: BTreeSet<&TopicPartition> = after
            .iter()
            .filter(|(partition, owner)| before[*partition] != **owner)
            .map(|(partition, _)| partition)
            .collect();
        let taken = journal_now.owned_by("m4");
        assert_eq!(
            moved,
            taken.iter().collect(),
            "only what m4 took changed owner"
        );
        assert_eq!(moved.len(), 1, "uniform assignment moves one partition");
        for (partition, owner) in &before {
            let revoked = journal_now.revoked.get(owner).cloned().unwrap_or_default();
            let offsets = journal_now.offsets(owner, partition);
            assert_contiguous(owner, partition, &offsets);
            if moved.contains(partition) {
                assert!(revoked.contains(partition));
                continue;
            }
            assert!(
                !revoked.contains(partition),
                "{owner} had {partition} revoked"
            );
            let during_rebalance = journal_now.received[&(owner.clone(), partition.clone())]
                .iter()
                .filter(|(_, at)| *at >= joined_at && *at <= settled_at)
                .count();
            assert!(
                during_rebalance > 0,
                "{owner} stopped consuming {partition} during the rebalance"
            );
        }
        // The partition that moved continues where its previous owner committed: nothing
        // is skipped (records after that commit may be processed again).
        for partition in &moved {
            let previous = journal_now.offsets(&before[*partition], partition);
            let next = journal_now.offsets("m4", partition);
            assert!(
                next[0] <= previous.last().unwrap() + 1,
                "{partition}: gap after the move"
            );
            assert_contiguous("m4", partition, &next);
        }
        assert!(
            journal_now.violations.is_empty(),
            "{:?}",
            journal_now.violations
        );
    }

    stop_producing.send_replace(true);
    producer.await.unwrap();
    for member in members.into_iter().chain([fourth]) {
        member.close().await;
    }
    let listed = Admin::new(&client).list_groups().await.unwrap();
    assert_eq!(listed[0].group_id, "shipping");
    assert_eq!((listed[0].state.as_str(), listed[0].members), ("Empty", 0));
    broker.shutdown().await.unwrap();
}

/// A member that crashes (its heartbeats stop, it never leaves) stays in the group
/// with its partitions until its session times out; then the remaining member gets
/// them and continues exactly from the crashed member's committed offsets, without a
/// gap, and never while the crashed member was still alive. The delay from the crash to
/// the first record of its partitions consumed again is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_loses_its_partitions_after_the_session_timeout() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker_with_session(directory.path(), CRASH_SESSION_TIMEOUT_MS).await;
    let client = connect(&broker).await;
    let admin = Admin::new(&client);
    create_topic(&client, 6).await;
    let (stop_producing, producer) = spawn_producer(&client, 6);
    let journal = SharedJournal::default();
    let survivor = spawn_member(&client, "billing", "survivor", &journal);
    let doomed = spawn_member(&client, "billing", "doomed", &journal);
    wait_until("both members own and consume three partitions", || {
        let journal = journal.lock().unwrap();
        ["survivor", "doomed"].iter().all(|member| {
            let owned = journal.owned_by(member);
            owned.len() == 3
                && owned
                    .iter()
                    .all(|partition| !journal.offsets(member, partition).is_empty())
        })
    })
    .await;
    let orphaned = journal.lock().unwrap().owned_by("doomed");
    // The doomed member commits (every 200 ms) past the first record it processed on
    // each of its partitions, so that the survivor must resume from its commits.
    let first_processed: BTreeMap<TopicPartition, i64> = {
        let journal = journal.lock().unwrap();
        orphaned
            .iter()
            .map(|partition| (partition.clone(), journal.offsets("doomed", partition)[0]))
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let committed = admin.group_offsets("billing").await.unwrap();
        if first_processed
            .iter()
            .all(|(partition, first)| committed.get(partition).is_some_and(|at| at > first))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed member never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let doomed_id = {
        let described = admin.describe_group("billing").await.unwrap();
        let doomed_member = described
            .members
            .iter()
            .find(|member| member.assignment.iter().cloned().collect::<BTreeSet<_>>() == orphaned)
            .unwrap_or_else(|| panic!("no member holds {orphaned:?}: {described:?}"));
        doomed_member.member_id.clone()
    };

    let crashed_at = doomed.crash(&journal).await;
    // Nothing commits the orphaned partitions until the survivor gets them.
    let committed_at_crash = admin.group_offsets("billing").await.unwrap();
    let last_processed: BTreeMap<TopicPartition, i64> = {
        let journal = journal.lock().unwrap();
        orphaned
            .iter()
            .map(|partition| {
                (
                    partition.clone(),
                    *journal.offsets("doomed", partition).last().unwrap(),
                )
            })
            .collect()
    };
    let described = admin.describe_group("billing").await.unwrap();
    let still_listed = described
        .members
        .iter()
        .any(|member| member.member_id == doomed_id);
    assert!(
        still_listed || journal.lock().unwrap().owned_by("survivor").len() == 6,
        "the crashed member left the group instead of timing out: {described:?}"
    );

    // What the survivor received on the orphaned partitions after the crash (it may
    // have consumed them before the doomed member joined, too).
    let resumed = |journal: &Journal, partition: &TopicPartition| -> Vec<(i64, Instant)> {
        journal
            .received
            .get(&("survivor".to_owned(), partition.clone()))
            .map(|records| {
                records
                    .iter()
                    .filter(|(_, at)| *at > crashed_at)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until("the survivor consumes every orphaned partition", || {
        let journal = journal.lock().unwrap();
        orphaned
            .iter()
            .all(|partition| !resumed(&journal, partition).is_empty())
    })
    .await;
    let described = admin.describe_group("billing").await.unwrap();
    assert!(
        described
            .members
            .iter()
            .all(|member| member.member_id != doomed_id),
        "the crashed member's partitions moved while it was a member: {described:?}"
    );
    let (reassigned_ms, survivor_owned, resumed_offsets, violations) = {
        let journal_now = journal.lock().unwrap();
        let reassigned_ms = orphaned
            .iter()
            .map(|partition| resumed(&journal_now, partition)[0].1)
            .min()
            .unwrap()
            .duration_since(crashed_at)
            .as_millis();
        let resumed_offsets: BTreeMap<TopicPartition, Vec<i64>> = orphaned
            .iter()
            .map(|partition| {
                let offsets = resumed(&journal_now, partition)
                    .into_iter()
                    .map(|(offset, _)| offset)
                    .collect();
                (partition.clone(), offsets)
            })
            .collect();
        (
            reassigned_ms,
            journal_now.owned_by("survivor").len(),
            resumed_offsets,
            journal_now.violations.clone(),
        )
    };
    // Checked outside the journal's lock, so that a failure here cannot poison it.
    println!(
        "measured: crash -> its partitions consumed again: {reassigned_ms} ms (session timeout {CRASH_SESSION_TIMEOUT_MS} ms)"
    );
    assert_eq!(survivor_owned, 6);
    for (partition, last) in &last_processed {
        let offsets = &resumed_offsets[partition];
        let committed = committed_at_crash[partition];
        assert!(
            committed > first_processed[partition] && committed <= last + 1,
            "{partition}: committed {committed}, processed {}..={last}",
            first_processed[partition]
        );
        assert_eq!(
            offsets[0], committed,
            "{partition}: the survivor resumed at {} instead of the committed {committed}",
            offsets[0]
        );
        assert_contiguous("survivor", partition, offsets);
    }
    assert!(violations.is_empty(), "{violations:?}");

    stop_producing.send_replace(true);
    producer.await.unwrap();
    survivor.close().await;
    broker.shutdown().await.unwrap();
}

/// Offsets committed by a member are records of `__consumer_offsets`: after a broker
/// restart they are all there, and a new member of the group starts exactly where the
/// old one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_restart() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, 3).await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for index in 0..90 {
        let record =
            ProducerRecord::new(TOPIC, format!("before-{index}")).with_partition(index % 3);
        drop(producer.send(record).await.unwrap());
    }
    producer.close().await.unwrap();

    let mut config = GroupConsumerConfig::new("audit");
    config.consumer.auto_offset_reset = OffsetReset::Earliest;
    config.auto_commit_interval_ms = None;
    let mut consumer = GroupConsumer::new(&client, config.clone()).unwrap();
    consumer.subscribe([TOPIC]).unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + PATIENCE;
    while seen < 90 {
        assert!(Instant::now() < deadline, "only {seen} of 90 records");
        seen += consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .len();
    }
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let committed = Admin::new(&client).group_offsets("audit").await.unwrap();
    assert_eq!(
        committed,
        partitions(0..3).into_iter().map(|p| (p, 30)).collect()
    );
    drop(client);
    broker.shutdown().await.unwrap();

    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    let admin = Admin::new(&client);
    assert_eq!(admin.group_offsets("audit").await.unwrap(), committed);
    let listed = admin.list_groups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "Empty");
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for index in 0..3 {
        let record = ProducerRecord::new(TOPIC, format!("after-{index}")).with_partition(index);
        drop(producer.send(record).await.unwrap());
    }
    producer.close().await.unwrap();
    let mut consumer = GroupConsumer::new(&client, config).unwrap();
    consumer.subscribe([TOPIC]).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while records.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} of 3 records",
            records.len()
        );
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert!(
        records.iter().all(|record| record.offset == 30),
        "{records:?}"
    );
    consumer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

/// `fjord consume --group` commits what it printed and leaves the group when stopped by
/// `--max-messages` or by SIGTERM; `fjord group reset-offsets` refuses a group with
/// members and moves the offsets of an empty one; `group list` and `group describe`
/// show the group, its committed offsets and lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_of_the_fjord_tool() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let bootstrap = broker.client_addr().to_string();
    let at = |line: &str| words(&format!("--bootstrap {bootstrap} {line}"));
    let client = connect(&broker).await;
    create_topic(&client, 2).await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for index in 0..20 {
        let record = ProducerRecord::new(TOPIC, format!("r{index}")).with_partition(index % 2);
        drop(producer.send(record).await.unwrap());
    }
    producer.flush().await.unwrap();
    let admin = Admin::new(&client);

    let printed = stdout(
        &fjord(at(
            "consume orders --group cli --from-beginning --max-messages 5",
        ))
        .await,
    );
    assert_eq!(printed.lines().count(), 5);
    let committed: i64 = admin.group_offsets("cli").await.unwrap().values().sum();
    assert_eq!(committed, 5, "exactly what was printed is committed");
    let listed = stdout(&fjord(at("group list")).await);
    assert!(
        listed
            .lines()
            .any(|line| words(line) == ["cli", "Empty", "0"]),
        "{listed}"
    );

    // SIGTERM: the consumer commits what it printed and leaves.
    let mut consumer = FjordProcess::spawn(&at("consume orders --group cli"));
    let mut printed = Vec::new();
    while printed.len() < 15 {
        let line = consumer.next_line(PATIENCE).await;
        printed.push(line.expect("fjord consume ended before printing 15 records"));
    }
    consumer.guard.signal("TERM");
    let (exit, rest, stderr) = consumer.finish(PATIENCE).await;
    assert!(rest.is_empty(), "printed after the 15 records: {rest:?}");
    assert!(exit.success(), "{exit:?}: {stderr}");
    let committed = admin.group_offsets("cli").await.unwrap();
    assert_eq!(
        committed,
        partitions(0..2).into_iter().map(|p| (p, 10)).collect()
    );
    let described: serde_json::Value = serde_json::from_str(&stdout(
        &fjord(at("group describe cli --output json")).await,
    ))
    .unwrap();
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["offsets"][0]["lag"], 0);

    // A live member blocks resetting; once it has left, the reset goes through.
    let mut config = GroupConsumerConfig::new("cli");
    config.auto_commit_interval_ms = None;
    let mut member = GroupConsumer::new(&client, config).unwrap();
    member.subscribe([TOPIC]).unwrap();
    wait_until("the member joined", || member.member_id().is_some()).await;
    let refused = fjord(at("group reset-offsets cli --topic orders --to-earliest")).await;
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "error: group 'cli' has active members; stop them before resetting its offsets\n"
    );
    member.close().await.unwrap();
    let reset = stdout(&fjord(at("group reset-offsets cli --topic orders --to-earliest")).await);
    assert!(
        reset
            .lines()
            .any(|line| words(line) == ["orders", "1", "0"]),
        "{reset}"
    );
    assert!(
        admin
            .group_offsets("cli")
            .await
            .unwrap()
            .values()
            .all(|offset| *offset == 0)
    );
    let described = stdout(&fjord(at("group describe cli")).await);
    assert!(
        described
            .lines()
            .any(|line| words(line) == ["orders", "0", "0", "10", "10", "-"]),
        "{described}"
    );
    stdout(&fjord(at("group reset-offsets cli --topic orders --to-latest")).await);
    assert!(
        admin
            .group_offsets("cli")
            .await
            .unwrap()
            .values()
            .all(|offset| *offset == 10)
    );
    let missing = fjord(at("group describe nothing")).await;
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "error: group 'nothing' does not exist\n"
    );
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

/// A commit after the coordinator forgot the member (here its broker restarted:
/// memberships are not stored, only offsets) fails with the distinct, not retriable
/// `Error::CommitFailed`, commits nothing, and the member joins again by itself at
/// once, without waiting for its next heartbeat (every 10 s here, so that none comes
/// between the restart and the commit), and then commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_the_membership_was_lost_is_commit_failed() {
    let directory = tempfile::tempdir().unwrap();
    let config = |listen: std::net::SocketAddr| {
        let mut config = BrokerConfig::for_tests(directory.path());
        config.listen = listen;
        config.group_session_timeout_ms = SESSION_TIMEOUT_MS;
        config.group_heartbeat_interval_ms = 10_000;
        config
    };
    let broker = Broker::start(config("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let address = broker.client_addr();
    let client = connect(&broker).await;
    create_topic(&client, 1).await;
    let mut group_config = GroupConsumerConfig::new("billing");
    group_config.consumer.auto_offset_reset = OffsetReset::Earliest;
    group_config.auto_commit_interval_ms = None;
    let mut consumer = GroupConsumer::new(&client, group_config).unwrap();
    consumer.subscribe([TOPIC]).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while consumer.assignment().is_empty() {
        assert!(Instant::now() < deadline, "never assigned");
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    let member = consumer.member_id().unwrap();
    broker.shutdown().await.unwrap();
    // The same address, so that the client finds it again; the port may be held for
    // a moment.
    let broker = loop {
        match Broker::start(config(address)).await {
            Ok(broker) => break broker,
            Err(error) => {
                assert!(Instant::now() < deadline, "no restart: {error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let error = consumer.commit().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::CommitFailed {
                code: ErrorCode::UnknownMemberId,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_retriable());
    let committed = Admin::new(&client).group_offsets("billing").await.unwrap();
    assert!(committed.is_empty(), "{committed:?}");

    let deadline = Instant::now() + PATIENCE;
    while consumer.member_id().is_none_or(|id| id == member) || consumer.assignment().is_empty() {
        assert!(Instant::now() < deadline, "never joined again");
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

/// A member that commits by hand (auto-commit off) and marks each record processed:
/// when a new member takes one of its partitions, the offset after the last record it
/// marked is committed before the partition is released, so the new owner starts
/// there. It read further than it marked (the rest was fetched but not processed): the
/// new owner reads those again, and nothing processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_commit_member_commits_what_it_processed_when_a_partition_is_revoked() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, 2).await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for sequence in 0..10 {
        for partition in 0..2 {
            let record = ProducerRecord::new(TOPIC, sequence.to_string()).with_partition(partition);
            producer.send(record).await.unwrap().await.unwrap();
        }
    }
    producer.close().await.unwrap();
    const PROCESSED: i64 = 4;
    let manual = || {
        let mut config = GroupConsumerConfig::new("billing");
        config.consumer.auto_offset_reset = OffsetReset::Earliest;
        config.auto_commit_interval_ms = None;
        config
    };

    let mut first = GroupConsumer::new(&client, manual()).unwrap();
    first.subscribe([TOPIC]).unwrap();
    let mut read: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while read.len() < 2 || read.values().any(|last| *last < 9) {
        assert!(
            Instant::now() < deadline,
            "the first member never read everything: {read:?}"
        );
        for record in first.poll(Duration::from_millis(100)).await.unwrap() {
            read.insert(record.partition, record.offset);
            if record.offset < PROCESSED {
                first.mark_processed(&record);
            }
        }
    }
    assert_eq!(first.assignment().len(), 2);

    let mut second = GroupConsumer::new(&client, manual()).unwrap();
    second.subscribe([TOPIC]).unwrap();
    let mut second_read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while second_read.is_empty() {
        assert!(Instant::now() < deadline, "the second member never read");
        first.poll(Duration::from_millis(50)).await.unwrap();
        for record in second.poll(Duration::from_millis(50)).await.unwrap() {
            second_read
                .entry(record.partition)
                .or_default()
                .push(record.offset);
        }
    }
    let taken: Vec<i32> = second.assignment().iter().map(|p| p.partition).collect();
    let kept: Vec<i32> = first.assignment().iter().map(|p| p.partition).collect();
    println!("the second member took {taken:?}, the first kept {kept:?}");
    assert_eq!((taken.len(), kept.len()), (1, 1));
    let committed = Admin::new(&client).group_offsets("billing").await.unwrap();
    assert_eq!(
        committed.get(&TopicPartition::new(TOPIC, taken[0])),
        Some(&PROCESSED),
        "the revoked partition's processed offset is committed: {committed:?}"
    );
    assert_eq!(
        second_read[&taken[0]].first(),
        Some(&PROCESSED),
        "the new owner starts after the last processed record"
    );
    first.close().await.unwrap();
    let committed = Admin::new(&client).group_offsets("billing").await.unwrap();
    assert_eq!(
        committed.get(&TopicPartition::new(TOPIC, kept[0])),
        Some(&PROCESSED),
        "closing commits the kept partition's processed offset: {committed:?}"
    );
    second.close().await.unwrap();
    broker.shutdown().await.unwrap();
}
