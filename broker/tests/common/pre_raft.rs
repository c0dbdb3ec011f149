//! The data directory written by the pre-Raft release (`tests/fixtures/pre-raft-data-dir`,
//! see its README), and what it must still hold once a broker has opened it.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::http_client::get;

/// Copies the directory tree `from` into `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
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

/// Copies the fixture into `to`.
pub fn copy_fixture(to: &Path) {
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-raft-data-dir"),
        to,
    );
}

/// What the fixture's metadata and data must still say, checked over HTTP: `orders`
/// with 18, 12 and 0 records and its `retention.ms` override, no `audit`, and group
/// `billing`'s committed offsets. Returns the topic id of `orders`.
pub async fn check_fixture_contents(http: SocketAddr) -> String {
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
