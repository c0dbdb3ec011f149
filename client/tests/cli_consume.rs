//! `fjord consume` against a real in-process broker on 127.0.0.1, through the built
//! binary: JSON output is lossless (binary bytes, repeated headers), and the command
//! says on stderr what happened when there is nothing to print (an offset past the end,
//! waiting for new records at the end).

use std::time::{Duration, Instant};

use fjord_broker::config::BrokerConfig;
use fjord_broker::{Broker, BrokerHandle};
use fjord_client::{
    Admin, Client, ClientConfig, Header, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use serde_json::json;

mod common;
use common::{FjordProcess, fjord, stdout, words};

/// Longest any wait in these tests may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

async fn start_broker(data_dir: &std::path::Path) -> BrokerHandle {
    Broker::start(BrokerConfig::for_tests(data_dir))
        .await
        .expect("broker starts")
}

async fn connect(broker: &BrokerHandle) -> Client {
    Client::connect(ClientConfig::new([broker.client_addr().to_string()]))
        .await
        .expect("client connects")
}

async fn create_topic(client: &Client, name: &str) {
    Admin::new(client)
        .create_topics(&[NewTopic::new(name, 1, 1)])
        .await
        .expect("topic is created");
}

/// A record whose value is not UTF-8 (`ff 00`) and which carries two headers of the
/// same name comes back from `--format json` byte for byte: the value in base64, both
/// headers in order, with partition, offset, timestamp and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_lossless() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, "binary").await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    let mut record = ProducerRecord::new("binary", &b"\xff\x00"[..])
        .with_key("k")
        .with_header("trace", "a")
        .with_header("trace", "b")
        .with_timestamp_ms(1_700_000_000_000);
    record.headers.push(Header {
        key: "none".into(),
        value: None,
    });
    producer.send(record).await.unwrap().await.unwrap();

    let bootstrap = broker.client_addr().to_string();
    let output = fjord(words(&format!(
        "--bootstrap {bootstrap} consume binary --from-beginning --format json"
    )))
    .await;
    let printed = stdout(&output);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "{printed}");
    let parsed: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        parsed,
        json!({
            "topic": "binary",
            "partition": 0,
            "offset": 0,
            "timestamp_ms": 1_700_000_000_000_i64,
            "key": {"encoding": "utf8", "data": "k"},
            "value": {"encoding": "base64", "data": "/wA="},
            "headers": [
                {"key": "trace", "value": {"encoding": "utf8", "data": "a"}},
                {"key": "trace", "value": {"encoding": "utf8", "data": "b"}},
                {"key": "none", "value": null},
            ],
        })
    );
    broker.shutdown().await.unwrap();
}

/// `--offset N` past the end prints no record and says so on stderr; reading to the
/// end says how many records were printed and why it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_past_the_end_is_reported() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, "short").await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    for index in 0..3 {
        drop(
            producer
                .send(ProducerRecord::new("short", format!("r{index}")))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    let bootstrap = broker.client_addr().to_string();

    let past = fjord(words(&format!(
        "--bootstrap {bootstrap} consume short --offset 50"
    )))
    .await;
    assert_eq!(stdout(&past), "");
    let said = String::from_utf8_lossy(&past.stderr);
    assert!(
        said.contains("partition 0 of 'short' ends at offset 3: offset 50 is past the end"),
        "{said}"
    );
    assert!(said.contains("0 records from 'short'"), "{said}");

    let all = fjord(words(&format!(
        "--bootstrap {bootstrap} consume short --from-beginning"
    )))
    .await;
    assert_eq!(stdout(&all), "r0\nr1\nr2\n");
    let said = String::from_utf8_lossy(&all.stderr);
    assert!(
        said.contains("3 records from 'short': reached the end"),
        "{said}"
    );
    broker.shutdown().await.unwrap();
}

/// Without --from-beginning or --offset, `fjord consume` waits for new records (and
/// says so) instead of exiting at once with nothing: a record produced after it
/// started is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_from_the_end_follows() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, "live").await;
    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    producer
        .send(ProducerRecord::new("live", "old"))
        .await
        .unwrap()
        .await
        .unwrap();
    let bootstrap = broker.client_addr().to_string();

    let mut child = FjordProcess::spawn(&words(&format!(
        "--bootstrap {bootstrap} consume live --max-messages 1"
    )));
    let started = Instant::now();
    let mut said = Vec::new();
    let mut found = false;
    while let Some(line) = child.next_stderr_line(PATIENCE).await {
        let done = line.contains("waiting for new records on 'live'");
        said.push(line);
        if done {
            found = true;
            break;
        }
    }
    assert!(found, "fjord consume never said it waits: {said:?}");
    println!("fjord consume waiting after {:?}", started.elapsed());

    producer
        .send(ProducerRecord::new("live", "new"))
        .await
        .unwrap()
        .await
        .unwrap();
    let (status, printed, _, rest) = child.finish_with_stdout(PATIENCE).await;
    assert_eq!(printed, "new\n");
    assert!(status.success(), "{status:?}");
    assert!(
        rest.iter()
            .any(|line| line.contains("1 record from 'live': reached --max-messages")),
        "{rest:?}"
    );
    println!("fjord consume done after {:?}", started.elapsed());
    broker.shutdown().await.unwrap();
}

/// Following ends cleanly on SIGTERM, saying so on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_ends_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let broker = start_broker(directory.path()).await;
    let client = connect(&broker).await;
    create_topic(&client, "quiet").await;
    let bootstrap = broker.client_addr().to_string();
    let mut child = FjordProcess::spawn(&words(&format!("--bootstrap {bootstrap} consume quiet")));
    let mut said: Vec<String> = Vec::new();
    while let Some(line) = child.next_stderr_line(PATIENCE).await {
        let waiting = line.contains("waiting for new records on 'quiet'");
        said.push(line);
        if waiting {
            child.guard.signal("TERM");
            break;
        }
    }
    let (status, _, _, rest) = child.finish_with_stdout(PATIENCE).await;
    said.extend(rest);
    assert!(status.success(), "{status:?}: {said:?}");
    assert!(
        said.iter()
            .any(|line| line.contains("0 records from 'quiet': interrupted")),
        "{said:?}"
    );
    broker.shutdown().await.unwrap();
}
