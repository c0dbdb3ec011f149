//! The Fjord broker.
//!
//! - [`config`]: the broker's settings (file, environment, flags).
//! - [`storage`]: partition logs on disk (segments, indexes, recovery, retention).
//! - [`metadata`]: the metadata log, image and controller (topics, brokers).
//! - [`server`]: the client listener, connections and request handlers.
//! - [`broker`]: everything wired together; start-up and graceful shutdown.

pub mod broker;
pub mod config;
pub mod metadata;
pub mod server;
pub mod storage;

pub use broker::{Broker, BrokerHandle};
