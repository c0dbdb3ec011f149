//! A shipping service: reads the order events `order_service` publishes and ships every
//! paid order.
//!
//! ```text
//! cargo run -p fjord-client --example shipping_service -- [--follow]
//! ```
//!
//! Reads every partition of `orders` from the beginning, through the consumer's
//! `Stream`, and stops at the end offsets present at start unless `--follow` is given.
//! The broker address comes from `FJORD_BOOTSTRAP` (default `127.0.0.1:9192`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use fjord_client::config::DEFAULT_BOOTSTRAP;
use fjord_client::{Admin, Client, ClientConfig, Consumer, ConsumerConfig, Error, TopicPartition};
use futures::StreamExt;
use serde::Deserialize;

const TOPIC: &str = "orders";

/// The fields of an order event this service needs.
#[derive(Debug, Deserialize)]
struct OrderEvent {
    order_id: String,
    kind: String,
    customer: String,
    total_cents: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let follow = std::env::args().any(|argument| argument == "--follow");
    let bootstrap =
        std::env::var("FJORD_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_BOOTSTRAP.to_owned());
    let client = Client::connect(ClientConfig::from_bootstrap_list(&bootstrap)).await?;

    let description = Admin::new(&client).describe_topic(TOPIC).await?;
    let partitions: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|partition| TopicPartition::new(TOPIC, partition.partition))
        .collect();
    let mut consumer = Consumer::new(&client, ConsumerConfig::default())?;
    consumer.assign(partitions.iter().cloned());
    consumer.seek_to_beginning(&partitions).await?;
    // Partitions still to read up to their end at start (all of them with --follow,
    // which never finishes).
    let mut remaining: BTreeMap<TopicPartition, i64> = consumer
        .end_offsets(&partitions)
        .await?
        .into_iter()
        .filter(|(_, end)| follow || *end > 0)
        .collect();
    if remaining.is_empty() {
        println!("no orders yet");
        return Ok(());
    }

    let mut shipped = 0;
    let mut records = std::pin::pin!(consumer.stream());
    while let Some(record) = records.next().await {
        let record = record?;
        let Some(value) = &record.value else {
            continue;
        };
        match serde_json::from_slice::<OrderEvent>(value) {
            Ok(event) if event.kind == "paid" => {
                shipped += 1;
                println!(
                    "shipping {} to {} ({}.{:02} paid; partition {} offset {})",
                    event.order_id,
                    event.customer,
                    event.total_cents / 100,
                    event.total_cents % 100,
                    record.partition,
                    record.offset
                );
            }
            Ok(_) => {}
            Err(error) => eprintln!(
                "skipping a malformed event at offset {}: {error}",
                record.offset
            ),
        }
        if !follow {
            let partition = TopicPartition::new(record.topic, record.partition);
            if remaining
                .get(&partition)
                .is_some_and(|end| record.offset + 1 >= *end)
            {
                remaining.remove(&partition);
            }
            if remaining.is_empty() {
                break;
            }
        }
    }
    println!("shipped {shipped} orders");
    Ok(())
}
