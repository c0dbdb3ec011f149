//! The client listener: accepts connections up to the cap and runs one task per
//! connection (see [`connection`]); connections over the cap are answered `BROKER_BUSY`
//! (see [`busy`]). Requests are handled in [`handlers`]; what they all share is
//! [`Handles`].

pub mod busy;
pub mod connection;
pub mod handlers;
pub mod handles;
pub mod memory;
pub mod order;
pub mod response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use handles::{Handles, ServerSettings};

use crate::metadata::Listener;

/// Accepts connections on every listener until `shutdown` turns true, then waits (up
/// to the shutdown timeout) for every connection to finish its in-flight requests. The
/// connection cap counts the connections of all listeners together.
pub async fn serve(
    listeners: Vec<(TcpListener, Listener)>,
    handles: Arc<Handles>,
    shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(handles.settings.max_connections));
    let busy_answers = Arc::new(Semaphore::new(busy::BUSY_ANSWERS_MAX));
    // Refused connections are not waited for at shutdown: dropping the set aborts them.
    let mut refusals = JoinSet::new();
    let mut tasks = JoinSet::new();
    let mut stop = shutdown.clone();
    let stopped = async move {
        let _changed = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            (accepted, listener) = accept(&listeners) => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = handles.settings.max_connections, "connection limit reached; answering BROKER_BUSY and closing the new connection");
                        metrics::counter!("fjord_connections_rejected_total").increment(1);
                        if let Ok(slot) = busy_answers.clone().try_acquire_owned() {
                            refusals.spawn(busy::answer_busy(stream, peer, slot));
                        }
                        continue;
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    tasks.spawn(connection::run(stream, peer, listener, handles.clone(), shutdown.clone(), permit));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            Some(_) = refusals.join_next(), if !refusals.is_empty() => {}
        }
    }
    drop(listeners);
    drop(refusals);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(
        Duration::from_millis(handles.settings.shutdown_timeout_ms),
        drain,
    )
    .await
    .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "shutdown timeout: closing connections with requests in flight"
        );
        tasks.shutdown().await;
    }
}

/// The next connection accepted by any of `listeners` (or its error), and which kind
/// of listener took it.
async fn accept(
    listeners: &[(TcpListener, Listener)],
) -> (std::io::Result<(TcpStream, SocketAddr)>, Listener) {
    std::future::poll_fn(|context| {
        for (listener, kind) in listeners {
            if let Poll::Ready(accepted) = listener.poll_accept(context) {
                return Poll::Ready((accepted, *kind));
            }
        }
        Poll::Pending
    })
    .await
}
