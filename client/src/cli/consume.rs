//! `fjord consume TOPIC`: prints records, one per line.
//!
//! Where to start: `--offset N` (every selected partition from N), `--from-beginning`,
//! or by default the end (only new records). Where to stop: starting at the end, or
//! with `--follow`, never (Ctrl-C ends it), as Kafka's console consumer; otherwise at
//! the end offsets the partitions had when the command started. `--max-messages N`
//! stops after N records either way. Stderr says what happened: an offset past a
//! partition's end, that it waits for new records, and on exit how many records it
//! printed and why it stopped (records only ever go to stdout).
//!
//! `--format text` prints each value (invalid UTF-8 replaced); `--format json` prints
//! one object per line with topic, partition, offset, timestamp, key, value and headers,
//! losslessly: bytes are encoded as the admin HTTP API's record peek does (text when
//! valid UTF-8, else base64, with the encoding named) and headers are a list in record
//! order, so repeated header keys survive.
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

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
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
    /// Keep waiting for new records instead of stopping at the end (the default
    /// when neither --from-beginning nor --offset is given).
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
    let from_end = args.offset.is_none() && !args.from_beginning;
    match (args.offset, args.from_beginning) {
        (Some(offset), _) => {
            for partition in &partitions {
                consumer.seek(partition, offset)?;
            }
        }
        (None, true) => consumer.seek_to_beginning(&partitions).await?,
        (None, false) => consumer.seek_to_end(&partitions).await?,
    }
    // Starting at the end means waiting for new records, so it follows (as Kafka's
    // console consumer does); reading from the beginning or an offset stops at the
    // ends present now unless --follow: records appended later are not printed even
    // if a poll returns them.
    let follow = args.follow || from_end;
    let ends: Option<BTreeMap<TopicPartition, i64>> = if follow {
        None
    } else {
        Some(consumer.end_offsets(&partitions).await?)
    };
    if let (Some(offset), Some(ends)) = (args.offset, &ends) {
        for (partition, end) in ends.iter().filter(|(_, end)| offset > **end) {
            eprintln!(
                "partition {} of '{}' ends at offset {end}: offset {offset} is past the end, nothing to read there",
                partition.partition, partition.topic
            );
        }
    }
    // Installed before saying it waits, so that a signal after that line is caught.
    let stop = interruption()?;
    tokio::pin!(stop);
    if follow {
        eprintln!(
            "waiting for new records on '{}' (Ctrl-C or SIGTERM to stop)",
            args.topic
        );
    }
    let mut printed: u64 = 0;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let outcome = loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break Stop::MaxMessages;
        }
        if let Some(ends) = &ends
            && reached_ends(&consumer, ends)
        {
            break Stop::End;
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_INTERVAL) => records?,
            interrupted = &mut stop => {
                interrupted?;
                break Stop::Interrupted;
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
    };
    flush(&mut out)?;
    let reason = match outcome {
        Stop::MaxMessages => "reached --max-messages",
        Stop::End => "reached the end (--follow waits for more)",
        Stop::Interrupted => "interrupted (Ctrl-C or SIGTERM)",
    };
    let noun = if printed == 1 { "record" } else { "records" };
    eprintln!("{printed} {noun} from '{}': {reason}", args.topic);
    Ok(())
}

/// Why reading stopped, said on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    MaxMessages,
    End,
    Interrupted,
}

/// A future that completes on Ctrl-C or (on Unix) SIGTERM. On Unix both handlers are
/// installed before this returns, so a signal sent as soon as the command says it is
/// waiting is caught rather than ending the process.
fn interruption() -> std::io::Result<impl Future<Output = std::io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => Ok(()),
                _ = terminate.recv() => Ok(()),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c())
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
    let stop = interruption()?;
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

/// Bytes as the admin HTTP API shows them (docs/http-api.md, record peek): as text when
/// they are valid UTF-8, otherwise as standard base64 with padding, with the encoding
/// named, so that no byte is lost; `null` when absent.
fn payload_json(bytes: Option<&[u8]>) -> serde_json::Value {
    let Some(bytes) = bytes else {
        return serde_json::Value::Null;
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({"encoding": "utf8", "data": text}),
        Err(_) => json!({"encoding": "base64", "data": BASE64.encode(bytes)}),
    }
}

/// One record as a JSON object, losslessly: key, value and header values as
/// [`payload_json`], headers as a list in record order (keys may repeat).
fn record_json(record: &ConsumerRecord) -> serde_json::Value {
    let headers: Vec<serde_json::Value> = record
        .headers
        .iter()
        .map(|header| json!({"key": header.key, "value": payload_json(header.value.as_deref())}))
        .collect();
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "key": payload_json(record.key.as_deref()),
        "value": payload_json(record.value.as_deref()),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fjord_client::Header;

    use super::*;

    /// JSON lines carry every field, with nulls for a missing key; binary bytes are
    /// base64 and repeated header keys are all kept, in order.
    #[test]
    fn json_record() {
        let record = ConsumerRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 7,
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"\xff\x00")),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"a")),
                },
                Header {
                    key: "trace".into(),
                    value: Some(Bytes::from_static(b"b")),
                },
                Header {
                    key: "empty".into(),
                    value: None,
                },
            ],
        };
        assert_eq!(
            record_json(&record),
            json!({
                "topic": "orders",
                "partition": 2,
                "offset": 7,
                "timestamp_ms": 1_700_000_000_000_i64,
                "key": null,
                "value": {"encoding": "base64", "data": "/wA="},
                "headers": [
                    {"key": "trace", "value": {"encoding": "utf8", "data": "a"}},
                    {"key": "trace", "value": {"encoding": "utf8", "data": "b"}},
                    {"key": "empty", "value": null},
                ],
            })
        );
        let mut out = Vec::new();
        let text = ConsumerRecord {
            value: Some(Bytes::from_static(b"hello")),
            ..record
        };
        assert!(write_record(&mut out, &text, RecordFormat::Text).unwrap());
        assert_eq!(out, b"hello\n");
    }
}
