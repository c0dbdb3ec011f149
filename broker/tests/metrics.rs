//! `/metrics` after real traffic on the native protocol, against an in-process broker.
//!
//! A test binary of its own with a single test: the metrics recorder is process-wide,
//! so any other test in the same binary would add its traffic to the counters read
//! here. Counters are compared before and after, exactly.

use std::path::Path;
use std::time::Duration;

use fjord_broker::config::BrokerConfig;
use fjord_broker::metrics::{METRICS, MetricKind};
use fjord_broker::{Broker, BrokerHandle};
use fjord_protocol::ErrorCode;
use fjord_protocol::batch::RecordBatches;
use serde_json::json;
use tokio::time::Instant;

mod common;
use common::http_client::*;
use common::native_client::*;

async fn start(dir: &Path) -> BrokerHandle {
    let mut config = BrokerConfig::for_tests(dir);
    config.log_retention_check_interval_ms = 50;
    Broker::start(config).await.unwrap()
}

/// Every log's flush count, summed: what `fjord_storage_fsyncs_total` counts.
fn flushes(broker: &BrokerHandle) -> u64 {
    broker
        .broker()
        .logs
        .logs()
        .iter()
        .map(|(_, log)| log.flush_count())
        .sum()
}

/// After real produce, fetch, bad requests, segment rolls, retention and a group
/// commit on the native protocol, `/metrics` has every metric in the table with its
/// HELP and TYPE and histograms up to +Inf; every counter moved by exactly what the
/// test did; the partition and group gauges equal the broker's state; uptime lies
/// within what the test observed; and a deleted topic's series are gone.
/// Series of each follower of a partition this broker leads: a single broker has none
/// (`replication.rs` checks them on a cluster).
const FOLLOWER_METRICS: &[&str] = &[
    "fjord_replication_follower_lag",
    "fjord_replication_follower_lag_seconds",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let before_start = Instant::now();
    let broker = start(dir.path()).await;
    let started = Instant::now();
    let addr = broker.http_addr();
    let response = send_json(
        addr,
        "POST",
        "/v1/topics",
        &json!({"name": "metered", "config": {
            "segment.bytes": 1024,
            "max.message.bytes": 1024,
            "retention.bytes": 2048,
        }}),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let (_, _, log) = broker.broker().leader_log_now("metered", 0).unwrap();
    let flushes_before = flushes(&broker);
    let before = scrape(addr).await;

    let mut client = NativeClient::connect(broker.client_addr()).await;
    let batches = 12;
    let mut produced_bytes = 0;
    for index in 0..batches {
        let records = values_batch(&format!("metered-{index:02}-{}", "x".repeat(100)), 2);
        produced_bytes += records.len();
        assert_eq!(client.produce("metered", 0, records).await, ErrorCode::None);
    }
    assert_eq!(
        client.produce("metered", 7, values_batch("lost", 1)).await,
        ErrorCode::UnknownTopicOrPartition
    );
    // A request whose body does not decode: a request-level error.
    client
        .send_raw(fjord_protocol::ApiKey::Produce.code(), |out| {
            out.extend_from_slice(&[0, 1, 0xff, 0xff])
        })
        .await;
    assert_eq!(
        client.receive().await.0.error_code,
        ErrorCode::InvalidRequest
    );
    // Retention runs in the background; then it is driven to its fixed point, so
    // that nothing changes the log while the gauges are compared with it.
    let deadline = Instant::now() + TIMEOUT;
    while log.log_start_offset() == 0 {
        assert!(Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while log.apply_retention().unwrap() > 0 {}
    let fetched = client.fetch("metered", 0, log.log_start_offset()).await;
    assert_eq!(fetched.error_code, ErrorCode::None);
    assert!(!fetched.records.is_empty());
    let fetched_records: i64 = RecordBatches::new(fetched.records.clone())
        .map(|batch| i64::from(batch.unwrap().record_count()))
        .sum();
    // A consumer group member that has committed two records short of the end.
    let member = client.join_group("metering", "metered").await;
    let committed = log.high_watermark() - 2;
    assert_eq!(
        client
            .commit("metering", &member, "metered", 0, committed)
            .await,
        ErrorCode::None
    );

    // The broker counts sent bytes and fsyncs just after the fact: wait until the
    // counters it is still updating have caught up with what the test saw.
    let deadline = Instant::now() + TIMEOUT;
    let metrics = loop {
        let scrape_started = Instant::now();
        let metrics = scrape(addr).await;
        let delta = |name: &str| {
            metrics.value(name, &[]).unwrap_or(0.0) - before.value(name, &[]).unwrap_or(0.0)
        };
        let caught_up = delta("fjord_network_sent_bytes_total") == client.bytes_received as f64
            && delta("fjord_storage_fsyncs_total") == (flushes(&broker) - flushes_before) as f64;
        if caught_up {
            break (metrics, scrape_started, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "sent bytes {} (client read {}), fsyncs {} (logs flushed {})",
            delta("fjord_network_sent_bytes_total"),
            client.bytes_received,
            delta("fjord_storage_fsyncs_total"),
            flushes(&broker) - flushes_before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (metrics, scrape_started, scrape_ended) = metrics;

    for metric in METRICS {
        if FOLLOWER_METRICS.contains(&metric.name) {
            continue;
        }
        assert!(
            metrics.help.contains_key(metric.name),
            "{} has no HELP",
            metric.name
        );
        assert_eq!(
            metrics.types.get(metric.name).map(String::as_str),
            Some(metric.kind.name()),
            "{}",
            metric.name
        );
        match metric.kind {
            MetricKind::Histogram => {
                for suffix in ["_sum", "_count"] {
                    let series = format!("{}{suffix}", metric.name);
                    assert!(metrics.has_series(&series, ""), "no {series}");
                }
                assert!(
                    metrics.has_series(&format!("{}_bucket", metric.name), "le=\"+Inf\""),
                    "{} has no +Inf bucket",
                    metric.name
                );
            }
            MetricKind::Counter | MetricKind::Gauge => {
                assert!(metrics.has_series(metric.name, ""), "no {}", metric.name)
            }
        }
    }
    let delta = |name: &str, labels: &[&str]| {
        metrics
            .value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
            - before.value(name, labels).unwrap_or(0.0)
    };
    let produce = ["api=\"produce\""];
    // 12 stored, 1 to a missing partition, 1 undecodable.
    assert_eq!(delta("fjord_requests_total", &produce), 14.0);
    // Durations are recorded for requests that decoded (server/connection.rs returns
    // before timing an undecodable one).
    assert_eq!(
        delta("fjord_request_duration_seconds_count", &produce),
        13.0
    );
    assert_eq!(delta("fjord_requests_total", &["api=\"fetch\""]), 1.0);
    assert_eq!(
        delta(
            "fjord_request_errors_total",
            &["api=\"produce\"", "code=\"INVALID_REQUEST\""]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "fjord_produce_partition_errors_total",
            &["code=\"UNKNOWN_TOPIC_OR_PARTITION\""]
        ),
        1.0
    );
    assert_eq!(
        delta("fjord_produce_records_total", &[]),
        2.0 * batches as f64
    );
    assert_eq!(
        delta("fjord_produce_bytes_total", &[]),
        produced_bytes as f64
    );
    assert_eq!(
        delta("fjord_fetch_records_total", &[]),
        fetched_records as f64
    );
    assert_eq!(
        delta("fjord_fetch_bytes_total", &[]),
        fetched.records.len() as f64
    );
    // Every segment but the first was rolled into; retention deleted the missing ones.
    let deleted = delta("fjord_storage_retention_deleted_segments_total", &[]);
    assert!(deleted >= 1.0);
    assert_eq!(
        delta("fjord_storage_segment_rolls_total", &[]),
        (log.segment_count() - 1) as f64 + deleted
    );
    assert_eq!(
        delta("fjord_storage_fsync_duration_seconds_count", &[]),
        delta("fjord_storage_fsyncs_total", &[])
    );
    assert_eq!(delta("fjord_connections_accepted_total", &[]), 1.0);
    assert_eq!(delta("fjord_connections_active", &[]), 1.0);
    assert_eq!(delta("fjord_connections_rejected_total", &[]), 0.0);
    assert_eq!(
        delta("fjord_network_received_bytes_total", &[]),
        client.bytes_sent as f64
    );
    // A single broker leads its quorum of one, which has applied every metadata change
    // the test made; it has no other voter to lag behind.
    assert_eq!(metrics.value("fjord_metadata_is_leader", &[]), Some(1.0));
    // It registered itself unfenced.
    assert_eq!(metrics.value("fjord_brokers_fenced", &[]), Some(0.0));
    assert!(metrics.value("fjord_metadata_quorum_term", &[]).unwrap() >= 1.0);
    let applied = broker.broker().metadata().applied_position().unwrap().index;
    assert_eq!(
        metrics.value("fjord_metadata_applied_index", &[]),
        Some(applied as f64)
    );
    // A quorum of one applies what it commits before it answers.
    assert_eq!(metrics.value("fjord_metadata_apply_lag", &[]), Some(0.0));
    let uptime = metrics.value("fjord_process_uptime_seconds", &[]).unwrap();
    let lowest = scrape_started.duration_since(started).as_secs_f64();
    let highest = scrape_ended.duration_since(before_start).as_secs_f64();
    assert!(
        lowest - 0.001 <= uptime && uptime <= highest + 0.001,
        "uptime {uptime} s outside [{lowest}, {highest}]"
    );
    assert_eq!(
        metrics.value(
            "fjord_group_rebalances_total",
            &["group=\"metering\"", "reason=\"member_joined\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("fjord_group_members", &["group=\"metering\""]),
        Some(1.0)
    );
    let group_partition = ["group=\"metering\"", "topic=\"metered\"", "partition=\"0\""];
    assert_eq!(
        metrics.value("fjord_group_lag", &group_partition),
        Some(2.0)
    );
    let partition = ["topic=\"metered\"", "partition=\"0\""];
    let gauge = |name: &str| {
        metrics
            .value(name, &partition)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(
        gauge("fjord_partition_log_end_offset"),
        log.log_end_offset() as f64
    );
    assert_eq!(
        gauge("fjord_partition_high_watermark"),
        log.high_watermark() as f64
    );
    assert_eq!(
        gauge("fjord_partition_log_start_offset"),
        log.log_start_offset() as f64
    );
    assert!(gauge("fjord_partition_log_start_offset") > 0.0);
    assert_eq!(gauge("fjord_partition_size_bytes"), log.size_bytes() as f64);
    assert_eq!(log.log_end_offset(), 2 * batches);

    // Scrape-time gauges follow the broker: a deleted topic's series go with it.
    drop(log);
    assert_eq!(
        http(addr, "DELETE", "/v1/topics/metered", None)
            .await
            .status,
        204
    );
    let metrics = scrape(addr).await;
    assert!(!metrics.has_series("fjord_partition_log_end_offset", "topic=\"metered\""));
    assert!(!metrics.has_series("fjord_group_lag", "topic=\"metered\""));
    assert!(metrics.types.contains_key("fjord_requests_total"));
    broker.shutdown().await.unwrap();
}
