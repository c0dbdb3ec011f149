//! The HTTP listener's limits. At most [`HTTP_CONNECTIONS_MAX`] connections are served
//! at once; beyond them, [`HTTP_PROBE_CONNECTIONS_MAX`] more are kept for the health
//! probes: such a connection is served `/healthz` and `/readyz` only and closed after
//! [`HTTP_PROBE_IDLE_TIMEOUT`] without traffic, so that a liveness probe still gets
//! through, within about that long, when idle clients hold every other slot. Beyond
//! both, accepting waits, leaving newcomers in the kernel's backlog. Other connections
//! are closed when they move no byte for [`HTTP_IDLE_TIMEOUT`] between requests, or for
//! [`HTTP_STALL_TIMEOUT`] within one, so that idle keep-alive connections and stalled
//! clients cannot hold the slots, or file descriptors, for long. axum's own server has
//! none of these limits.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most HTTP connections served at once. The admin API serves operators and scrapers,
/// not clients; this is generous for them and small next to a file descriptor limit.
pub const HTTP_CONNECTIONS_MAX: usize = 256;

/// Connections kept for the health probes once [`HTTP_CONNECTIONS_MAX`] are open.
pub const HTTP_PROBE_CONNECTIONS_MAX: usize = 32;

/// A connection that moves no byte for this long after its last response (an idle
/// keep-alive connection, or one that never sends a request) is closed.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection kept for the health probes that moves no byte for this long is closed.
pub const HTTP_PROBE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection that moves no byte for this long while a request is being received or
/// answered is closed.
pub const HTTP_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection may move no byte before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Between requests, on a connection served every route.
    pub idle: Duration,
    /// On a connection kept for the health probes.
    pub probe_idle: Duration,
    /// While a request is being received or answered.
    pub stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            idle: HTTP_IDLE_TIMEOUT,
            probe_idle: HTTP_PROBE_IDLE_TIMEOUT,
            stall: HTTP_STALL_TIMEOUT,
        }
    }
}

/// Which routes a connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// Every route.
    Full,
    /// Only the health probes: a connection accepted beyond [`HTTP_CONNECTIONS_MAX`].
    ProbesOnly,
}

impl Connected<IncomingStream<'_, LimitedListener>> for ConnectionKind {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        stream.io().kind
    }
}

/// A TCP listener that serves at most `connections_max` connections at once, and
/// `probe_connections_max` more for the health probes.
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    probe_slots: Arc<Semaphore>,
    timeouts: Timeouts,
}

impl LimitedListener {
    pub fn new(
        listener: TcpListener,
        connections_max: usize,
        probe_connections_max: usize,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(connections_max)),
            probe_slots: Arc::new(Semaphore::new(probe_connections_max)),
            timeouts,
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        // axum's accept retries (and logs) failures such as running out of descriptors.
        let (stream, peer) = <TcpListener as Listener>::accept(&mut self.listener).await;
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let stream = LimitedStream::new(stream, slot, ConnectionKind::Full, self.timeouts);
            return (stream, peer);
        }
        // Probe connections are short-lived: waiting for one to end takes at most
        // about HTTP_PROBE_IDLE_TIMEOUT.
        let slot = self
            .probe_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        (
            LimitedStream::new(stream, slot, ConnectionKind::ProbesOnly, self.timeouts),
            peer,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection holding its slot, closed after a period without traffic.
#[derive(Debug)]
pub struct LimitedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    kind: ConnectionKind,
    timeouts: Timeouts,
    /// Between a request's first bytes and its response's last (as far as the stream
    /// can tell): the stall timeout applies, else the idle one.
    in_request: bool,
    idle: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        kind: ConnectionKind,
        timeouts: Timeouts,
    ) -> Self {
        let mut stream = Self {
            stream,
            _slot: slot,
            kind,
            timeouts,
            in_request: false,
            idle: Box::pin(tokio::time::sleep(Duration::ZERO)),
        };
        stream.progressed(false);
        stream
    }

    /// Moves the deadline after the stream made progress: reading starts (or continues)
    /// a request, writing answers it.
    fn progressed(&mut self, reading: bool) {
        self.in_request = reading;
        let timeout = match (self.in_request, self.kind) {
            (true, _) => self.timeouts.stall,
            (false, ConnectionKind::Full) => self.timeouts.idle,
            (false, ConnectionKind::ProbesOnly) => self.timeouts.probe_idle,
        };
        self.idle.as_mut().reset(Instant::now() + timeout);
    }

    /// For an operation that is waiting: fails it once the connection has been idle
    /// too long, else keeps waiting (the timer wakes the task at the deadline).
    fn waiting<T>(&mut self, context: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.idle.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn track<T>(
        &mut self,
        context: &mut Context<'_>,
        reading: bool,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.progressed(reading);
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(context),
        }
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(context, buffer);
        // A read of nothing (end of stream) is no request.
        let reading = buffer.filled().len() > before;
        this.track(context, reading, poll)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(context, bytes);
        this.track(context, false, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(context, buffers);
        this.track(context, false, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A flush moves no byte (the server flushes after reading a request too, before
        // any answer exists): it neither starts nor ends the wait for an answer.
        match Pin::new(&mut this.stream).poll_flush(context) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.waiting(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `router` behind a listener with the given timeouts; returns its address.
    async fn serve(router: Router, timeouts: Timeouts) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = LimitedListener::new(tcp, 4, 1, timeouts);
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    /// Sends one request and reads until the server closes the connection.
    async fn request(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: fjord\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response));
        read.await.expect("no answer within 60 s").unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn a_request_answered_after_the_idle_timeout_is_answered() {
        let idle = Duration::from_millis(200);
        let slow = move || async move {
            tokio::time::sleep(idle * 5).await;
            "slow answer"
        };
        let timeouts = Timeouts {
            idle,
            probe_idle: idle,
            stall: Duration::from_secs(60),
        };
        let address = serve(Router::new().route("/slow", get(slow)), timeouts).await;
        let response = request(address, "/slow").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        assert!(response.ends_with("slow answer"), "{response:?}");
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
        let timeouts = Timeouts {
            idle: Duration::from_millis(200),
            probe_idle: Duration::from_millis(200),
            stall: Duration::from_secs(60),
        };
        let address = serve(Router::new(), timeouts).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let started = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut byte));
        let read = read
            .await
            .expect("the idle connection was not closed within 60 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        println!("closed after {:?}", started.elapsed());
    }
}
