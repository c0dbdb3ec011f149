//! Hostile and careless clients against the real `fjord-broker` binary, with the
//! process's resident memory measured from outside (`VmRSS` in `/proc/PID/status`)
//! while they run: unread fetch responses, many readers at once, thousands of idle
//! connections, and SIGTERM with fetches parked in long-polls.
//!
//! Memory bounds are generous (a debug build, a loaded machine); the figures measured
//! are printed, so `cargo test -- --nocapture` shows them.

mod common;
use common::raw_client::{RawClient, now_ms};

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

/// A `fjord-broker` process (through the guarded helper in `tests/common`: killed and
/// reaped when dropped, also when a test fails) and the addresses it bound.
struct BrokerProcess {
    process: common::BrokerProcess,
    client_addr: SocketAddr,
    http_addr: SocketAddr,
}

impl BrokerProcess {
    /// Starts the binary on port 0 with `args` added, its output going to a log file
    /// in `dir`, and waits until it reports its bound addresses (it accepts
    /// connections from then on).
    async fn start(dir: &Path, args: &[&str]) -> Self {
        let mut command = common::broker_command();
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--internal-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .env("NO_COLOR", "1");
        let mut process = common::BrokerProcess::spawn_command(dir, command);
        let bound = process.addresses().await;
        Self {
            process,
            client_addr: bound.listen,
            http_addr: bound.http_listen,
        }
    }

    /// Resident memory of the broker process, in bytes.
    fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .expect("VmRSS in /proc/PID/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|value| value.parse().ok())
            .expect("VmRSS value in kB");
        kib * 1024
    }

    /// What a failed memory check needs to tell an allocator that kept memory from
    /// data still held: the kinds of resident memory, the threads, and the broker's
    /// open connections.
    async fn memory_report(&self) -> String {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        let kinds: Vec<&str> = status
            .lines()
            .filter(|line| line.starts_with("Rss") || line.starts_with("Threads:"))
            .collect();
        let connections = self.metric("fjord_connections_active").await;
        format!(
            "{}; connections still open: {connections}",
            kinds.join(", ").replace('\t', " ")
        )
    }

    fn log_text(&self) -> String {
        self.process.log()
    }

    /// Samples the resident memory every 100 ms for `window`, stopping early above
    /// `limit`; returns the highest sample.
    async fn peak_rss(&self, window: Duration, limit: u64) -> u64 {
        let started = Instant::now();
        let mut peak = 0;
        while started.elapsed() < window {
            peak = peak.max(self.rss_bytes());
            if peak > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    }

    /// Waits (up to about three minutes) until the resident memory is at most `limit`;
    /// returns the last sample. The broker gives freed memory back every 10 s (see
    /// `freed_memory.rs`); the margin is for a machine whose cores are all busy, where
    /// a worker may not run for a while.
    async fn rss_settles_below(&self, limit: u64) -> u64 {
        let mut rss = self.rss_bytes();
        for _ in 0..1_800 {
            if rss <= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            rss = self.rss_bytes();
        }
        rss
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        self.process.send_terminate();
    }

    /// Waits (up to 30 s) for the process to exit; `None` if it did not.
    async fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        for _ in 0..300 {
            if let Some(status) = self.process.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// `GET path` on a new HTTP connection: the status code and the body.
    async fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.http_addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut text))
            .await
            .unwrap_or_else(|_| panic!("no answer to GET {path} within 20 s"))
            .unwrap();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        (status, text)
    }

    /// The value of a counter in `/metrics` with the given name and labels text
    /// (e.g. `fjord_requests_total{api="Fetch"}`), summed over matching lines.
    async fn metric(&self, prefix: &str) -> f64 {
        let mut stream = TcpStream::connect(self.http_addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut text))
            .await
            .expect("metrics within 20 s")
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn produce_request(topic: &str, acks: Acks, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: acks.code(),
        timeout_ms: 30_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition: 0,
                current_leader_epoch: -1,
                records,
            }],
        }],
    }
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32, max_bytes: i32) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes: 1,
        max_bytes,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: offset,
                partition_max_bytes: max_bytes,
            }],
        }],
    }
}

/// Fills partition 0 of `topic` with `count` batches of one record of `value_bytes`.
async fn fill(client: &mut RawClient, topic: &str, count: usize, value_bytes: usize) {
    let value: Vec<u8> = (0..value_bytes).map(|index| (index % 251) as u8).collect();
    for _ in 0..count {
        let mut builder = BatchBuilder::new();
        builder.push(&RecordInput {
            key: None,
            value: Some(&value),
            timestamp_ms: now_ms(),
            ..Default::default()
        });
        let response: ProduceResponse = client
            .call(
                ApiKey::Produce,
                &produce_request(topic, Acks::Leader, builder.finish()),
            )
            .await;
        assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    }
}

/// Clients that ask for far more than they read: four connections each pipelining 64
/// fetches of 32 MiB and never reading a byte, and fifty more each with one 32 MiB
/// fetch, all from the start of a 64 MiB partition. The broker's memory stays bounded
/// by its response budget (not 8 GiB of responses), comes back down once they are
/// gone, and an ordinary consumer is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_fetch_responses_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        dir.path(),
        &[
            "--log-durability",
            "interval",
            // A client that reads nothing for a second is given up on, so that the
            // ordinary consumer below does not wait long for response memory.
            "--response-write-timeout-ms",
            "1000",
        ],
    )
    .await;
    let mut admin = RawClient::connect(broker.client_addr).await;
    admin.create_topic("big").await;
    fill(&mut admin, "big", 64, MIB as usize).await;
    let baseline = broker.rss_bytes();

    let mut hostile = Vec::new();
    for _ in 0..4 {
        let mut client = RawClient::connect(broker.client_addr).await;
        let mut out = BytesMut::new();
        for _ in 0..64 {
            out.extend_from_slice(
                &client
                    .encode(ApiKey::Fetch, &fetch_request("big", 0, 0, 32 << 20))
                    .1,
            );
        }
        client.stream.write_all(&out).await.unwrap();
        hostile.push(client);
    }
    for _ in 0..50 {
        let mut client = RawClient::connect(broker.client_addr).await;
        client
            .send(ApiKey::Fetch, &fetch_request("big", 0, 0, 32 << 20))
            .await;
        hostile.push(client);
    }
    // Default budgets: 256 MiB of responses, 256 MiB of requests (these requests are
    // tiny). Anything near the 8 GiB asked for means no bound.
    let limit = baseline + 1024 * MIB;
    let peak = broker.peak_rss(Duration::from_secs(10), limit).await;
    println!(
        "unread fetches: baseline {:.0} MiB, peak {:.0} MiB over 10 s (limit {:.0} MiB)",
        mib(baseline),
        mib(peak),
        mib(limit)
    );
    assert!(peak <= limit, "broker memory grew to {:.0} MiB", mib(peak));

    // An ordinary consumer is served meanwhile (its fetch may wait its turn for
    // response memory, well within the request timeout).
    let mut consumer = RawClient::connect(broker.client_addr).await;
    let response: FetchResponse = consumer
        .call(ApiKey::Fetch, &fetch_request("big", 0, 0, 1 << 20))
        .await;
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    assert!(!response.topics[0].partitions[0].records.is_empty());

    drop(hostile);
    let settled = broker.rss_settles_below(baseline + 128 * MIB).await;
    println!(
        "after the hostile connections closed: {:.0} MiB (baseline {:.0} MiB)",
        mib(settled),
        mib(baseline)
    );
    assert!(
        settled <= baseline + 128 * MIB,
        "memory not given back: {:.0} MiB ({})",
        mib(settled),
        broker.memory_report().await
    );
}

/// Two thousand idle connections (each has sent one request) cost little memory each,
/// and the memory goes back when they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_memory() {
    const CONNECTIONS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).await;
    // Warm up the runtime's and the allocator's own structures first.
    let mut warm = RawClient::connect(broker.client_addr).await;
    let _: ApiVersionsResponse = warm.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
    let baseline = broker.rss_bytes();
    let mut idle = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut client = RawClient::connect(broker.client_addr).await;
        let _: ApiVersionsResponse = client.call(ApiKey::ApiVersions, &ApiVersionsRequest).await;
        idle.push(client);
    }
    let loaded = broker.rss_bytes();
    let per_connection = loaded.saturating_sub(baseline) / CONNECTIONS;
    println!(
        "idle connections: baseline {:.1} MiB, with {CONNECTIONS} idle {:.1} MiB, {} bytes each",
        mib(baseline),
        mib(loaded),
        per_connection
    );
    assert!(
        per_connection <= 32 * 1024,
        "{per_connection} bytes per idle connection"
    );
    drop(idle);
    let settled = broker.rss_settles_below(baseline + 16 * MIB).await;
    println!("after they closed: {:.1} MiB", mib(settled));
    assert!(settled <= baseline + 16 * MIB);
}

/// SIGTERM while five hundred fetches are parked in 10-minute long-polls: every fetch is
/// answered (empty, no error) instead of waiting out its long-poll, the broker exits 0
/// without running into its shutdown timeout, and the test prints how long it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_parked_fetches() {
    const PARKED: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(
        dir.path(),
        &[
            "--shutdown-timeout-ms",
            "60000",
            "--request-timeout-ms",
            "600000",
        ],
    )
    .await;
    let mut admin = RawClient::connect(broker.client_addr).await;
    admin.create_topic("quiet").await;
    let fetches_before = broker.metric("fjord_requests_total{api=\"fetch\"}").await;
    let mut parked = Vec::new();
    for _ in 0..PARKED {
        let mut client = RawClient::connect(broker.client_addr).await;
        let correlation_id = client
            .send(ApiKey::Fetch, &fetch_request("quiet", 0, 600_000, 1 << 20))
            .await;
        parked.push((client, correlation_id));
    }
    // Every fetch has reached its handler before the signal.
    let mut counted = 0.0;
    for _ in 0..300 {
        counted = broker.metric("fjord_requests_total{api=\"fetch\"}").await - fetches_before;
        if counted >= PARKED as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        counted >= PARKED as f64,
        "only {counted} fetches reached the broker"
    );

    let signalled = Instant::now();
    broker.terminate();
    for (client, correlation_id) in &mut parked {
        let (header, body) = client
            .receive()
            .await
            .expect("the parked fetch got no response");
        assert_eq!(header.correlation_id, *correlation_id);
        assert_eq!(header.error_code, ErrorCode::None);
        let response = FetchResponse::decode_body(body).unwrap();
        assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
        assert!(response.topics[0].partitions[0].records.is_empty());
    }
    let answered = signalled.elapsed();
    let status = broker
        .wait_exit()
        .await
        .expect("fjord-broker did not exit within 30 s");
    println!(
        "SIGTERM with {PARKED} parked fetches: all answered after {answered:?}, exited after {:?}",
        signalled.elapsed()
    );
    assert!(status.success(), "exit status {status}");
    let log = broker.log_text();
    assert!(log.contains("broker stopped cleanly"), "{log}");
    assert!(!log.contains("shutdown timeout"), "{log}");
}

/// Three hundred idle HTTP connections (more than the API serves at once) do not
/// starve the health probes: `/healthz` and `/readyz` answer at once on connections
/// kept for them (which serve nothing else), and the idle connections are closed after
/// the short idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_do_not_starve_health_probes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &[]).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(broker.http_addr).await.unwrap());
    }
    let (status, body) = broker.http_get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = broker.http_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = broker.http_get("/v1/topics").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too_many_connections"), "{body}");
    // Idle connections are closed by the broker (the first one soonest).
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(30), idle[0].read(&mut byte))
        .await
        .expect("an idle HTTP connection must be closed within 30 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(idle);
    // Once they are gone, every route is served again.
    let mut status = 0;
    for _ in 0..300 {
        status = broker.http_get("/v1/topics").await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

/// Fifty consumers each reading a 256 MiB partition from the start, in 32 MiB fetches,
/// all at once: the broker's memory stays within its response budget (not 50 × 32 MiB),
/// and once they are done it goes back to the operating system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_readers_from_the_start_share_the_response_budget() {
    const READERS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(dir.path(), &["--log-durability", "interval"]).await;
    let mut admin = RawClient::connect(broker.client_addr).await;
    admin.create_topic("history").await;
    fill(&mut admin, "history", 64, 4 * MIB as usize).await;
    let baseline = broker.rss_bytes();
    let addr = broker.client_addr;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            let mut offset = 0;
            let mut bytes = 0;
            for _ in 0..1_000 {
                let response: FetchResponse = client
                    .call(
                        ApiKey::Fetch,
                        &fetch_request("history", offset, 0, 32 << 20),
                    )
                    .await;
                let partition = &response.topics[0].partitions[0];
                assert_eq!(partition.error_code, ErrorCode::None);
                if partition.records.is_empty() {
                    break;
                }
                bytes += partition.records.len();
                for batch in fjord_protocol::batch::RecordBatches::new(partition.records.clone()) {
                    let batch = batch.unwrap();
                    offset = batch.base_offset() + i64::from(batch.record_count());
                }
            }
            bytes
        }));
    }
    let mut peak = 0;
    for _ in 0..6_000 {
        peak = peak.max(broker.rss_bytes());
        if readers.iter().all(|reader| reader.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in readers {
        let bytes = reader.await.unwrap();
        assert!(
            bytes > 64 * MIB as usize,
            "a reader read only {bytes} bytes"
        );
    }
    let finished = std::time::Instant::now();
    let settled = broker.rss_settles_below(baseline + 64 * MIB).await;
    println!(
        "{READERS} readers of 256 MiB: baseline {:.0} MiB, peak {:.0} MiB, {:.0} MiB {:.1} s after they finished",
        mib(baseline),
        mib(peak),
        mib(settled),
        finished.elapsed().as_secs_f64()
    );
    assert!(peak <= baseline + 1024 * MIB, "peak {:.0} MiB", mib(peak));
    assert!(
        settled <= baseline + 64 * MIB,
        "memory not given back: {:.0} MiB ({})",
        mib(settled),
        broker.memory_report().await
    );
}
