//! The future a sent record resolves through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Where a record was stored: `(partition, offset)`.
pub(crate) type DeliveryResult = Result<(i32, i64)>;

/// Resolves to `(partition, offset)` once the broker has acknowledged the record
/// under the producer's `acks` setting, or to the error that ended its delivery.
///
/// With `acks = none` the broker sends nothing back: the future resolves once the
/// request has been written, with offset -1.
///
/// Dropping the future does not cancel the delivery.
#[derive(Debug)]
#[must_use = "a delivery reports whether the record was stored; await it or drop it explicitly"]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<DeliveryResult>,
}

impl DeliveryFuture {
    pub(crate) fn new(receiver: oneshot::Receiver<DeliveryResult>) -> Self {
        Self { receiver }
    }
}

impl Future for DeliveryFuture {
    type Output = DeliveryResult;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        // The sender is dropped without a value only if the producer's task vanished
        // (its runtime shut down), which to the caller is a closed producer.
        Pin::new(&mut self.receiver)
            .poll(context)
            .map(|outcome| outcome.unwrap_or(Err(Error::ProducerClosed)))
    }
}
