//! A data directory written by the pre-Raft release (`tests/fixtures/pre-raft-data-dir`,
//! see its README) migrates into the metadata quorum on the first start: its old
//! metadata log becomes the quorum's first entry and is renamed, and every later start,
//! including one after a crash between the two, finds the same metadata without
//! migrating again.

use std::path::Path;

use fjord_broker::config::BrokerConfig;
use fjord_broker::metadata::log::{FILE_NAME, METADATA_DIR};
use fjord_broker::metadata::migration::MIGRATED_FILE_NAME;
use fjord_broker::{Broker, BrokerHandle};
use serde_json::Value;

mod common;
use common::http_client::get;

/// Copies the directory tree `from` into `to` (created).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn start(data_dir: &Path) -> BrokerHandle {
    Broker::start(BrokerConfig::for_tests(data_dir))
        .await
        .unwrap()
}

/// What the fixture's metadata and data must still say, checked over HTTP: `orders`
/// with 18, 12 and 0 records and its `retention.ms` override, no `audit`, and group
/// `billing`'s committed offsets. Returns the topic id of `orders`.
async fn check_fixture_contents(broker: &BrokerHandle) -> String {
    let http = broker.http_addr();
    let topics = get(http, "/v1/topics").await.json();
    let mut names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|topic| topic["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["__consumer_offsets", "orders"], "{topics}");

    let orders = get(http, "/v1/topics/orders").await.json();
    let ends: Vec<i64> = orders["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|partition| partition["log_end_offset"].as_i64().unwrap())
        .collect();
    assert_eq!(ends, [18, 12, 0], "{orders}");
    assert_eq!(
        orders["config"]["retention.ms"],
        Value::from(604_800_000),
        "{orders}"
    );

    let billing = get(http, "/v1/groups/billing").await.json();
    let mut committed: Vec<(String, i64, i64)> = billing["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|offset| {
            (
                offset["topic"].as_str().unwrap().to_owned(),
                offset["partition"].as_i64().unwrap(),
                offset["committed_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    committed.sort();
    assert_eq!(
        committed,
        [
            ("orders".to_owned(), 0, 18),
            ("orders".to_owned(), 1, 2),
            ("orders".to_owned(), 2, 0)
        ],
        "{billing}"
    );
    orders["topic_id"].as_str().unwrap().to_owned()
}

/// Records applied to make the broker's image: a second migration would add every
/// record of the old log again.
fn records_applied(broker: &BrokerHandle) -> u64 {
    broker.broker().metadata().records_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_raft_data_directory_migrates_once() {
    let root = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-raft-data-dir");
    copy_tree(&fixture, root.path());
    let metadata_dir = root.path().join(METADATA_DIR);
    let old_log = metadata_dir.join(FILE_NAME);
    let migrated_log = metadata_dir.join(MIGRATED_FILE_NAME);
    let old_bytes = std::fs::read(&old_log).unwrap();

    let broker = start(root.path()).await;
    let topic_id = check_fixture_contents(&broker).await;
    assert_eq!(topic_id, "86db57d6-e871-49bb-8c71-3ab22c992b7f");
    let cluster = get(broker.http_addr(), "/v1/cluster").await.json();
    assert_eq!(
        cluster["cluster_id"], "4f60bcff-7ea3-4f55-b899-e84309634422",
        "{cluster}"
    );
    assert!(!old_log.exists());
    assert_eq!(std::fs::read(&migrated_log).unwrap(), old_bytes);
    for file in ["raft.log", "raft.vote"] {
        assert!(metadata_dir.join(file).is_file(), "{file}");
    }
    let migrated = records_applied(&broker);
    broker.shutdown().await.unwrap();

    // A plain restart: the quorum's files alone hold the metadata. The broker's client
    // port (chosen by the system) may differ, which registers it again: one record.
    let broker = start(root.path()).await;
    assert_eq!(check_fixture_contents(&broker).await, topic_id);
    let restarted = records_applied(&broker);
    assert!(restarted - migrated <= 1, "{migrated} then {restarted}");
    broker.shutdown().await.unwrap();

    // A crash after the migration's proposal but before its rename leaves both: the
    // quorum already has the old log's cluster, so nothing is proposed again.
    std::fs::rename(&migrated_log, &old_log).unwrap();
    let broker = start(root.path()).await;
    assert_eq!(check_fixture_contents(&broker).await, topic_id);
    let after_crash = records_applied(&broker);
    assert!(
        after_crash - restarted <= 1,
        "{restarted} then {after_crash}"
    );
    assert!(!old_log.exists());
    assert_eq!(std::fs::read(&migrated_log).unwrap(), old_bytes);
    broker.shutdown().await.unwrap();
}
