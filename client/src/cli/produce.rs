//! `fjord produce TOPIC`: every input line becomes one record.
//!
//! Lines come from stdin or `--file`; a thread reads them (blocking reads stay off the
//! async workers) into a bounded channel, so a fast file never outruns the producer's
//! own back-pressure. With `--key-separator`, the text before the first separator is
//! the key and the rest the value; a line without the separator has no key. Bytes are
//! sent as they are (no UTF-8 requirement); the line ending (`\n` or `\r\n`) is not
//! part of the record.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use fjord_client::{Acks, Client, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

/// Lines read ahead of the producer.
const LINES_AHEAD_MAX: usize = 1_024;
/// Deliveries awaited at once; past this, sending waits for the oldest to settle.
const DELIVERIES_PENDING_MAX: usize = 100_000;
/// The longest line accepted; longer input is surely not line-oriented.
const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to send to.
    topic: String,
    /// Read lines from this file instead of stdin (shows a progress bar).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// How many replicas must store a record before it counts as sent.
    #[arg(long, value_enum, default_value_t = AcksArgument::All)]
    acks: AcksArgument,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArgument {
    /// Do not wait for the broker at all.
    None,
    /// Wait for the partition leader.
    Leader,
    /// Wait for every in-sync replica.
    All,
}

impl From<AcksArgument> for Acks {
    fn from(argument: AcksArgument) -> Acks {
        match argument {
            AcksArgument::None => Acks::None,
            AcksArgument::Leader => Acks::Leader,
            AcksArgument::All => Acks::All,
        }
    }
}

pub async fn run(client: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let (input, progress): (Box<dyn Read + Send>, Option<ProgressBar>) = match &args.file {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
            (Box::new(file), Some(progress_bar(length)))
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: args.acks.into(),
            ..ProducerConfig::default()
        },
    )?;
    let (lines, mut receiver) = mpsc::channel(LINES_AHEAD_MAX);
    let reader = std::thread::spawn(move || read_lines(input, &lines));
    let mut deliveries: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    let mut sent: u64 = 0;
    while let Some(line) = receiver.recv().await {
        let line = line?;
        if let Some(progress) = &progress {
            progress.inc(line.len() as u64 + 1);
        }
        let record = to_record(&args.topic, line, args.key_separator.as_deref());
        deliveries.push(producer.send(record).await?);
        sent += 1;
        // Settle finished deliveries as we go, so a failure stops the run early.
        while let Some(Some(delivery)) = deliveries.next().now_or_never() {
            delivery?;
        }
        if deliveries.len() >= DELIVERIES_PENDING_MAX
            && let Some(delivery) = deliveries.next().await
        {
            delivery?;
        }
        if let Some(progress) = &progress
            && sent.is_multiple_of(1_000)
        {
            progress.set_message(format!("{sent} records"));
        }
    }
    match reader.join() {
        Ok(()) => {}
        Err(_panic) => bail!("the input reader failed"),
    }
    producer.close().await?;
    while let Some(delivery) = deliveries.next().await {
        delivery?;
    }
    if let Some(progress) = progress {
        progress.finish_with_message(format!("{sent} records"));
    }
    eprintln!("produced {sent} records to '{}'", args.topic);
    Ok(())
}

fn progress_bar(length_bytes: u64) -> ProgressBar {
    let progress = ProgressBar::new(length_bytes);
    progress.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .expect("the template is valid"),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

/// Reads lines until the end of `input` or until the receiver is gone.
fn read_lines(input: Box<dyn Read + Send>, lines: &mpsc::Sender<anyhow::Result<Vec<u8>>>) {
    let mut reader = BufReader::new(input);
    loop {
        let mut line = Vec::new();
        let outcome = (&mut reader)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line);
        let item = match outcome {
            Ok(0) => return,
            Ok(_) if line.len() > LINE_BYTES_MAX && !line.ends_with(b"\n") => Err(anyhow::anyhow!(
                "a line is longer than {LINE_BYTES_MAX} bytes"
            )),
            Ok(_) => {
                trim_line_ending(&mut line);
                Ok(line)
            }
            Err(error) => Err(anyhow::anyhow!("cannot read input: {error}")),
        };
        let failed = item.is_err();
        if lines.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

fn trim_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

fn to_record(topic: &str, line: Vec<u8>, key_separator: Option<&str>) -> ProducerRecord {
    let line = Bytes::from(line);
    let split = key_separator.and_then(|separator| {
        let separator = separator.as_bytes();
        line.windows(separator.len())
            .position(|window| window == separator)
            .map(|at| (line.slice(..at), line.slice(at + separator.len()..)))
    });
    match split {
        Some((key, value)) => ProducerRecord::new(topic, value).with_key(key),
        None => ProducerRecord::new(topic, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is what precedes the first separator; no separator means no key.
    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        let record = to_record("t", b"k1::v::x".to_vec(), Some("::"));
        assert_eq!(record.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v::x"[..]));
        let keyless = to_record("t", b"plain".to_vec(), Some(":"));
        assert_eq!(keyless.key, None);
        assert_eq!(keyless.value.as_deref(), Some(&b"plain"[..]));
        let unsplit = to_record("t", b"a:b".to_vec(), None);
        assert_eq!(unsplit.value.as_deref(), Some(&b"a:b"[..]));
    }

    /// Both line endings are removed, nothing else.
    #[test]
    fn line_endings() {
        for (input, expected) in [
            (&b"a\r\n"[..], &b"a"[..]),
            (b"a\n", b"a"),
            (b"a", b"a"),
            (b"a\r", b"a\r"),
        ] {
            let mut line = input.to_vec();
            trim_line_ending(&mut line);
            assert_eq!(line, expected);
        }
    }
}
