//! One connection per broker address, reopened with exponential backoff.
//!
//! Connections are keyed by address rather than node id, so that a bootstrap address
//! and the same broker learned from metadata share one connection. Opening is
//! serialised per address (concurrent callers wait for the one attempt in progress),
//! and after a failure the next attempt waits `reconnect_backoff_ms`, doubling per
//! consecutive failure up to `reconnect_backoff_max_ms`. A success resets the backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fjord_protocol::limits::BROKERS_MAX;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::{BOOTSTRAP_ADDRESSES_MAX, ClientConfig};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// Most distinct addresses the pool keeps state for.
const POOL_ADDRESSES_MAX: usize = BROKERS_MAX + BOOTSTRAP_ADDRESSES_MAX;

/// The connections of one client.
#[derive(Debug)]
pub(crate) struct ConnectionPool {
    config: ClientConfig,
    backoff: Backoff,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    connection: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl ConnectionPool {
    pub(crate) fn new(config: ClientConfig) -> Self {
        let backoff = Backoff::new(config.reconnect_backoff_ms, config.reconnect_backoff_max_ms);
        Self {
            config,
            backoff,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The open connection to `address`, opening one (after any backoff) if there is
    /// none or the last one failed.
    pub(crate) async fn get(&self, address: &str) -> Result<Connection> {
        let slot = self.slot(address)?;
        let mut state = slot.state.lock().await;
        if let Some(connection) = &state.connection {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
            tracing::debug!(address, "connection closed; reconnecting");
            state.connection = None;
        }
        if let Some(retry_at) = state.retry_at {
            tokio::time::sleep_until(retry_at).await;
        }
        match Connection::open(address, &self.config).await {
            Ok(connection) => {
                state.failures = 0;
                state.retry_at = None;
                state.connection = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let delay = self.backoff.delay(state.failures);
                state.retry_at = Some(Instant::now() + delay);
                tracing::debug!(address, %error, ?delay, "connecting failed");
                Err(error)
            }
        }
    }

    fn slot(&self, address: &str) -> Result<Arc<Slot>> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get(address) {
            return Ok(slot.clone());
        }
        if slots.len() >= POOL_ADDRESSES_MAX {
            return Err(Error::Config(format!(
                "more than {POOL_ADDRESSES_MAX} broker addresses in use"
            )));
        }
        let slot = Arc::new(Slot::default());
        slots.insert(address.to_owned(), slot.clone());
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Failed attempts against a dead address are spaced by the backoff: the third
    /// attempt starts no earlier than 50 + 100 ms after the first.
    #[tokio::test]
    async fn reconnect_attempts_back_off() {
        let (_refusing, address) = crate::connection::tests::refusing_address();
        let mut config = ClientConfig::new([address.clone()]);
        config.reconnect_backoff_ms = 50;
        config.reconnect_backoff_max_ms = 1_000;
        let pool = ConnectionPool::new(config);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                pool.get(&address).await,
                Err(Error::Connect { .. })
            ));
        }
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
