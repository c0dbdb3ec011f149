//! The Fjord broker.
//!
//! - [`config`]: the broker's settings (file, environment, flags).
//! - [`storage`]: partition logs on disk (segments, indexes, recovery, retention).
//! - [`metadata`]: the metadata log, image and controller (topics, brokers).
//! - [`topics`]: the handles through which the services reach metadata and partition
//!   logs: a metadata view, the partitions this broker leads, topic administration.
//! - [`internal`]: the internal listener between brokers: frames, listener, peer calls.
//! - [`replication`]: the partitions this broker leads: appends, in-sync replicas,
//!   the high watermark.
//! - [`server`]: the client listener, connections and request handlers.
//! - [`group`]: consumer groups: the coordinator state machine, assignors, committed
//!   offsets in `__consumer_offsets`.
//! - [`http`]: the admin HTTP API: resources, health probes, metrics, OpenAPI.
//! - [`metrics`]: every exported metric, described, and its Prometheus rendering.
//! - [`quorum_voters`]: the `controller_quorum_voters` setting, parsed and checked.
//! - [`resources`]: the open-file limit and the partition budget derived from it.
//! - [`lifecycle`]: the broker's phase (recovering, ready, shutting down).
//! - [`broker`]: everything wired together; start-up and graceful shutdown.
//! - [`bound_addresses`]: the listeners' bound addresses, logged and written to a file.

pub mod bound_addresses;
pub mod broker;
pub mod config;
pub mod group;
pub mod http;
pub mod internal;
pub mod lifecycle;
pub mod metadata;
pub mod metrics;
pub mod quorum_voters;
pub mod replication;
pub mod resources;
pub mod server;
pub mod storage;
pub mod topics;

pub use broker::{Broker, BrokerHandle, Listeners};
