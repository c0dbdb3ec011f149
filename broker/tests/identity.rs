//! Whom data belongs to: partition directories record their topic's id, so a topic
//! deleted and re-created while a broker was down never brings old data back; the data
//! directory records its node id (and cluster id), so a broker started as another node
//! is refused; and a data directory written by the pre-Raft release opens intact and
//! gets both records.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fjord_broker::config::BrokerConfig;
use fjord_broker::metadata::CreateTopic;
use fjord_broker::storage::node_identity::{self, NodeIdentity};
use fjord_broker::storage::{RecoverError, RecoveryAction, TopicPartition, topic_id};
use fjord_broker::{Broker, BrokerHandle};
use fjord_protocol::ErrorCode;

mod common;
use common::blocking_client::values;
use common::http_client::get;
use common::native_client::{NativeClient, values_batch};
use common::pre_raft::{check_fixture_contents, copy_fixture, copy_tree};
use common::{BrokerProcess, PROCESS_PATIENCE};

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

/// Waits until the broker at `http` says it is ready (its data directory is taken and
/// its metadata loaded), failing the test after [`PROCESS_PATIENCE`].
async fn wait_ready(http: SocketAddr) {
    let deadline = tokio::time::Instant::now() + PROCESS_PATIENCE;
    while get(http, "/readyz").await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker was not ready within {PROCESS_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(data_dir: &Path) -> BrokerHandle {
    Broker::start(BrokerConfig::for_tests(data_dir))
        .await
        .unwrap()
}

async fn create_topic(broker: &BrokerHandle, name: &str, partitions: i32) -> uuid::Uuid {
    let request = CreateTopic {
        name: name.into(),
        partitions: Some(partitions),
        ..Default::default()
    };
    broker
        .broker()
        .create_topic(request, false)
        .await
        .unwrap()
        .topic_id
}

/// The values of every record of a partition, fetched from offset 0.
async fn fetch_values(client: &mut NativeClient, topic: &str, partition: i32) -> Vec<String> {
    let response = client.fetch(topic, partition, 0).await;
    assert_eq!(response.error_code, ErrorCode::None, "{topic}-{partition}");
    values(response.records)
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

fn log_end(broker: &BrokerHandle, topic: &str, partition: i32) -> i64 {
    broker
        .broker()
        .logs
        .get(&TopicPartition::new(topic, partition))
        .unwrap_or_else(|| panic!("{topic}-{partition} is not open"))
        .log_end_offset()
}

/// A topic deleted and re-created under the same name while this broker was down (done
/// by a second broker on a copy of the data directory, whose metadata is then copied
/// back): the restarted broker serves the new topic, empty, and the old records are
/// gone from its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_re_created_while_the_broker_was_down_comes_back_empty() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let broker = start(&data_dir).await;
    let old_id = create_topic(&broker, "orders", 2).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    for partition in 0..2 {
        let produced = client
            .produce("orders", partition, values_batch("stale-record", 5))
            .await;
        assert_eq!(produced, ErrorCode::None);
    }
    broker.shutdown().await.unwrap();

    // While "this" broker is down, the topic is deleted and re-created elsewhere.
    let elsewhere = root.path().join("elsewhere");
    copy_tree(&data_dir, &elsewhere);
    let other = start(&elsewhere).await;
    other.broker().admin.delete_topic("orders").await.unwrap();
    let new_id = create_topic(&other, "orders", 2).await;
    other.shutdown().await.unwrap();
    assert_ne!(old_id, new_id);
    let metadata = fjord_broker::metadata::log::METADATA_DIR;
    std::fs::remove_dir_all(data_dir.join(metadata)).unwrap();
    copy_tree(&elsewhere.join(metadata), &data_dir.join(metadata));

    let broker = start(&data_dir).await;
    let image = broker.broker().metadata();
    assert_eq!(image.topic("orders").unwrap().topic_id, new_id);
    assert!(
        broker.broker().logs.offline_partitions().is_empty(),
        "{:?}",
        broker.broker().logs.offline_partitions()
    );
    let mut client = NativeClient::connect(broker.client_addr()).await;
    for partition in 0..2 {
        assert_eq!(log_end(&broker, "orders", partition), 0);
        assert!(
            fetch_values(&mut client, "orders", partition)
                .await
                .is_empty()
        );
        let directory = data_dir.join(format!("orders-{partition}"));
        assert_eq!(topic_id::load(&directory).unwrap(), Some(new_id));
    }
    // The new topic works from offset 0.
    assert_eq!(
        client.produce("orders", 0, values_batch("new", 2)).await,
        ErrorCode::None
    );
    assert_eq!(
        fetch_values(&mut client, "orders", 0).await,
        ["new-0", "new-1"]
    );
    broker.shutdown().await.unwrap();
    // Read with the broker stopped: a running one replaces state files now and then.
    for file in files_under(&data_dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(12).any(|window| window == b"stale-record"),
            "{} still holds old records",
            file.display()
        );
        assert!(
            !file.to_string_lossy().contains(".deleted"),
            "{}",
            file.display()
        );
    }

    // And it stays that way: the next start adopts the new directories as they are.
    let broker = start(&data_dir).await;
    assert_eq!(log_end(&broker, "orders", 0), 2);
    broker.shutdown().await.unwrap();
}

/// A partition directory without a topic id (written by an earlier release) is adopted
/// with its records, and the id of the topic of its name is recorded in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_a_topic_id_is_adopted_and_gets_one() {
    let root = tempfile::tempdir().unwrap();
    let broker = start(root.path()).await;
    let id = create_topic(&broker, "legacy", 1).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        client.produce("legacy", 0, values_batch("kept", 4)).await,
        ErrorCode::None
    );
    broker.shutdown().await.unwrap();
    let directory = root.path().join("legacy-0");
    assert_eq!(topic_id::load(&directory).unwrap(), Some(id));
    std::fs::remove_file(directory.join(topic_id::FILE_NAME)).unwrap();

    let broker = start(root.path()).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        fetch_values(&mut client, "legacy", 0).await,
        ["kept-0", "kept-1", "kept-2", "kept-3"]
    );
    assert_eq!(topic_id::load(&directory).unwrap(), Some(id));
    broker.shutdown().await.unwrap();
}

/// A damaged topic id record takes only its partition offline, with a reason naming the
/// file; nothing is deleted, no recovery action applies, and the other partition
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_topic_id_takes_only_its_partition_offline() {
    let root = tempfile::tempdir().unwrap();
    let broker = start(root.path()).await;
    create_topic(&broker, "orders", 2).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    for partition in 0..2 {
        let produced = client
            .produce("orders", partition, values_batch("record", 3))
            .await;
        assert_eq!(produced, ErrorCode::None);
    }
    broker.shutdown().await.unwrap();
    let damaged_dir = root.path().join("orders-0");
    let id_file = damaged_dir.join(topic_id::FILE_NAME);
    let mut bytes = std::fs::read(&id_file).unwrap();
    bytes[14] ^= 0x40;
    std::fs::write(&id_file, &bytes).unwrap();
    let segment = damaged_dir.join(format!("{:020}.log", 0));
    let segment_bytes = std::fs::read(&segment).unwrap();

    let broker = start(root.path()).await;
    let damaged = TopicPartition::new("orders", 0);
    let reason = broker.broker().logs.offline_reason(&damaged).unwrap();
    assert!(
        reason.contains("topic id record") && reason.contains(&id_file.display().to_string()),
        "{reason}"
    );
    assert_eq!(
        broker.broker().logs.offline_partitions().len(),
        1,
        "{:?}",
        broker.broker().logs.offline_partitions()
    );
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(
        fetch_values(&mut client, "orders", 1).await,
        ["record-0", "record-1", "record-2"]
    );
    assert_eq!(
        client
            .produce("orders", 0, values_batch("refused", 1))
            .await,
        ErrorCode::StorageError
    );
    let recovered = broker
        .broker()
        .admin
        .recover_partition("orders", 0, RecoveryAction::Truncate)
        .await;
    assert!(
        matches!(recovered, Err(RecoverError::NotApplicable { .. })),
        "{recovered:?}"
    );
    broker.shutdown().await.unwrap();
    assert_eq!(std::fs::read(&id_file).unwrap(), bytes);
    assert_eq!(std::fs::read(&segment).unwrap(), segment_bytes);
}

/// A broker started with another node id than its data directory's refuses to start: a
/// non-zero exit and one error line naming both ids and the directory. The directory
/// keeps its identity, and the right node id starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_another_node_id_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let mut first = BrokerProcess::spawn(root.path(), &data_dir, &["--node-id", "1"]);
    wait_ready(first.addresses().await.http_listen).await;
    let identity = NodeIdentity::load(&data_dir).unwrap().unwrap();
    assert_eq!(identity.node_id, 1);
    assert!(identity.cluster_id.is_some());
    assert!(first.terminate().await.success(), "{}", first.log());

    let mut second = BrokerProcess::spawn(root.path(), &data_dir, &["--node-id", "2"]);
    let status = second.wait_exit().await;
    assert!(!status.success(), "{status}");
    let log = second.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    let error = errors[0];
    for expected in [
        "node 1".to_owned(),
        "node 2".to_owned(),
        data_dir.display().to_string(),
    ] {
        assert!(error.contains(&expected), "{expected} missing: {error}");
    }
    assert_eq!(NodeIdentity::load(&data_dir).unwrap(), Some(identity));

    let mut third = BrokerProcess::spawn(root.path(), &data_dir, &["--node-id", "1"]);
    wait_ready(third.addresses().await.http_listen).await;
    assert!(third.terminate().await.success(), "{}", third.log());
}

/// A data directory written by the pre-Raft release (see its README) opens with its
/// topics, records, config overrides and committed offsets intact, and gets its
/// identity and topic id records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_pre_raft_release_opens_intact() {
    let root = tempfile::tempdir().unwrap();
    copy_fixture(root.path());
    assert!(!root.path().join(node_identity::FILE_NAME).exists());

    let broker = start(root.path()).await;
    check_fixture_contents(broker.http_addr()).await;
    let mut client = NativeClient::connect(broker.client_addr()).await;
    assert_eq!(fetch_values(&mut client, "orders", 1).await.len(), 12);

    let identity = NodeIdentity::load(root.path()).unwrap().unwrap();
    assert_eq!(identity.node_id, 0);
    assert_eq!(
        identity.cluster_id.as_deref(),
        Some("4f60bcff-7ea3-4f55-b899-e84309634422")
    );
    let image = broker.broker().metadata();
    for topic in ["orders", "__consumer_offsets"] {
        let topic = image.topic(topic).unwrap();
        for partition in &topic.partitions {
            let directory = root
                .path()
                .join(format!("{}-{}", topic.name, partition.partition));
            assert_eq!(
                topic_id::load(&directory).unwrap(),
                Some(topic.topic_id),
                "{}",
                directory.display()
            );
        }
    }
    assert_eq!(
        image.topic("orders").unwrap().topic_id.to_string(),
        "86db57d6-e871-49bb-8c71-3ab22c992b7f"
    );
    broker.shutdown().await.unwrap();
}
