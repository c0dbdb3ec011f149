//! The HTTP listener's limits. At most [`HTTP_CONNECTIONS_MAX`] connections are open at
//! once (accepting waits beyond it, leaving newcomers in the kernel's backlog), and a
//! connection that moves no byte for [`HTTP_IDLE_TIMEOUT`] is closed, so that idle
//! keep-alive connections and stalled clients cannot hold the slots, or file
//! descriptors, forever. axum's own server has neither limit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Most HTTP connections open at once. The admin API serves operators and scrapers,
/// not clients; this is generous for them and small next to a file descriptor limit.
pub const HTTP_CONNECTIONS_MAX: usize = 256;

/// A connection that reads or writes nothing for this long is closed.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP listener that hands out at most `slots` connections at once.
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, connections_max: usize, idle_timeout: Duration) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(connections_max)),
            idle_timeout,
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        // axum's accept retries (and logs) failures such as running out of descriptors.
        let (stream, peer) = <TcpListener as Listener>::accept(&mut self.listener).await;
        (LimitedStream::new(stream, slot, self.idle_timeout), peer)
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
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        Self {
            stream,
            _slot: slot,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    /// Moves the idle deadline after the stream made progress.
    fn progressed(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
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
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.progressed();
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
        let poll = Pin::new(&mut this.stream).poll_read(context, buffer);
        this.track(context, poll)
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
        this.track(context, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(context, buffers);
        this.track(context, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(context);
        this.track(context, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
