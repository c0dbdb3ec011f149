//! Request memory: every request byte a connection holds is reserved twice, from the
//! broker-wide `request_memory_bytes` and from the connection's own share of it (see
//! [`connection_share_bytes`]), so that one connection pipelining requests whose
//! answers it does not read cannot hold the whole budget and lock others out.

use std::sync::Arc;

use fjord_protocol::frame::LENGTH_PREFIX_BYTES;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// Most bytes a connection reads from its socket at once, and so the most request
/// memory it reserves ahead of the bytes it has received.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Most request bytes one connection holds: a quarter of `request_memory_bytes`, but
/// never less than a largest request plus one read beyond it.
pub fn connection_share_bytes(config: &BrokerConfig) -> usize {
    let largest = LENGTH_PREFIX_BYTES + config.max_request_bytes + READ_CHUNK_BYTES;
    (config.request_memory_bytes / 4).max(largest)
}

/// Where one connection's request memory comes from.
#[derive(Debug)]
pub struct RequestMemory {
    broker: Arc<Semaphore>,
    connection: Arc<Semaphore>,
}

impl RequestMemory {
    /// A connection's memory: `connection_bytes` of its own, all of it also reserved
    /// from `broker`, the broker-wide budget.
    pub fn new(broker: Arc<Semaphore>, connection_bytes: usize) -> Self {
        Self {
            broker,
            connection: Arc::new(Semaphore::new(connection_bytes)),
        }
    }

    /// Reserves `bytes`, waiting for the connection's share first (which only its own
    /// answered requests give back), then for the broker's.
    pub async fn reserve(&self, bytes: usize) -> Reservation {
        let permits = u32::try_from(bytes).expect("a reservation is at most a read chunk");
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the connection memory semaphore is never closed");
        let broker = self
            .broker
            .clone()
            .acquire_many_owned(permits)
            .await
            .expect("the request memory semaphore is never closed");
        Reservation { connection, broker }
    }
}

/// Bytes reserved from both budgets; dropping it gives them back.
#[derive(Debug)]
pub struct Reservation {
    connection: OwnedSemaphorePermit,
    broker: OwnedSemaphorePermit,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.broker.num_permits()
    }

    pub fn merge(&mut self, other: Reservation) {
        self.connection.merge(other.connection);
        self.broker.merge(other.broker);
    }

    /// Splits `bytes` off into a reservation of their own; `None` if it holds fewer.
    pub fn split(&mut self, bytes: usize) -> Option<Reservation> {
        if bytes > self.bytes() {
            return None;
        }
        Some(Reservation {
            connection: self.connection.split(bytes)?,
            broker: self.broker.split(bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reservation holds from both budgets, splits and merges them together, and
    /// gives everything back when dropped.
    #[tokio::test]
    async fn reservations_hold_both_budgets() {
        let memory = RequestMemory {
            broker: Arc::new(Semaphore::new(100)),
            connection: Arc::new(Semaphore::new(40)),
        };
        let mut first = memory.reserve(30).await;
        assert_eq!(memory.connection.available_permits(), 10);
        assert_eq!(memory.broker.available_permits(), 70);
        let part = first.split(10).unwrap();
        assert_eq!((first.bytes(), part.bytes()), (20, 10));
        assert!(first.split(21).is_none());
        first.merge(part);
        assert_eq!(first.bytes(), 30);
        drop(first);
        assert_eq!(memory.connection.available_permits(), 40);
        assert_eq!(memory.broker.available_permits(), 100);
    }
}
