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

mod common;
use common::http_client::get;
use common::pre_raft::{check_fixture_contents, copy_fixture};

async fn start(data_dir: &Path) -> BrokerHandle {
    Broker::start(BrokerConfig::for_tests(data_dir))
        .await
        .unwrap()
}

/// Records applied to make the broker's image: a second migration would add every
/// record of the old log again.
fn records_applied(broker: &BrokerHandle) -> u64 {
    broker.broker().metadata().records_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_raft_data_directory_migrates_once() {
    let root = tempfile::tempdir().unwrap();
    copy_fixture(root.path());
    let metadata_dir = root.path().join(METADATA_DIR);
    let old_log = metadata_dir.join(FILE_NAME);
    let migrated_log = metadata_dir.join(MIGRATED_FILE_NAME);
    let old_bytes = std::fs::read(&old_log).unwrap();

    let broker = start(root.path()).await;
    let topic_id = check_fixture_contents(broker.http_addr()).await;
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

    // A plain restart: the quorum's files alone hold the metadata. Each shutdown and
    // start adds the same records: the controlled shutdown's fencing, the new
    // process's registration and unfencing, with the leadership changes they make.
    let broker = start(root.path()).await;
    assert_eq!(check_fixture_contents(broker.http_addr()).await, topic_id);
    let restarted = records_applied(&broker);
    let per_restart = restarted - migrated;
    broker.shutdown().await.unwrap();

    // A crash after the migration's proposal but before its rename leaves both: the
    // quorum already has the old log's cluster, so nothing is proposed again.
    std::fs::rename(&migrated_log, &old_log).unwrap();
    let broker = start(root.path()).await;
    assert_eq!(check_fixture_contents(broker.http_addr()).await, topic_id);
    let after_crash = records_applied(&broker);
    assert_eq!(
        after_crash - restarted,
        per_restart,
        "{migrated}, {restarted} then {after_crash}: a restart's records and no more"
    );
    assert!(!old_log.exists());
    assert_eq!(std::fs::read(&migrated_log).unwrap(), old_bytes);
    broker.shutdown().await.unwrap();
}
