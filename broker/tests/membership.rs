//! Broker membership on the real `fjord-broker` binary: a single broker registers with
//! an incarnation and is unfenced before it serves; each restart (graceful or after
//! kill -9) is a new incarnation with a greater broker epoch, serving its partitions
//! again at once; SIGTERM runs a controlled shutdown and still exits 0.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use common::blocking_client::{Client, create_topic, http, values, values_batch, wait_ready};
use common::{Bound, BrokerProcess};
use fjord_protocol::ErrorCode;
use serde_json::{Value, json};

fn start(work_dir: &Path, data_dir: &Path) -> (BrokerProcess, Bound) {
    let started = Instant::now();
    let mut broker = BrokerProcess::spawn(work_dir, data_dir, &[]);
    let bound = broker.addresses_blocking();
    wait_ready(bound.http_listen);
    println!("broker ready {:?} after its start", started.elapsed());
    (broker, bound)
}

/// This broker's entry in `GET /v1/cluster`.
fn registration(http_addr: SocketAddr) -> Value {
    let (status, cluster) = http(http_addr, "GET", "/v1/cluster", None);
    assert_eq!(status, 200, "{cluster}");
    let brokers = cluster["brokers"].as_array().expect("brokers").clone();
    assert_eq!(brokers.len(), 1, "{cluster}");
    brokers[0].clone()
}

fn epoch(broker: &Value) -> u64 {
    broker["broker_epoch"].as_u64().expect("broker_epoch")
}

fn incarnation(broker: &Value) -> String {
    let incarnation = broker["incarnation_id"].as_str().expect("incarnation_id");
    assert_ne!(incarnation, uuid_nil(), "{broker}");
    incarnation.to_owned()
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}

fn produce_one(listen: SocketAddr, value: &str) {
    let mut client = Client::connect(listen);
    assert_eq!(
        client.produce("orders", 0, values_batch(value, 1)),
        ErrorCode::None
    );
}

#[test]
fn restarts_are_new_incarnations_and_sigterm_shuts_down_in_control() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let (mut broker, bound) = start(dir.path(), &data_dir);
    let first = registration(bound.http_listen);
    assert_eq!(first["fenced"], json!(false), "{first}");
    assert!(epoch(&first) >= 1, "{first}");
    let first_incarnation = incarnation(&first);
    create_topic(bound.http_listen, "orders", 1, json!({}));
    produce_one(bound.listen, "before-sigterm");

    let terminated = Instant::now();
    let status = broker.terminate_blocking();
    println!("SIGTERM to exit: {:?}", terminated.elapsed());
    assert!(status.success(), "{status}; log:\n{}", broker.log());
    let log = broker.log();
    assert!(log.contains("controlled shutdown done"), "{log}");

    // A graceful restart: a new process, registered anew and leading its partition.
    let (mut broker, bound) = start(dir.path(), &data_dir);
    let second = registration(bound.http_listen);
    assert_eq!(second["fenced"], json!(false), "{second}");
    assert!(epoch(&second) > epoch(&first), "{first} then {second}");
    assert_ne!(incarnation(&second), first_incarnation);
    produce_one(bound.listen, "after-sigterm");

    // After kill -9 the old process's session is not waited for either: the node is
    // its own controller, so its previous process is known to be gone.
    broker.kill();
    let (_broker, bound) = start(dir.path(), &data_dir);
    let third = registration(bound.http_listen);
    assert_eq!(third["fenced"], json!(false), "{third}");
    assert!(epoch(&third) > epoch(&second), "{second} then {third}");
    produce_one(bound.listen, "after-kill");
    let mut client = Client::connect(bound.listen);
    let fetched = client.fetch("orders", 0, 0);
    assert_eq!(fetched.error_code, ErrorCode::None);
    let records: Vec<String> = values(fetched.records)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(
        records,
        ["before-sigterm-0", "after-sigterm-0", "after-kill-0"]
    );
}

/// A heartbeat interval the session timeout does not exceed twice is refused at start
/// with a one-line error naming the setting, exit status 2.
#[test]
fn a_session_timeout_too_short_for_the_heartbeats_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = common::broker_command();
    command.args([
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--broker-heartbeat-interval-ms",
        "3000",
        "--broker-session-timeout-ms",
        "6000",
    ]);
    let output = common::run_to_end(command).unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("broker_session_timeout_ms"), "{stderr}");
}
