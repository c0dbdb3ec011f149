//! Command-line options of `fjord-bench`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Producers send as fast as acknowledgements allow.
    Produce,
    /// Consumers read `--messages` from the beginning of the topic (written first,
    /// unmeasured, when the bench creates the topic itself).
    Consume,
    /// Producers and consumers at the same time.
    ProduceConsume,
    /// Producers at a fixed `--rate`; latency from each batch's intended send time to
    /// its arrival at a consumer.
    Latency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksOption {
    None,
    Leader,
    All,
}

impl AcksOption {
    pub fn code(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityOption {
    Fsync,
    Interval,
}

/// Fjord's load generator: throughput and latency of a running broker.
#[derive(Debug, Clone, Parser)]
#[command(name = "fjord-bench", version)]
pub struct Options {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker address.
    #[arg(long, env = "FJORD_BOOTSTRAP", default_value = "127.0.0.1:9192")]
    pub bootstrap: String,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Partitions of the topic the bench creates.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replicas of each partition of the topic the bench creates; -1 = the broker's
    /// default (three on a cluster of three or more, else one per broker). The bench
    /// sends to one broker: the partitions must all be led by the same one.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i16,
    /// Use this existing topic instead of creating one.
    #[arg(long)]
    pub topic: Option<String>,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1000)]
    pub message_size: usize,
    /// Records per produce request (one batch).
    #[arg(long, default_value_t = 1000)]
    pub batch_messages: usize,
    /// Messages in total (split across producers / consumers).
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "duration")]
    pub messages: u64,
    /// Run for this long instead of a message count, e.g. `10s`, `2m`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long, value_enum, default_value = "leader")]
    pub acks: AcksOption,
    /// Durability policy of the topic the bench creates.
    #[arg(long, value_enum, default_value = "fsync")]
    pub durability: DurabilityOption,
    /// Fixed total rate in messages per second (the latency scenario's default is
    /// 50000); latency is measured from each batch's intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Produce requests in flight per producer.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Keep the topic the bench created (it is deleted at the end by default, so that
    /// repeated runs do not fill the disk and the page cache).
    #[arg(long)]
    pub keep_topic: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.trim().split_at(
        text.trim()
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.trim().len()),
    );
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{text}`"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit in `{text}` (use ms, s or m)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

impl Options {
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--producers", self.producers),
            ("--consumers", self.consumers),
            (
                "--message-size",
                self.message_size
                    .max(usize::from(self.scenario != Scenario::Latency)),
            ),
            ("--batch-messages", self.batch_messages),
            ("--in-flight", self.in_flight),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.partitions < 1 {
            return Err("--partitions must be at least 1".into());
        }
        if self.scenario == Scenario::Latency && self.message_size < 8 {
            return Err("--message-size must be at least 8 in the latency scenario (values carry the send time)".into());
        }
        if self.rate.is_some_and(|rate| rate <= 0.0) {
            return Err("--rate must be positive".into());
        }
        if self.messages == 0 && self.duration.is_none() {
            return Err("--messages must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations parse with and without units; nonsense is refused.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
