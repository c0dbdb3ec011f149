//! A producer actor: builds its batches itself and keeps `in_flight` produce requests
//! on the wire. In fixed-rate mode each batch has an intended send time, latency is
//! measured from it (so that a stall cannot hide behind requests not sent), and the
//! values carry it for the consumers of the latency scenario.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::messages::{Message, ProduceResponse};
use indicatif::ProgressBar;
use tokio::sync::{Semaphore, mpsc};

use super::report::RoleReport;
use super::wire;

#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub addr: SocketAddr,
    pub topic: String,
    pub partitions: Vec<i32>,
    pub messages: u64,
    pub deadline: Option<Instant>,
    pub batch_messages: usize,
    pub message_size: usize,
    pub acks: i16,
    pub in_flight: usize,
    /// Messages per second for this producer; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Values start with the intended send time (ns since `epoch`).
    pub stamp_values: bool,
    pub epoch: Instant,
    pub progress: ProgressBar,
}

/// Builds a batch of `count` values of `size` bytes; stamped values start with
/// `stamp_ns`.
pub fn build_batch(count: usize, size: usize, stamp_ns: Option<u64>) -> Bytes {
    let mut value = vec![b'x'; size];
    if let Some(stamp) = stamp_ns {
        value[..8].copy_from_slice(&stamp.to_be_bytes());
    }
    let timestamp_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut builder = BatchBuilder::with_capacity(count * (size + 16));
    for _ in 0..count {
        builder.push(&RecordInput {
            value: Some(&value),
            timestamp_ms,
            ..Default::default()
        });
    }
    builder.finish()
}

pub async fn run(plan: ProducerPlan) -> anyhow::Result<RoleReport> {
    let (mut sender, mut receiver) = wire::connect(plan.addr).await?;
    let mut report = RoleReport::new(
        "producer",
        if plan.rate.is_some() {
            "from intended send"
        } else {
            "per request"
        },
    );
    report.actors = 1;
    let window = Arc::new(Semaphore::new(plan.in_flight));
    let acknowledged = plan.acks != 0;
    // Send times travel to the reader in request order; responses come back in order.
    let (times, mut pending) =
        mpsc::unbounded_channel::<(Instant, tokio::sync::OwnedSemaphorePermit)>();
    let reader = tokio::spawn(async move {
        let mut latency = RoleReport::new("producer", "").latency_us;
        while let Some((sent_at, permit)) = pending.recv().await {
            let (_, body) = receiver.receive().await?;
            latency.record(sent_at.elapsed().as_micros().max(1) as u64)?;
            drop(permit);
            let response = ProduceResponse::decode_body(body)?;
            let partition = &response.topics[0].partitions[0];
            if !partition.error_code.is_ok() {
                bail!(
                    "produce failed: {} {}",
                    partition.error_code,
                    partition.error_message.clone().unwrap_or_default()
                );
            }
        }
        anyhow::Ok((latency, receiver))
    });
    let template =
        (!plan.stamp_values).then(|| build_batch(plan.batch_messages, plan.message_size, None));
    let interval = plan
        .rate
        .map(|rate| Duration::from_secs_f64(plan.batch_messages as f64 / rate));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut batch_index = 0u64;
    let mut partition_cursor = 0usize;
    let mut last_partial: Option<Bytes> = None;
    while sent < plan.messages
        && plan
            .deadline
            .is_none_or(|deadline| Instant::now() < deadline)
    {
        let count = (plan.messages - sent).min(plan.batch_messages as u64) as usize;
        let intended = match interval {
            Some(interval) => {
                let at = started + interval * batch_index as u32;
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        let permit = window.clone().acquire_owned().await?;
        let batch = match (&template, count == plan.batch_messages) {
            (Some(template), true) => template.clone(),
            (Some(_), false) => last_partial
                .get_or_insert_with(|| build_batch(count, plan.message_size, None))
                .clone(),
            (None, _) => build_batch(
                count,
                plan.message_size,
                Some(intended.duration_since(plan.epoch).as_nanos() as u64),
            ),
        };
        let partition = plan.partitions[partition_cursor % plan.partitions.len()];
        partition_cursor += 1;
        sender
            .send_produce(&plan.topic, partition, plan.acks, &batch)
            .await?;
        // A closed channel means the reader stopped on an error, which it returns below.
        if acknowledged && times.send((intended, permit)).is_err() {
            break;
        }
        sent += count as u64;
        batch_index += 1;
        plan.progress.inc(count as u64);
    }
    drop(times);
    let (latency, mut receiver) = reader.await??;
    if !acknowledged {
        // acks=none has no responses; a final request is answered only after the
        // broker has handled everything before it on this connection.
        sender
            .send(
                fjord_protocol::ApiKey::ApiVersions,
                &fjord_protocol::messages::ApiVersionsRequest,
            )
            .await?;
        receiver.receive().await?;
    }
    report.elapsed = started.elapsed();
    report.messages = sent;
    report.payload_bytes = sent * plan.message_size as u64;
    report.latency_us = latency;
    Ok(report)
}
