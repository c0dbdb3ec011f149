//! Results: per role and in total, printed for people or as JSON.
//!
//! Throughput counts payload bytes (the record values) with 1 MB = 10^6 bytes. The total
//! is total bytes over the wall time of the whole run, not a sum of per-actor rates.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// What one role (producers or consumers) did.
#[derive(Debug)]
pub struct RoleReport {
    pub role: &'static str,
    pub actors: usize,
    pub messages: u64,
    pub payload_bytes: u64,
    pub elapsed: Duration,
    /// Microseconds: per request for produce and consume, end to end per record batch
    /// for the latency scenario.
    pub latency_us: Histogram<u64>,
    pub latency_kind: &'static str,
}

impl RoleReport {
    pub fn new(role: &'static str, latency_kind: &'static str) -> Self {
        Self {
            role,
            actors: 0,
            messages: 0,
            payload_bytes: 0,
            elapsed: Duration::ZERO,
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            latency_kind,
        }
    }

    pub fn merge(&mut self, other: &RoleReport) {
        self.actors += other.actors;
        self.messages += other.messages;
        self.payload_bytes += other.payload_bytes;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds");
    }

    fn rates(&self, elapsed: Duration) -> (f64, f64) {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        (
            self.messages as f64 / seconds,
            self.payload_bytes as f64 / seconds / 1e6,
        )
    }

    fn percentiles_ms(&self) -> [(&'static str, f64); 5] {
        let at = |quantile: f64| self.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
        [
            ("p50", at(0.5)),
            ("p90", at(0.9)),
            ("p99", at(0.99)),
            ("p99.9", at(0.999)),
            ("max", self.latency_us.max() as f64 / 1000.0),
        ]
    }

    pub fn to_json(&self, elapsed: Duration) -> serde_json::Value {
        let (messages_per_second, megabytes_per_second) = self.rates(elapsed);
        let latency: serde_json::Map<_, _> = self
            .percentiles_ms()
            .into_iter()
            .map(|(name, value)| (format!("{name}_ms"), json!(value)))
            .collect();
        json!({
            "role": self.role,
            "actors": self.actors,
            "messages": self.messages,
            "payload_bytes": self.payload_bytes,
            "seconds": elapsed.as_secs_f64(),
            "messages_per_second": messages_per_second,
            "megabytes_per_second": megabytes_per_second,
            "latency_kind": self.latency_kind,
            "latency": latency,
        })
    }

    pub fn print(&self, elapsed: Duration) {
        let (messages_per_second, megabytes_per_second) = self.rates(elapsed);
        println!(
            "{:<9} {:>3} actors  {:>11} msgs  {:>9.2} MB  {:>12.0} msg/s  {:>9.2} MB/s",
            self.role,
            self.actors,
            self.messages,
            self.payload_bytes as f64 / 1e6,
            messages_per_second,
            megabytes_per_second
        );
        if !self.latency_us.is_empty() {
            let line: Vec<String> = self
                .percentiles_ms()
                .iter()
                .map(|(name, value)| format!("{name} {value:.3}"))
                .collect();
            println!(
                "          latency ({}, ms): {}",
                self.latency_kind,
                line.join("  ")
            );
        }
    }
}
