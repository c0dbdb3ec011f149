//! The client side of the internal listener: calls to one peer over one connection.
//!
//! Every call takes a new request id, writes its frame and waits for the answer with
//! that id, so calls from several tasks share the connection and an answer that comes
//! after its caller gave up is recognised and dropped. When the connection fails (the
//! peer closes it, a read or write fails, an answer does not make sense) every waiting
//! call fails at once and the next call connects again. Connecting and each whole call
//! are bounded by timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;

use super::frame::{Frame, FrameError, RESPONSE_BIT};
use super::read_frame;

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("connection to {address} failed: {reason}")]
    Disconnected { address: String, reason: String },
    #[error("no answer from {address} within {timeout:?}")]
    TimedOut { address: String, timeout: Duration },
    #[error("request cannot be sent: {0}")]
    TooLarge(FrameError),
}

/// Calls to the peer at one address.
#[derive(Debug)]
pub struct PeerClient {
    address: String,
    connect_timeout: Duration,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_request_id: AtomicU64,
    connections_opened: AtomicU64,
}

impl PeerClient {
    pub fn new(address: String, connect_timeout: Duration) -> Self {
        Self {
            address,
            connect_timeout,
            connection: tokio::sync::Mutex::new(None),
            next_request_id: AtomicU64::new(1),
            connections_opened: AtomicU64::new(0),
        }
    }

    /// Connections opened so far (each failure makes the next call open another).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends a request of `kind` and returns the body of its answer, all within
    /// `timeout`.
    pub async fn call(
        &self,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let mut buffer = BytesMut::new();
        Frame {
            kind,
            request_id,
            body,
        }
        .encode(&mut buffer)
        .map_err(CallError::TooLarge)?;
        match tokio::time::timeout(timeout, self.exchange(kind, request_id, &buffer, timeout)).await
        {
            Ok(result) => result,
            Err(_) => Err(CallError::TimedOut {
                address: self.address.clone(),
                timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        kind: u8,
        request_id: u64,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let connection = self.connection(timeout).await?;
        let disconnected = |reason: String| CallError::Disconnected {
            address: self.address.clone(),
            reason,
        };
        let mut waiter = connection.register(request_id).map_err(disconnected)?;
        connection.write(frame).await.map_err(disconnected)?;
        let answer = match (&mut waiter.answer).await {
            Ok(answer) => answer,
            Err(_) => return Err(disconnected(connection.closed_reason())),
        };
        if answer.kind != kind | RESPONSE_BIT {
            let reason = format!(
                "answered kind {:#04x} to a request of kind {kind:#04x}",
                answer.kind
            );
            connection.close(reason.clone());
            return Err(disconnected(reason));
        }
        Ok(answer.body)
    }

    /// The open connection, or a new one.
    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, CallError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        // Dropping a failed connection closes its socket.
        *slot = None;
        let unreachable = |reason: String| CallError::Unreachable {
            address: self.address.clone(),
            reason,
        };
        let connect_timeout = self.connect_timeout.min(timeout);
        let stream =
            match tokio::time::timeout(connect_timeout, TcpStream::connect(&self.address)).await {
                Err(_) => return Err(unreachable(format!("timed out after {connect_timeout:?}"))),
                Ok(Err(error)) => return Err(unreachable(error.to_string())),
                Ok(Ok(stream)) => stream,
            };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(address = %self.address, %error, "cannot set TCP_NODELAY");
        }
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::start(stream));
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

/// The calls waiting on a connection, or why it is closed.
#[derive(Debug, Default)]
struct Waiters {
    waiting: HashMap<u64, oneshot::Sender<Frame>>,
    closed: Option<String>,
}

impl Waiters {
    /// Fails every waiting call (their senders drop) and refuses new ones.
    fn close(&mut self, reason: String) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        self.waiting.clear();
    }
}

#[derive(Debug)]
struct Connection {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Arc<Mutex<Waiters>>,
    reader: tokio::task::JoinHandle<()>,
}

/// A call's place among the waiters, removed when the call ends however it ends.
struct Waiter<'a> {
    waiters: &'a Mutex<Waiters>,
    request_id: u64,
    answer: oneshot::Receiver<Frame>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        lock(self.waiters).waiting.remove(&self.request_id);
    }
}

fn lock(waiters: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    waiters.lock().expect("waiters lock poisoned")
}

impl Connection {
    fn start(stream: TcpStream) -> Self {
        let (mut read_half, write_half) = stream.into_split();
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let reader_waiters = waiters.clone();
        let reader = tokio::spawn(async move {
            let reason = loop {
                match read_frame(&mut read_half).await {
                    Ok(Some(answer)) => {
                        let waiter = lock(&reader_waiters).waiting.remove(&answer.request_id);
                        // No waiter: the call timed out before its answer came.
                        if let Some(waiter) = waiter {
                            waiter.send(answer).ok();
                        }
                    }
                    Ok(None) => break "closed by the peer".to_owned(),
                    Err(error) => break error.to_string(),
                }
            };
            lock(&reader_waiters).close(reason);
        });
        Self {
            writer: tokio::sync::Mutex::new(write_half),
            waiters,
            reader,
        }
    }

    fn is_closed(&self) -> bool {
        lock(&self.waiters).closed.is_some()
    }

    fn closed_reason(&self) -> String {
        lock(&self.waiters)
            .closed
            .clone()
            .unwrap_or_else(|| "closed".to_owned())
    }

    fn close(&self, reason: String) {
        lock(&self.waiters).close(reason);
    }

    fn register(&self, request_id: u64) -> Result<Waiter<'_>, String> {
        let (sender, answer) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        if let Some(reason) = &waiters.closed {
            return Err(reason.clone());
        }
        waiters.waiting.insert(request_id, sender);
        Ok(Waiter {
            waiters: &self.waiters,
            request_id,
            answer,
        })
    }

    /// Writes a whole frame. A write that fails, or is abandoned half way when its call
    /// times out, leaves the stream out of step, so the connection is closed.
    async fn write(&self, frame: &[u8]) -> Result<(), String> {
        let mut writer = self.writer.lock().await;
        if let Some(reason) = &lock(&self.waiters).closed {
            return Err(reason.clone());
        }
        let mut unfinished = CloseUnlessFinished {
            connection: self,
            finished: false,
        };
        let result = writer.write_all(frame).await;
        unfinished.finished = result.is_ok();
        result.map_err(|error| format!("write failed: {error}"))
    }
}

struct CloseUnlessFinished<'a> {
    connection: &'a Connection,
    finished: bool,
}

impl Drop for CloseUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.connection
                .close("a request was written only in part".to_owned());
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
