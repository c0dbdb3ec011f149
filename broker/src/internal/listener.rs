//! The server side of the internal listener: accepts peers' connections and answers
//! each request frame with the response its service gives.
//!
//! A connection's requests are answered concurrently, up to [`IN_FLIGHT_MAX`] at once,
//! each as soon as it is ready (the caller matches answers by request id), so that a
//! slow request (a metadata change waiting for the quorum) does not hold up the quick
//! ones behind it (heartbeats, Raft messages). Anything that is not a well-formed request
//! (bad length, magic, version or checksum, a response kind, a kind no service knows, a
//! body that does not read as its kind's message) closes that connection with a
//! warning; other connections go on. Connections beyond [`CONNECTIONS_MAX`] are closed
//! on accept, and connections idle for [`CONNECTION_IDLE_TIMEOUT`] are closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::frame::{Frame, RESPONSE_BIT};
use super::read_frame;

/// Open connections at most: a quorum has a handful of peers, each with one connection
/// (a few more while reconnecting).
pub const CONNECTIONS_MAX: usize = 64;
/// Requests of one connection being answered at once; beyond it the connection is not
/// read until one is answered.
pub const IN_FLIGHT_MAX: usize = 32;
/// A connection with no frame for this long is closed, so that connections that say
/// nothing cannot hold the slots of [`CONNECTIONS_MAX`] for ever. A peer with something
/// to say connects again.
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What answers the requests that arrive on the internal listener.
pub trait InternalService: Send + Sync + 'static {
    /// Answers one request with a frame of kind `request.kind | RESPONSE_BIT` and the
    /// same request id. An error closes the connection.
    fn handle(&self, request: Frame) -> impl Future<Output = Result<Frame, ServiceError>> + Send;
}

/// A request the service refuses to answer: the peer is not speaking the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("unknown request kind {kind:#04x}")]
    UnknownKind { kind: u8 },
    #[error("request of kind {kind:#04x} cannot be read: {reason}")]
    BadBody { kind: u8, reason: String },
}

/// A bound internal listener, not yet serving.
#[derive(Debug)]
pub struct InternalListener {
    listener: TcpListener,
}

/// A listener being served; [`RunningListener::shutdown`] stops it and closes its
/// connections.
#[derive(Debug)]
pub struct RunningListener {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl InternalListener {
    pub async fn bind(address: &str) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(address).await?,
        })
    }

    /// Serves an already bound socket (tests pass one bound to port 0).
    pub fn from_listener(listener: TcpListener) -> Self {
        Self { listener }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts accepting connections and answering them with `service`.
    pub fn serve<S: InternalService>(self, service: Arc<S>) -> std::io::Result<RunningListener> {
        let local_addr = self.listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(self.listener, service, stopped));
        Ok(RunningListener {
            local_addr,
            stop,
            task,
        })
    }
}

impl RunningListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits until that is done.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "internal listener task failed");
        }
    }
}

async fn accept_loop<S: InternalService>(
    listener: TcpListener,
    service: Arc<S>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= CONNECTIONS_MAX {
                        tracing::warn!(%peer, "internal listener: {CONNECTIONS_MAX} connections open, closing a new one");
                        continue;
                    }
                    connections.spawn(serve_connection(stream, peer, service.clone()));
                }
                Err(error) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!(%error, "internal listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn serve_connection<S: InternalService>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let (reader, writer) = stream.into_split();
    let (answers, to_write) = mpsc::channel(IN_FLIGHT_MAX);
    // Whichever ends first ends the connection; the other is dropped with it, and so are
    // the requests still being answered.
    tokio::select! {
        () = read_requests(reader, peer, service, answers) => {}
        () = write_answers(writer, peer, to_write) => {}
    }
}

/// Reads requests and answers each in a task of its own, at most [`IN_FLIGHT_MAX`] at
/// once; returns when the connection is closed, idle or sends something wrong.
async fn read_requests<S: InternalService>(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    service: Arc<S>,
    answers: mpsc::Sender<Result<Frame, ServiceError>>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut answering = JoinSet::new();
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        while answering.try_join_next().is_some() {}
        let read = tokio::time::timeout(CONNECTION_IDLE_TIMEOUT, read_frame(&mut reader));
        let request = match read.await {
            Err(_) => {
                tracing::debug!(%peer, "internal listener: closing an idle connection");
                return;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "internal listener: closing a connection that sent a bad frame");
                return;
            }
        };
        if request.kind & RESPONSE_BIT != 0 {
            tracing::warn!(%peer, kind = request.kind, "internal listener: closing a connection that sent a response as a request");
            return;
        }
        let (service, answers) = (service.clone(), answers.clone());
        answering.spawn(async move {
            let answer = service.handle(request).await;
            // Gone only when the connection ended.
            let _sent = answers.send(answer).await;
            drop(slot);
        });
    }
}

/// Writes answers as they come; returns when the peer went away or a request was
/// refused (the peer is not speaking the protocol).
async fn write_answers(
    mut writer: OwnedWriteHalf,
    peer: SocketAddr,
    mut to_write: mpsc::Receiver<Result<Frame, ServiceError>>,
) {
    let mut buffer = BytesMut::new();
    while let Some(answer) = to_write.recv().await {
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%peer, %error, "internal listener: closing a connection that sent a bad request");
                return;
            }
        };
        buffer.clear();
        if let Err(error) = response.encode(&mut buffer) {
            tracing::error!(%peer, %error, "internal listener: a response cannot be sent");
            return;
        }
        if let Err(error) = writer.write_all(&buffer).await {
            tracing::debug!(%peer, %error, "internal listener: peer went away");
            return;
        }
    }
}
