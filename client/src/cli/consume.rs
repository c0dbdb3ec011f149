//! `fjord consume TOPIC`: prints records, one per line.
//!
//! Where to start: `--offset N` (every selected partition from N), `--from-beginning`,
//! or by default the end (only new records). Where to stop: without `--follow`, at the
//! end offsets the partitions had when the command started; with `--follow`, never
//! (Ctrl-C ends it); `--max-messages N` stops after N records either way.
//!
//! `--format text` prints each value (invalid UTF-8 replaced); `--format json` prints
//! one object per line with topic, partition, offset, timestamp, key, value and headers.
//!
//! With `--group G` the command is a member of consumer group G: the group's
//! coordinator gives it its share of the topic's partitions, it starts where the group
//! left off (`--from-beginning` only matters for partitions the group never committed),
//! commits as it goes, and reads until Ctrl-C, SIGTERM or `--max-messages`; then it
//! commits what it printed and leaves the group, so that the other members take over
//! its partitions at once.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use fjord_client::{
    Admin, Client, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    OffsetReset, TopicPartition,
};
use serde_json::json;

/// How long one poll waits before the stop conditions are checked again.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at the oldest record.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset.
    #[arg(long, value_name = "N")]
    offset: Option<i64>,
    /// Read only this partition.
    #[arg(long, value_name = "P")]
    partition: Option<i32>,
    /// Read as a member of this consumer group, until interrupted (always follows).
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["offset", "partition"])]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// How to print records.
    #[arg(long, value_enum, default_value_t = RecordFormat::Text)]
    format: RecordFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RecordFormat {
    /// The value only.
    Text,
    /// One JSON object per record.
    Json,
}

pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = &args.group {
        return run_in_group(client, group, &args).await;
    }
    let partitions = select_partitions(client, &args).await?;
    let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
    consumer.assign(partitions.iter().cloned());
    match (args.offset, args.from_beginning) {
        (Some(offset), _) => {
            for partition in &partitions {
                consumer.seek(partition, offset)?;
            }
        }
        (None, true) => consumer.seek_to_beginning(&partitions).await?,
        (None, false) => consumer.seek_to_end(&partitions).await?,
    }
    // Without --follow, stop at the ends present now; records appended later are not
    // printed even if a poll returns them.
    let ends: Option<BTreeMap<TopicPartition, i64>> = if args.follow {
        None
    } else {
        Some(consumer.end_offsets(&partitions).await?)
    };
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // One listener for the whole run: a fresh `ctrl_c()` per poll would miss a Ctrl-C
    // that arrives between polls (while printing), and the handler tokio installed
    // would keep it from ending the process either.
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
        if let Some(ends) = &ends
            && reached_ends(&consumer, ends)
        {
            break;
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_INTERVAL) => records?,
            interrupted = &mut interrupt => {
                interrupted?;
                break;
            }
        };
        for record in records {
            let beyond_end = ends.as_ref().is_some_and(|ends| {
                let partition = TopicPartition::new(record.topic.clone(), record.partition);
                ends.get(&partition).is_none_or(|end| record.offset >= *end)
            });
            if beyond_end || args.max_messages.is_some_and(|max| printed >= max) {
                continue;
            }
            if !write_record(&mut out, &record, args.format)? {
                return Ok(());
            }
            printed += 1;
        }
        if !flush(&mut out)? {
            return Ok(());
        }
    }
    flush(&mut out)?;
    Ok(())
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn interrupted() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// `--group`: reads as a group member until interrupted or `--max-messages`, then
/// commits what was printed and leaves the group.
async fn run_in_group(client: &Client, group: &str, args: &ConsumeArgs) -> anyhow::Result<()> {
    // Fail fast on a missing topic instead of waiting for partitions that never come.
    Admin::new(client).describe_topic(&args.topic).await?;
    let mut config = GroupConsumerConfig::new(group);
    config.consumer.auto_offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = GroupConsumer::new(client, config)?;
    consumer.subscribe([args.topic.clone()])?;
    let stop = interrupted();
    tokio::pin!(stop);
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let outcome = loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break Ok(());
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_INTERVAL) => match records {
                Ok(records) => records,
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%error, "poll failed; retrying");
                    continue;
                }
                Err(error) => break Err(error.into()),
            },
            interrupted = &mut stop => break interrupted.map_err(Into::into),
        };
        // Records beyond --max-messages are not printed, so the position goes back to
        // the first of them and closing commits only what was printed.
        let mut unprinted: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut closed = false;
        for record in records {
            let partition = TopicPartition::new(record.topic.clone(), record.partition);
            if closed || args.max_messages.is_some_and(|max| printed >= max) {
                unprinted.entry(partition).or_insert(record.offset);
                continue;
            }
            if !write_record(&mut out, &record, args.format)? {
                closed = true;
                unprinted.insert(partition, record.offset);
                continue;
            }
            printed += 1;
        }
        for (partition, offset) in unprinted {
            consumer.seek(&partition, offset)?;
        }
        if closed || !flush(&mut out)? {
            break Ok(());
        }
    };
    flush(&mut out)?;
    consumer.close().await?;
    outcome
}

async fn select_partitions(
    client: &Client,
    args: &ConsumeArgs,
) -> anyhow::Result<Vec<TopicPartition>> {
    let description = Admin::new(client).describe_topic(&args.topic).await?;
    let all: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|partition| TopicPartition::new(&args.topic, partition.partition))
        .collect();
    match args.partition {
        None => Ok(all),
        Some(partition) => {
            let wanted = TopicPartition::new(&args.topic, partition);
            if !all.contains(&wanted) {
                anyhow::bail!("topic '{}' has no partition {partition}", args.topic);
            }
            Ok(vec![wanted])
        }
    }
}

fn reached_ends(consumer: &Consumer, ends: &BTreeMap<TopicPartition, i64>) -> bool {
    ends.iter().all(|(partition, end)| {
        consumer
            .position(partition)
            .is_some_and(|position| position >= *end)
    })
}

/// Writes one record; `false` when stdout is closed (e.g. piped into `head`).
fn write_record(
    out: &mut impl Write,
    record: &ConsumerRecord,
    format: RecordFormat,
) -> anyhow::Result<bool> {
    let line = match format {
        RecordFormat::Text => text(record.value.as_deref()),
        RecordFormat::Json => record_json(record).to_string(),
    };
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn flush(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(String::new, |bytes| {
        String::from_utf8_lossy(bytes).into_owned()
    })
}

fn record_json(record: &ConsumerRecord) -> serde_json::Value {
    let optional =
        |bytes: Option<&[u8]>| bytes.map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|header| (header.key.clone(), json!(optional(header.value.as_deref()))))
        .collect();
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": optional(record.key.as_deref()),
        "value": optional(record.value.as_deref()),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fjord_client::Header;

    use super::*;

    /// JSON lines carry every field, with nulls for a missing key.
    #[test]
    fn json_record() {
        let record = ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 7,
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![Header {
                key: "source".into(),
                value: Some(Bytes::from_static(b"web")),
            }],
        };
        assert_eq!(
            record_json(&record),
            json!({
                "topic": "orders",
                "partition": 2,
                "offset": 7,
                "timestamp_ms": 1_700_000_000_000_i64,
                "key": null,
                "value": "hello",
                "headers": {"source": "web"},
            })
        );
        let mut out = Vec::new();
        assert!(write_record(&mut out, &record, RecordFormat::Text).unwrap());
        assert_eq!(out, b"hello\n");
    }
}
