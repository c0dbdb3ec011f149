//! A consumer actor: fetches its partitions from offset 0, counting records from the
//! batch headers (no per-record decoding) except in the latency scenario, where the
//! first value of each batch carries the batch's intended send time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::bail;
use fjord_protocol::ApiKey;
use fjord_protocol::batch::RecordBatches;
use fjord_protocol::messages::{FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use indicatif::ProgressBar;

use super::report::RoleReport;
use super::wire;

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub addr: SocketAddr,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// Set when no more messages will be produced; the consumer then stops once it has
    /// reached every partition's high watermark.
    pub producers_done: Arc<AtomicBool>,
    pub message_size: usize,
    pub read_stamps: bool,
    pub epoch: Instant,
    pub progress: ProgressBar,
}

pub async fn run(plan: ConsumerPlan) -> anyhow::Result<RoleReport> {
    let mut connection = wire::connect(plan.addr).await?;
    let mut report = RoleReport::new(
        "consumer",
        if plan.read_stamps {
            "end to end"
        } else {
            "per fetch"
        },
    );
    report.actors = 1;
    let mut positions: BTreeMap<i32, i64> = plan
        .partitions
        .iter()
        .map(|partition| (*partition, 0))
        .collect();
    let mut high_watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    // Whether the last fetch started after the producers were done, so that its high
    // watermarks cover everything they produced.
    let mut fetched_after_done = false;
    let started = Instant::now();
    loop {
        let done = plan.producers_done.load(Ordering::Acquire);
        let caught_up = positions.iter().all(|(partition, offset)| {
            high_watermarks
                .get(partition)
                .is_some_and(|end| offset >= end)
        });
        if fetched_after_done && caught_up {
            break;
        }
        fetched_after_done = done;
        let request = FetchRequest {
            replica_id: -1,
            max_wait_ms: 100,
            min_bytes: 1,
            max_bytes: 64 << 20,
            topics: vec![FetchTopic {
                name: plan.topic.clone(),
                partitions: positions
                    .iter()
                    .map(|(partition, offset)| FetchPartition {
                        partition: *partition,
                        current_leader_epoch: -1,
                        fetch_offset: *offset,
                        partition_max_bytes: 16 << 20,
                    })
                    .collect(),
            }],
        };
        let sent_at = Instant::now();
        let response: FetchResponse = wire::call(&mut connection, ApiKey::Fetch, &request).await?;
        let fetch_latency = sent_at.elapsed().as_micros().max(1) as u64;
        let mut fetched = 0u64;
        for partition in &response.topics[0].partitions {
            if !partition.error_code.is_ok() {
                bail!(
                    "fetch of partition {} failed: {}",
                    partition.partition,
                    partition.error_code
                );
            }
            high_watermarks.insert(partition.partition, partition.high_watermark);
            for batch in RecordBatches::new(partition.records.clone()) {
                let batch = batch?;
                let count = batch.record_count().max(0) as u64;
                if plan.read_stamps {
                    let first = batch.records().next().transpose()?;
                    if let Some(value) = first
                        .and_then(|record| record.value)
                        .filter(|value| value.len() >= 8)
                    {
                        let stamp_ns = u64::from_be_bytes(value[..8].try_into().unwrap());
                        let now_ns = plan.epoch.elapsed().as_nanos() as u64;
                        report
                            .latency_us
                            .record_n((now_ns.saturating_sub(stamp_ns) / 1000).max(1), count)?;
                    }
                }
                fetched += count;
                positions.insert(partition.partition, batch.next_offset());
            }
        }
        if !plan.read_stamps && fetched > 0 {
            report.latency_us.record(fetch_latency)?;
        }
        report.messages += fetched;
        plan.progress.inc(fetched);
    }
    report.elapsed = started.elapsed();
    report.payload_bytes = report.messages * plan.message_size as u64;
    Ok(report)
}
