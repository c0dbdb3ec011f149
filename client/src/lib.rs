//! The Fjord client library: produce, consume and administer topics over Fjord's
//! native protocol ([`fjord_protocol`]).
//!
//! Start with a [`Client`], which holds the connections and the metadata cache, then
//! build a [`Producer`], a [`Consumer`] or an [`Admin`] on it. They share the client's
//! connections.
//!
//! Modules, bottom up:
//! - [`error`]: [`Error`], the one error type of the library.
//! - [`config`]: [`ClientConfig`], connection and metadata settings.
//! - `backoff`: exponential backoff for reconnects and retries.
//! - `connection`: one TCP connection per broker, pipelined requests matched by
//!   correlation id, per-request deadlines.
//! - `versions`: API version negotiation on connect.
//! - `pool`: one connection per broker address, reopened with backoff.
//! - `metadata`: the cache of partition leaders and broker addresses.
//! - [`client`]: [`Client`], the shared core.
//! - [`producer`]: [`Producer`], batching, partitioning, back-pressure, retries.
//! - [`partitioner`]: how records are assigned to partitions (murmur2 of the key).
//! - [`consumer`]: [`Consumer`], manual assignment, seeking, pipelined fetching.
//! - [`group`]: [`GroupConsumer`], consumer groups with server-side assignment,
//!   incremental rebalancing and committed offsets; group administration on [`Admin`].
//! - `offsets`: ListOffsets requests, shared by the consumer and the admin client.
//! - [`admin`]: [`Admin`], topic creation, deletion, listing and description.
//!
//! The `fjord` command-line tool lives in `src/bin/fjord.rs` and `src/cli/`; it is
//! built on this public API only.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use fjord_client::{
//!     Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig,
//!     ProducerRecord, TopicPartition,
//! };
//!
//! # async fn example() -> fjord_client::Result<()> {
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
//!
//! let producer = Producer::new(&client, ProducerConfig::default())?;
//! let (partition, offset) = producer
//!     .send(ProducerRecord::new("orders", "hello").with_partition(0))
//!     .await?
//!     .await?;
//! producer.close().await?;
//!
//! let mut consumer = Consumer::new(&client, ConsumerConfig::default())?;
//! let orders = TopicPartition::new("orders", partition);
//! consumer.assign([orders.clone()]);
//! consumer.seek(&orders, offset)?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}: {:?}", record.offset, record.value);
//! }
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod backoff;
pub mod client;
pub mod config;
mod connection;
pub mod consumer;
pub mod error;
pub mod group;
mod metadata;
mod offsets;
mod pool;
pub mod producer;
mod topic_partition;
mod versions;

pub use admin::{
    Admin, ClusterDescription, ListedOffset, NewTopic, PartitionDescription, TopicDescription,
    TopicSummary,
};
pub use client::Client;
pub use config::ClientConfig;
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
pub use error::{Error, Result};
pub use fjord_protocol::ErrorCode;
pub use fjord_protocol::batch::Header;
pub use fjord_protocol::messages::{Acks, OffsetSpec};
pub use group::{
    CommitHandle, GroupConsumer, GroupConsumerConfig, GroupDescription, GroupListing, GroupMember,
    GroupOffsetReset, RebalanceEvent,
};
pub use producer::Producer;
pub use producer::config::ProducerConfig;
pub use producer::delivery::DeliveryFuture;
pub use producer::partitioner;
pub use producer::record::ProducerRecord;
pub use topic_partition::TopicPartition;
