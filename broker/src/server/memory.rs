//! Request memory: the bytes of requests a connection holds, bounded by the broker-wide
//! `request_memory_bytes` and by the connection's own share of it.
//!
//! A frame is admitted whole: once its length is known, every byte of it is reserved
//! before the rest is read, so whatever holds memory is either a frame that needs
//! nothing more to complete, or a bounded read-ahead. That is what keeps reading from
//! stalling: were bytes reserved only as they arrive, frames received in part could
//! together hold the whole budget while each waits for more of it.
//!
//! Four budgets, each a semaphore of bytes:
//! - the broker's (`request_memory_bytes`): every byte held;
//! - the connection's share ([`connection_share_bytes`]): so that one connection
//!   pipelining requests whose answers it does not read cannot hold everything;
//! - large frames' ([`large_frames_bytes`]): frames over [`READ_CHUNK_BYTES`] hold at
//!   most three quarters of the budget, so clients that announce large frames and send
//!   nothing more (until `request_read_timeout_ms` closes them) cannot starve the
//!   small requests that most traffic is made of;
//! - read-ahead ([`read_ahead_bytes`]): bytes read before their frame's length is
//!   known (up to a chunk, so that one read picks up several small frames) are taken
//!   only without waiting, and never from the last largest frame's worth of the budget.
//!   A frame waiting for admission holds at most its read-ahead, so once the admitted
//!   frames are answered there is always room for the largest frame: reading never
//!   deadlocks, it only waits for answers.

use std::sync::Arc;

use fjord_protocol::frame::LENGTH_PREFIX_BYTES;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// Most bytes a connection reads from its socket at once, and so the most read-ahead it
/// reserves before a frame's length is known.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The largest frame a connection keeps: length prefix and `max_request_bytes`.
fn largest_frame_bytes(config: &BrokerConfig) -> usize {
    LENGTH_PREFIX_BYTES + config.max_request_bytes
}

/// Most request bytes one connection holds: a quarter of `request_memory_bytes`, but
/// never less than a largest frame plus a read-ahead.
pub fn connection_share_bytes(config: &BrokerConfig) -> usize {
    (config.request_memory_bytes / 4).max(largest_frame_bytes(config) + READ_CHUNK_BYTES)
}

/// Most bytes held by frames larger than a read chunk: three quarters of
/// `request_memory_bytes`, but room for one largest frame whatever the settings.
pub fn large_frames_bytes(config: &BrokerConfig) -> usize {
    (config.request_memory_bytes / 4 * 3).max(largest_frame_bytes(config))
}

/// Most bytes held as read-ahead across all connections: all but one largest frame.
pub fn read_ahead_bytes(config: &BrokerConfig) -> usize {
    config
        .request_memory_bytes
        .saturating_sub(largest_frame_bytes(config))
}

/// The broker-wide budgets, shared by every connection.
#[derive(Debug, Clone)]
pub struct RequestPools {
    broker: Arc<Semaphore>,
    large: Arc<Semaphore>,
    read_ahead: Arc<Semaphore>,
}

impl RequestPools {
    pub fn new(config: &BrokerConfig) -> Self {
        // Never less than one largest frame, length prefix included.
        let total = config.request_memory_bytes.max(largest_frame_bytes(config));
        Self {
            broker: Arc::new(Semaphore::new(total)),
            large: Arc::new(Semaphore::new(large_frames_bytes(config))),
            read_ahead: Arc::new(Semaphore::new(read_ahead_bytes(config))),
        }
    }

    /// Bytes of `request_memory_bytes` not held by any connection.
    pub fn available_bytes(&self) -> usize {
        self.broker.available_permits()
    }
}

/// Where one connection's request memory comes from.
#[derive(Debug)]
pub struct RequestMemory {
    pools: RequestPools,
    connection: Arc<Semaphore>,
}

fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("a frame is smaller than 4 GiB")
}

impl RequestMemory {
    /// A connection's memory: `connection_bytes` of its own (see
    /// [`connection_share_bytes`]), all of it also reserved from the shared `pools`.
    pub fn new(pools: RequestPools, connection_bytes: usize) -> Self {
        Self {
            pools,
            connection: Arc::new(Semaphore::new(connection_bytes)),
        }
    }

    /// Reserves `bytes` of read-ahead if every budget has them now; never waits.
    pub fn try_read_ahead(&self, bytes: usize) -> Option<Reservation> {
        let permits = permits(bytes);
        let read_ahead = self
            .pools
            .read_ahead
            .clone()
            .try_acquire_many_owned(permits);
        let connection = self.connection.clone().try_acquire_many_owned(permits);
        let broker = self.pools.broker.clone().try_acquire_many_owned(permits);
        Some(Reservation {
            connection: connection.ok()?,
            broker: broker.ok()?,
            large: None,
            read_ahead: Some(read_ahead.ok()?),
        })
    }

    /// Reserves a whole frame of `frame_bytes`, of which `held` (its read-ahead, if
    /// any) is already reserved, waiting as long as it takes: the connection's share
    /// first (which only its own answered requests give back), then the large frames'
    /// budget if it is one, then the broker's.
    pub async fn admit(&self, frame_bytes: usize, held: Option<Reservation>) -> Reservation {
        let held_bytes = held.as_ref().map_or(0, Reservation::bytes);
        let missing = permits(frame_bytes - held_bytes);
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(missing)
            .await
            .expect("the connection memory semaphore is never closed");
        let large = if frame_bytes > READ_CHUNK_BYTES {
            let large = self
                .pools
                .large
                .clone()
                .acquire_many_owned(permits(frame_bytes));
            Some(large.await.expect("the memory semaphores are never closed"))
        } else {
            None
        };
        let broker = self
            .pools
            .broker
            .clone()
            .acquire_many_owned(missing)
            .await
            .expect("the memory semaphores are never closed");
        let mut admitted = Reservation {
            connection,
            broker,
            large,
            read_ahead: None,
        };
        if let Some(held) = held {
            admitted.connection.merge(held.connection);
            admitted.broker.merge(held.broker);
            // Its bytes now belong to an admitted frame, not to the read-ahead.
            drop(held.read_ahead);
        }
        admitted
    }
}

/// Bytes reserved from the budgets; dropping it gives them back.
#[derive(Debug)]
pub struct Reservation {
    connection: OwnedSemaphorePermit,
    broker: OwnedSemaphorePermit,
    /// Held by an admitted frame larger than a read chunk.
    large: Option<OwnedSemaphorePermit>,
    /// Held while the bytes are read-ahead, not part of an admitted frame.
    read_ahead: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.broker.num_permits()
    }

    /// Splits the read-ahead covering `bytes` off into a reservation of their own;
    /// `None` if it holds fewer (or is an admitted frame, which is never split).
    pub fn split_read_ahead(&mut self, bytes: usize) -> Option<Reservation> {
        if bytes > self.bytes() || self.large.is_some() {
            return None;
        }
        let read_ahead = match &mut self.read_ahead {
            Some(read_ahead) => Some(read_ahead.split(bytes)?),
            None => None,
        };
        Some(Reservation {
            connection: self.connection.split(bytes)?,
            broker: self.broker.split(bytes)?,
            large: None,
            read_ahead,
        })
    }

    /// Adds read-ahead to read-ahead.
    pub fn merge(&mut self, other: Reservation) {
        debug_assert!(self.large.is_none() && other.large.is_none());
        self.connection.merge(other.connection);
        self.broker.merge(other.broker);
        match (&mut self.read_ahead, other.read_ahead) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// The reservation of a complete frame cut from the read-ahead: it gives its
    /// read-ahead bytes back (the frame needs nothing more) and keeps the rest until
    /// the frame is answered.
    pub fn into_frame(mut self) -> Reservation {
        self.read_ahead = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(broker: usize, large: usize, read_ahead: usize, connection: usize) -> RequestMemory {
        RequestMemory {
            pools: RequestPools {
                broker: Arc::new(Semaphore::new(broker)),
                large: Arc::new(Semaphore::new(large)),
                read_ahead: Arc::new(Semaphore::new(read_ahead)),
            },
            connection: Arc::new(Semaphore::new(connection)),
        }
    }

    fn available(memory: &RequestMemory) -> [usize; 4] {
        [
            memory.pools.broker.available_permits(),
            memory.pools.large.available_permits(),
            memory.pools.read_ahead.available_permits(),
            memory.connection.available_permits(),
        ]
    }

    /// Read-ahead is taken from every budget or not at all, splits into frames that
    /// give the read-ahead back, and everything returns when dropped.
    #[tokio::test]
    async fn read_ahead_splits_into_frames() {
        let memory = memory(100, 75, 50, 60);
        assert!(
            memory.try_read_ahead(51).is_none(),
            "over the read-ahead budget"
        );
        assert_eq!(available(&memory), [100, 75, 50, 60]);
        let mut ahead = memory.try_read_ahead(30).unwrap();
        assert_eq!(available(&memory), [70, 75, 20, 30]);
        let frame = ahead.split_read_ahead(10).unwrap().into_frame();
        assert_eq!((ahead.bytes(), frame.bytes()), (20, 10));
        assert_eq!(available(&memory), [70, 75, 30, 30]);
        assert!(ahead.split_read_ahead(21).is_none());
        drop(frame);
        drop(ahead);
        assert_eq!(available(&memory), [100, 75, 50, 60]);
    }

    /// Admission takes the whole frame, counts its read-ahead as part of it, and a
    /// large frame also holds the large frames' budget.
    #[tokio::test]
    async fn admission_reserves_the_whole_frame() {
        let frame_bytes = READ_CHUNK_BYTES + 10;
        let total = 4 * frame_bytes;
        let memory = memory(total, 2 * frame_bytes, total, total);
        let ahead = memory.try_read_ahead(100).unwrap();
        let admitted = memory.admit(frame_bytes, Some(ahead)).await;
        assert_eq!(admitted.bytes(), frame_bytes);
        assert_eq!(
            available(&memory),
            [3 * frame_bytes, frame_bytes, total, 3 * frame_bytes]
        );
        let mut admitted = admitted;
        assert!(
            admitted.split_read_ahead(1).is_none(),
            "admitted frames stay whole"
        );
        drop(admitted);
        assert_eq!(available(&memory), [total, 2 * frame_bytes, total, total]);
        let small = memory.admit(100, None).await;
        assert_eq!(
            available(&memory)[1],
            2 * frame_bytes,
            "small frames skip it"
        );
        drop(small);
    }

    /// With the defaults, the budgets leave room for the largest frame and for small
    /// requests beside large ones.
    #[test]
    fn budgets_leave_room_for_the_largest_frame() {
        let config = BrokerConfig::for_tests(std::path::Path::new("unused"));
        let largest = largest_frame_bytes(&config);
        assert!(large_frames_bytes(&config) >= largest);
        assert!(large_frames_bytes(&config) < config.request_memory_bytes);
        assert_eq!(
            read_ahead_bytes(&config) + largest,
            config.request_memory_bytes
        );
        assert!(connection_share_bytes(&config) >= largest + READ_CHUNK_BYTES);
        let mut tight = config.clone();
        tight.request_memory_bytes = tight.max_request_bytes;
        assert_eq!(read_ahead_bytes(&tight), 0);
        assert!(large_frames_bytes(&tight) >= largest_frame_bytes(&tight));
    }
}
