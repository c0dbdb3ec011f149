//! An order service: publishes order events to the `orders` topic, keyed by order id,
//! so that all events of one order land in one partition, in order.
//!
//! ```text
//! cargo run -p fjord-client --example order_service -- [ORDER_COUNT]
//! ```
//!
//! The broker address comes from `FJORD_BOOTSTRAP` (default `127.0.0.1:9192`). Run
//! `shipping_service` afterwards to see the orders shipped.

use std::process::ExitCode;

use fjord_client::config::DEFAULT_BOOTSTRAP;
use fjord_client::{
    Admin, Client, ClientConfig, Error, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use serde::Serialize;

const TOPIC: &str = "orders";
const CUSTOMERS: [&str; 4] = ["ada", "grace", "linus", "barbara"];

/// One event in an order's life, as JSON.
#[derive(Debug, Serialize)]
struct OrderEvent<'a> {
    order_id: &'a str,
    kind: &'a str,
    customer: &'a str,
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
    let order_count: usize = match std::env::args().nth(1) {
        Some(count) => count
            .parse()
            .map_err(|_| Error::Config(format!("'{count}' is not an order count")))?,
        None => 10,
    };
    let bootstrap =
        std::env::var("FJORD_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_BOOTSTRAP.to_owned());
    let client = Client::connect(ClientConfig::from_bootstrap_list(&bootstrap)).await?;

    match Admin::new(&client)
        .create_topics(&[NewTopic::new(TOPIC, 3, 1)])
        .await
    {
        Ok(()) => println!("created topic '{TOPIC}'"),
        Err(Error::TopicAlreadyExists { .. }) => {}
        Err(error) => return Err(error),
    }

    let producer = Producer::new(&client, ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for index in 0..order_count {
        let order_id = format!("order-{index:04}");
        let customer = CUSTOMERS[index % CUSTOMERS.len()];
        let total_cents = 1_000 + (index as u64 * 337) % 9_000;
        // Both events of an order share its key, so a consumer sees "created" first.
        for kind in ["created", "paid"] {
            let event = OrderEvent {
                order_id: &order_id,
                kind,
                customer,
                total_cents,
            };
            let value = serde_json::to_vec(&event).expect("an order event serializes");
            let record = ProducerRecord::new(TOPIC, value)
                .with_key(order_id.clone())
                .with_header("event", kind);
            deliveries.push((order_id.clone(), kind, producer.send(record).await?));
        }
    }
    for (order_id, kind, delivery) in deliveries {
        let (partition, offset) = delivery.await?;
        println!("{order_id} {kind:<7} -> {TOPIC}/{partition} @ {offset}");
    }
    producer.close().await?;
    Ok(())
}
