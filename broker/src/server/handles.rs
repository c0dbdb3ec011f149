//! What the client listener, its connections and the request handlers share: the
//! settings they read and the handles of the services they call. The broker builds it
//! once at start-up; nothing in the server reaches the broker itself.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::Semaphore;

use super::memory::connection_share_bytes;
use crate::config::BrokerConfig;
use crate::group::GroupService;
use crate::topics::{Partitions, TopicAdmin};

/// The settings the server reads, copied from the broker's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub max_connections: usize,
    pub max_in_flight_requests: usize,
    pub max_request_bytes: usize,
    pub request_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub response_write_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// Most request bytes one connection holds (see [`connection_share_bytes`]).
    pub connection_memory_bytes: usize,
    /// The size of the broker's response memory, the most one fetch reserves.
    pub response_memory_bytes: usize,
}

impl ServerSettings {
    pub fn new(config: &BrokerConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            max_in_flight_requests: config.max_in_flight_requests,
            max_request_bytes: config.max_request_bytes,
            request_read_timeout_ms: config.request_read_timeout_ms,
            request_timeout_ms: config.request_timeout_ms,
            response_write_timeout_ms: config.response_write_timeout_ms,
            shutdown_timeout_ms: config.shutdown_timeout_ms,
            connection_memory_bytes: connection_share_bytes(config),
            response_memory_bytes: config.response_memory_bytes,
        }
    }
}

/// The settings and service handles of the server.
#[derive(Debug)]
pub struct Handles {
    pub settings: ServerSettings,
    /// The logs of the partitions this broker leads (produce, fetch, list offsets).
    pub partitions: Partitions,
    /// Metadata requests may create topics; CreateTopics and DeleteTopics.
    pub admin: TopicAdmin,
    /// The group APIs.
    pub groups: Arc<GroupService>,
    /// Bytes of requests all connections may hold at once.
    pub request_memory: super::memory::RequestPools,
    /// Bytes of fetched records all responses not yet written may hold at once.
    pub response_memory: Arc<Semaphore>,
    /// Fetch requests parked until new data or their `max_wait_ms` (long polls).
    pub fetches_waiting: Arc<AtomicUsize>,
}
