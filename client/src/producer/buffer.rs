//! The producer's memory bound: a semaphore of bytes.
//!
//! Every record reserves an upper bound of its encoded size before it enters the
//! accumulator and gives it back only when its batch is acknowledged or failed. When
//! `buffer_bytes_max` is reserved, [`Producer::send`](crate::Producer::send) waits:
//! that wait is the back-pressure that keeps a fast application from outrunning the
//! broker with unbounded memory.
//!
//! The bound covers record bytes; the 61-byte header of each batch (at most one open
//! batch per partition) is not counted.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes reserved per record beyond its key, value and header bytes: the most its
/// varints (length, timestamp and offset deltas, key, value and header count) and
/// attribute byte can take.
pub(crate) const RECORD_OVERHEAD_BYTES_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes reserved per header beyond its key and value: two length varints.
pub(crate) const HEADER_OVERHEAD_BYTES_MAX: usize = 5 + 5;

/// The largest buffer a semaphore can count (one permit per byte, requested as u32).
pub(crate) const BUFFER_BYTES_LIMIT: usize = u32::MAX as usize;

/// A bounded pool of bytes.
#[derive(Debug)]
pub(crate) struct BufferLimit {
    semaphore: Arc<Semaphore>,
    capacity_bytes: usize,
}

/// Bytes held until dropped.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl BufferLimit {
    pub(crate) fn new(capacity_bytes: usize) -> Self {
        assert!(capacity_bytes <= BUFFER_BYTES_LIMIT.min(Semaphore::MAX_PERMITS));
        Self {
            semaphore: Arc::new(Semaphore::new(capacity_bytes)),
            capacity_bytes,
        }
    }

    /// Waits until `bytes` are free and reserves them.
    ///
    /// # Panics
    ///
    /// When `bytes` exceeds the capacity: such a request could never be granted, and
    /// callers refuse oversized records before reserving.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        assert!(
            bytes <= self.capacity_bytes,
            "reserving {bytes} bytes of a {}-byte buffer",
            self.capacity_bytes
        );
        let permit = self
            .semaphore
            .clone()
            .acquire_many_owned(bytes as u32)
            .await
            .expect("the buffer semaphore is never closed");
        Reservation {
            permit: Some(permit),
        }
    }

    /// Bytes reserved right now.
    pub(crate) fn used_bytes(&self) -> usize {
        self.capacity_bytes - self.semaphore.available_permits()
    }
}

impl Reservation {
    /// Adds `other`'s bytes to this reservation.
    pub(crate) fn merge(&mut self, other: Reservation) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A reservation that does not fit waits until enough bytes are given back.
    #[tokio::test]
    async fn reserve_waits_for_room() {
        let buffer = Arc::new(BufferLimit::new(100));
        let held = buffer.reserve(80).await;
        assert_eq!(buffer.used_bytes(), 80);
        let waiting = tokio::spawn({
            let buffer = buffer.clone();
            async move { buffer.reserve(30).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "30 more bytes do not fit in 20");
        drop(held);
        let granted = waiting.await.unwrap();
        assert_eq!(granted.bytes(), 30);
        assert_eq!(buffer.used_bytes(), 30);
    }

    /// Merged reservations hold the sum and release it all at once.
    #[tokio::test]
    async fn merge_holds_the_sum() {
        let buffer = BufferLimit::new(100);
        let mut batch = Reservation::default();
        batch.merge(buffer.reserve(10).await);
        batch.merge(buffer.reserve(15).await);
        batch.merge(Reservation::default());
        assert_eq!(batch.bytes(), 25);
        assert_eq!(buffer.used_bytes(), 25);
        drop(batch);
        assert_eq!(buffer.used_bytes(), 0);
    }

    /// Many concurrent writers never hold more than the capacity.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_stay_bounded() {
        let buffer = Arc::new(BufferLimit::new(1_000));
        let mut tasks = Vec::new();
        for task in 0..8 {
            let buffer = buffer.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..50 {
                    let bytes = 50 + (task * 37 + round * 11) % 200;
                    let reservation = buffer.reserve(bytes).await;
                    assert!(buffer.used_bytes() <= 1_000);
                    tokio::task::yield_now().await;
                    drop(reservation);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(buffer.used_bytes(), 0);
    }
}
