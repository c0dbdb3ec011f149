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
}

impl LimitedListener {
    pub fn new(
        listener: TcpListener,
        connections_max: usize,
        probe_connections_max: usize,
    ) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(connections_max)),
            probe_slots: Arc::new(Semaphore::new(probe_connections_max)),
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
            return (LimitedStream::new(stream, slot, ConnectionKind::Full), peer);
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
            LimitedStream::new(stream, slot, ConnectionKind::ProbesOnly),
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
    /// Between a request's first bytes and its response's last (as far as the stream
    /// can tell): the stall timeout applies, else the idle one.
    in_request: bool,
    idle: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, kind: ConnectionKind) -> Self {
        Self {
            stream,
            _slot: slot,
            kind,
            in_request: false,
            idle: Box::pin(tokio::time::sleep(Self::idle_timeout(kind))),
        }
    }

    fn idle_timeout(kind: ConnectionKind) -> Duration {
        match kind {
            ConnectionKind::Full => HTTP_IDLE_TIMEOUT,
            ConnectionKind::ProbesOnly => HTTP_PROBE_IDLE_TIMEOUT,
        }
    }

    /// Moves the deadline after the stream made progress: reading starts (or continues)
    /// a request, writing answers it.
    fn progressed(&mut self, reading: bool) {
        self.in_request = reading;
        let timeout = if self.in_request {
            HTTP_STALL_TIMEOUT
        } else {
            Self::idle_timeout(self.kind)
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
        let poll = Pin::new(&mut this.stream).poll_flush(context);
        this.track(context, false, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
