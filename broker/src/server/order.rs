//! The order in which one connection's requests take effect.
//!
//! Requests of a connection are handled on tasks of their own, so without help they
//! would take effect in whatever order the runtime runs them. A [`Chain`] (one per
//! kind of effect, per connection) hands each request a [`Turn`]: a request waits for
//! its turn before the effect that must keep request order, and passes it on (by
//! dropping it) after. Produce requests use one chain, so appends to a partition keep
//! the order in which they were sent; fetch requests use another, so a connection
//! reads one fetch response at a time (see `connection.rs`).

use tokio::sync::oneshot;

/// Hands out turns in the order requests arrive.
#[derive(Debug, Default)]
pub struct Chain {
    last: Option<oneshot::Receiver<()>>,
}

impl Chain {
    /// The turn of the next request: it comes after every turn handed out before.
    pub fn next_turn(&mut self) -> Turn {
        let (done, next) = oneshot::channel();
        Turn {
            previous: self.last.replace(next),
            _done: Some(done),
        }
    }
}

/// One request's place in a [`Chain`]. Dropping it lets the next request go.
#[derive(Debug, Default)]
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    _done: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// A turn outside any chain: waiting for it returns at once.
    pub fn free() -> Self {
        Self::default()
    }

    /// Waits until every earlier turn of the chain has been passed on (or its request
    /// ended in any way: a dropped turn counts as passed).
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err means the sender was dropped without sending: also passed.
            previous.await.ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns are granted in the order they were handed out, whatever order their
    /// holders ask in.
    #[tokio::test]
    async fn turns_follow_the_chain() {
        let mut chain = Chain::default();
        let mut first = chain.next_turn();
        let mut second = chain.next_turn();
        let mut second_waits = Box::pin(second.wait());
        assert!(futures::poll!(second_waits.as_mut()).is_pending());
        first.wait().await;
        drop(first);
        second_waits.await;
        let mut free = Turn::free();
        free.wait().await;
    }
}
