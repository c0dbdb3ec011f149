//! One TCP connection to one broker, with pipelined requests.
//!
//! ```text
//!  request() ──frame──▶ [bounded queue] ──▶ writer task ──▶ socket ──▶ broker
//!      ▲                                                                 │
//!      └── oneshot ◀── pending waiters, by correlation id ◀── reader task ◀┘
//! ```
//!
//! Any number of tasks may share a [`Connection`] and have requests outstanding at once
//! (up to `in_flight_requests_max`); each registers a waiter under a fresh correlation
//! id *before* its frame is queued, so that the reader task can never see a response
//! it cannot deliver. The broker answers in request order, but matching by correlation
//! id does not rely on that.
//!
//! A request that times out removes its waiter; a late response is then dropped. When
//! either task fails, every waiter gets the same error and the connection reports
//! itself closed, so that the pool ([`crate::pool`]) opens a new one. Produce requests
//! with `acks = 0` get no response at all: they are written without a waiter and
//! complete once the writer has flushed them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::ApiKey;
use fjord_protocol::frame::{self, Decoded, LENGTH_PREFIX_BYTES, RequestHeader};
use fjord_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::versions::NegotiatedVersions;

/// Frames queued for the writer task; a caller beyond this waits for room.
const OUTGOING_FRAMES_MAX: usize = 256;
/// Frames the writer packs into one flush before it yields to the socket.
const WRITE_COALESCE_FRAMES_MAX: usize = 64;
/// Buffer of the writer, and the read size of the reader.
const IO_BUFFER_BYTES: usize = 64 * 1024;

/// A cheap-to-clone handle on one broker connection.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    address: String,
    client_id: Option<String>,
    correlation_ids: AtomicI32,
    pending: Arc<Pending>,
    outgoing: mpsc::Sender<Outgoing>,
    in_flight: Semaphore,
    /// Set once, by [`Connection::open`], before the connection is handed out.
    versions: OnceLock<NegotiatedVersions>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone, so nobody waits for anything on this connection.
        self.reader.abort();
        self.writer.abort();
    }
}

/// A frame for the writer, with a notification for requests that expect no response.
#[derive(Debug)]
struct Outgoing {
    frame: Bytes,
    written: Option<oneshot::Sender<()>>,
}

/// Requests waiting for their response, and why the connection closed once it has.
#[derive(Debug, Default)]
struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    waiters: HashMap<i32, Waiter>,
    closed: Option<Error>,
}

#[derive(Debug)]
struct Waiter {
    api: ApiKey,
    sender: oneshot::Sender<Result<Bytes>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        // No code panics while holding this lock, so poisoning cannot happen; if it
        // did, the map is still consistent (every operation is a single insert/remove).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a waiter under the first free id from `first_id` on.
    fn register(&self, first_id: i32, waiter: Waiter) -> Result<i32> {
        let mut state = self.lock();
        if let Some(error) = &state.closed {
            return Err(error.clone());
        }
        let mut id = first_id;
        loop {
            // Ids wrap around after 2^32 requests; skip any still in use.
            match state.waiters.entry(id) {
                Entry::Vacant(slot) => {
                    slot.insert(waiter);
                    return Ok(id);
                }
                Entry::Occupied(_) => id = id.wrapping_add(1),
            }
        }
    }

    fn take(&self, correlation_id: i32) -> Option<Waiter> {
        self.lock().waiters.remove(&correlation_id)
    }

    /// Marks the connection closed and fails every waiter with `error`.
    fn close(&self, error: Error) {
        let waiters: Vec<Waiter> = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(error.clone());
            }
            state.waiters.drain().map(|(_, waiter)| waiter).collect()
        };
        for waiter in waiters {
            notify(waiter.sender, Err(error.clone()));
        }
    }

    fn closed(&self) -> Option<Error> {
        self.lock().closed.clone()
    }
}

/// Removes a waiter when its request is abandoned (timeout or cancellation).
struct WaiterGuard<'a> {
    pending: &'a Pending,
    correlation_id: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        drop(self.pending.take(self.correlation_id));
    }
}

/// Sends on a oneshot whose receiver may have given up waiting, which is fine.
fn notify<T>(sender: oneshot::Sender<T>, value: T) {
    if sender.send(value).is_err() {
        tracing::trace!("a request was abandoned before its outcome arrived");
    }
}

impl Connection {
    /// Connects to `address` and negotiates API versions.
    pub(crate) async fn open(address: &str, config: &ClientConfig) -> Result<Connection> {
        let connect_timeout = config.connect_timeout();
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await
        {
            Err(_elapsed) => {
                return Err(Error::connect(
                    address,
                    io::Error::from(io::ErrorKind::TimedOut),
                ));
            }
            Ok(Err(error)) => return Err(Error::connect(address, error)),
            Ok(Ok(stream)) => stream,
        };
        // Requests are small and latency matters more than packet count.
        stream
            .set_nodelay(true)
            .map_err(|error| Error::connect(address, error))?;
        let (read_half, write_half) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let (outgoing, outgoing_receiver) = mpsc::channel(OUTGOING_FRAMES_MAX);
        let reader = tokio::spawn(read_frames(read_half, pending.clone(), address.to_owned()));
        let writer = tokio::spawn(write_frames(
            write_half,
            outgoing_receiver,
            pending.clone(),
            address.to_owned(),
        ));
        let connection = Connection {
            shared: Arc::new(Shared {
                address: address.to_owned(),
                client_id: Some(config.client_id.clone()),
                correlation_ids: AtomicI32::new(0),
                pending,
                outgoing,
                in_flight: Semaphore::new(config.in_flight_requests_max),
                versions: OnceLock::new(),
                reader,
                writer,
            }),
        };
        let api_versions = ApiKey::ApiVersions;
        let response: ApiVersionsResponse = connection
            .request_at_version(
                api_versions,
                api_versions.versions().max,
                &ApiVersionsRequest,
                connect_timeout,
            )
            .await?;
        let negotiated = NegotiatedVersions::negotiate(&response, ApiKey::versions);
        tracing::debug!(address, ?negotiated, "connected");
        connection
            .shared
            .versions
            .set(negotiated)
            .expect("versions are negotiated once, before the connection is shared");
        Ok(connection)
    }

    /// Whether the connection has failed; a closed connection never recovers.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.pending.closed().is_some()
    }

    /// Sends `request` and waits up to `timeout` for its response body.
    pub(crate) async fn request<Req: Message, Resp: Message>(
        &self,
        api: ApiKey,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let version = self.version(api)?;
        self.request_at_version(api, version, request, timeout)
            .await
    }

    /// Writes a request that the broker does not answer (Produce with `acks = 0`);
    /// completes once the frame has been flushed to the socket.
    pub(crate) async fn send_without_response<Req: Message>(
        &self,
        api: ApiKey,
        request: &Req,
        timeout: Duration,
    ) -> Result<()> {
        let version = self.version(api)?;
        let work = async {
            let correlation_id = self.next_correlation_id();
            let frame = self.encode(api, version, correlation_id, request);
            let (written, done) = oneshot::channel();
            self.shared
                .outgoing
                .send(Outgoing {
                    frame,
                    written: Some(written),
                })
                .await
                .map_err(|_closed| self.closed_error())?;
            done.await.map_err(|_dropped| self.closed_error())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_elapsed| self.timeout_error(api, timeout))?
    }

    async fn request_at_version<Req: Message, Resp: Message>(
        &self,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let body = tokio::time::timeout(timeout, self.round_trip(api, version, request))
            .await
            .map_err(|_elapsed| self.timeout_error(api, timeout))??;
        Resp::decode_body(body).map_err(|source| Error::Decode {
            address: self.shared.address.clone(),
            source,
        })
    }

    async fn round_trip<Req: Message>(
        &self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Bytes> {
        let _permit = self
            .shared
            .in_flight
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        let (sender, receiver) = oneshot::channel();
        let correlation_id = self
            .shared
            .pending
            .register(self.next_correlation_id(), Waiter { api, sender })?;
        let _guard = WaiterGuard {
            pending: &self.shared.pending,
            correlation_id,
        };
        let frame = self.encode(api, version, correlation_id, request);
        self.shared
            .outgoing
            .send(Outgoing {
                frame,
                written: None,
            })
            .await
            .map_err(|_closed| self.closed_error())?;
        receiver.await.map_err(|_dropped| self.closed_error())?
    }

    fn version(&self, api: ApiKey) -> Result<i16> {
        self.shared
            .versions
            .get()
            .expect("versions are negotiated before the connection is shared")
            .version(api)
            .ok_or_else(|| Error::UnsupportedApi {
                address: self.shared.address.clone(),
                api: api.name(),
            })
    }

    fn next_correlation_id(&self) -> i32 {
        self.shared.correlation_ids.fetch_add(1, Ordering::Relaxed)
    }

    fn encode<Req: Message>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        request: &Req,
    ) -> Bytes {
        let header = RequestHeader {
            api_key: api.code(),
            api_version: version,
            correlation_id,
            client_id: self.shared.client_id.clone(),
        };
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, &header, |out| {
            request.encode_version(version, out)
        });
        out.freeze()
    }

    fn closed_error(&self) -> Error {
        self.shared
            .pending
            .closed()
            .unwrap_or_else(|| Error::ConnectionClosed {
                address: self.shared.address.clone(),
            })
    }

    fn timeout_error(&self, api: ApiKey, timeout: Duration) -> Error {
        Error::Timeout {
            address: self.shared.address.clone(),
            api: api.name(),
            timeout_ms: timeout.as_millis() as u64,
        }
    }
}

/// The writer task: writes queued frames, coalescing what is queued into one flush.
async fn write_frames(
    half: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outgoing>,
    pending: Arc<Pending>,
    address: String,
) {
    let mut writer = BufWriter::with_capacity(IO_BUFFER_BYTES, half);
    let mut written = Vec::with_capacity(WRITE_COALESCE_FRAMES_MAX);
    while let Some(first) = outgoing.recv().await {
        let mut next = Some(first);
        let mut frames = 0;
        let mut result = Ok(());
        while let Some(item) = next.take() {
            if let Err(error) = writer.write_all(&item.frame).await {
                result = Err(error);
                break;
            }
            written.extend(item.written);
            frames += 1;
            if frames < WRITE_COALESCE_FRAMES_MAX {
                next = outgoing.try_recv().ok();
            }
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        match result {
            Ok(()) => written.drain(..).for_each(|sender| notify(sender, ())),
            Err(error) => {
                tracing::debug!(address, %error, "write failed; closing the connection");
                pending.close(Error::io(&address, error));
                // Dropping the queue fails the callers still waiting for room in it
                // or for their frame to be written.
                return;
            }
        }
    }
}

/// The reader task: splits the byte stream into frames and hands each response to
/// its waiter.
async fn read_frames(mut half: OwnedReadHalf, pending: Arc<Pending>, address: String) {
    let mut buffer = BytesMut::with_capacity(IO_BUFFER_BYTES);
    let error = loop {
        if let Err(error) = dispatch_frames(&mut buffer, &pending, &address) {
            break error;
        }
        match half.read_buf(&mut buffer).await {
            Ok(0) => {
                break Error::ConnectionClosed {
                    address: address.clone(),
                };
            }
            Ok(_) => {}
            Err(error) => break Error::io(&address, error),
        }
    };
    tracing::debug!(address, %error, "connection closed");
    pending.close(error);
}

/// Delivers every complete frame in `buffer` and makes room for the next one.
fn dispatch_frames(buffer: &mut BytesMut, pending: &Pending, address: &str) -> Result<()> {
    let decode_error = |source| Error::Decode {
        address: address.to_owned(),
        source,
    };
    loop {
        match frame::decode_frame(buffer).map_err(decode_error)? {
            Decoded::Incomplete => {
                // decode_frame has checked the length against FRAME_BYTES_MAX already,
                // so reserving for the whole frame is bounded.
                let needed = match buffer.first_chunk::<LENGTH_PREFIX_BYTES>() {
                    Some(prefix) => LENGTH_PREFIX_BYTES + i32::from_be_bytes(*prefix) as usize,
                    None => LENGTH_PREFIX_BYTES,
                };
                let wanted = needed.max(buffer.len() + IO_BUFFER_BYTES);
                buffer.reserve(wanted - buffer.len());
                return Ok(());
            }
            Decoded::Complete { consumed, .. } => {
                let frame = buffer.split_to(consumed).freeze();
                let (header, body) = frame::split_response(frame).map_err(decode_error)?;
                let Some(waiter) = pending.take(header.correlation_id) else {
                    tracing::debug!(
                        address,
                        correlation_id = header.correlation_id,
                        "dropping a response nobody waits for (its request timed out)"
                    );
                    continue;
                };
                let outcome = if header.error_code.is_ok() {
                    Ok(body)
                } else {
                    Err(Error::broker(
                        format!("{} request to {address}", waiter.api.name()),
                        header.error_code,
                    ))
                };
                notify(waiter.sender, outcome);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use fjord_protocol::ErrorCode;
    use fjord_protocol::frame::{ResponseHeader, encode_response, split_request};
    use fjord_protocol::messages::{MetadataRequest, MetadataResponse};
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads one request frame from a fake broker's socket.
    async fn read_request(socket: &mut (impl AsyncRead + Unpin)) -> (RequestHeader, Bytes) {
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).await.unwrap();
        let mut frame = length.to_vec();
        frame.resize(4 + i32::from_be_bytes(length) as usize, 0);
        socket.read_exact(&mut frame[4..]).await.unwrap();
        split_request(Bytes::from(frame)).unwrap()
    }

    async fn write_response(
        socket: &mut (impl AsyncWrite + Unpin),
        correlation_id: i32,
        error_code: ErrorCode,
        body: impl Message,
    ) {
        let mut out = BytesMut::new();
        let header = ResponseHeader {
            correlation_id,
            error_code,
        };
        encode_response(&mut out, header, |out| body.encode(out));
        socket.write_all(&out).await.unwrap();
    }

    fn empty_metadata() -> MetadataResponse {
        MetadataResponse {
            cluster_id: "test".into(),
            controller_id: 1,
            brokers: vec![],
            topics: vec![],
        }
    }

    /// An address that refuses connections while the returned socket lives: bound, so
    /// that no other test can take the port, but not listening.
    pub(crate) fn refusing_address() -> (tokio::net::TcpSocket, String) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = socket.local_addr().unwrap().to_string();
        (socket, address)
    }

    /// A fake broker that answers ApiVersions and then hands the socket to `script`.
    async fn fake_broker<F, Fut>(script: F) -> String
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (header, _) = read_request(&mut socket).await;
            assert_eq!(header.api_key, ApiKey::ApiVersions.code());
            write_response(
                &mut socket,
                header.correlation_id,
                ErrorCode::None,
                ApiVersionsResponse::current(),
            )
            .await;
            script(socket).await;
        });
        address
    }

    /// Two pipelined requests answered in reverse order each get their own response,
    /// matched by correlation id.
    #[tokio::test]
    async fn responses_are_matched_by_correlation_id() {
        let (first_read, first_was_read) = tokio::sync::oneshot::channel();
        let address = fake_broker(|mut socket| async move {
            let (first, _) = read_request(&mut socket).await;
            first_read.send(()).unwrap();
            let (second, _) = read_request(&mut socket).await;
            let mut second_body = empty_metadata();
            second_body.cluster_id = "second".into();
            write_response(
                &mut socket,
                second.correlation_id,
                ErrorCode::None,
                second_body,
            )
            .await;
            let mut first_body = empty_metadata();
            first_body.cluster_id = "first".into();
            write_response(
                &mut socket,
                first.correlation_id,
                ErrorCode::None,
                first_body,
            )
            .await;
            // Keep the socket open until the client is done.
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let connection = Connection::open(&address, &ClientConfig::new([address.clone()]))
            .await
            .unwrap();
        let timeout = Duration::from_secs(5);
        let request = MetadataRequest::default();
        let (first, second) = tokio::join!(
            connection.request::<_, MetadataResponse>(ApiKey::Metadata, &request, timeout),
            async {
                // The second request is sent once the broker has read the first.
                first_was_read.await.unwrap();
                connection
                    .request::<_, MetadataResponse>(ApiKey::Metadata, &request, timeout)
                    .await
            }
        );
        assert_eq!(first.unwrap().cluster_id, "first");
        assert_eq!(second.unwrap().cluster_id, "second");
    }

    /// A header error code becomes a typed broker error without a body; a request the
    /// broker never answers times out and leaves no waiter behind; a closed socket
    /// fails later requests and marks the connection closed.
    #[tokio::test]
    async fn header_errors_timeouts_and_close() {
        let (close, closing) = tokio::sync::oneshot::channel::<()>();
        let address = fake_broker(|mut socket| async move {
            let (refused, _) = read_request(&mut socket).await;
            let mut out = BytesMut::new();
            let header = ResponseHeader {
                correlation_id: refused.correlation_id,
                error_code: ErrorCode::BrokerBusy,
            };
            encode_response(&mut out, header, |_| unreachable!("no body on error"));
            socket.write_all(&out).await.unwrap();
            let (_ignored, _) = read_request(&mut socket).await;
            // Unanswered until the test has seen it time out; then the socket closes.
            closing.await.unwrap();
            drop(socket);
        })
        .await;
        let connection = Connection::open(&address, &ClientConfig::new([address.clone()]))
            .await
            .unwrap();
        let request = MetadataRequest::default();
        let refused = connection
            .request::<_, MetadataResponse>(ApiKey::Metadata, &request, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(refused.error_code(), Some(ErrorCode::BrokerBusy));
        let timed_out = connection
            .request::<_, MetadataResponse>(ApiKey::Metadata, &request, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(timed_out, Error::Timeout { .. }), "{timed_out}");
        assert!(connection.shared.pending.lock().waiters.is_empty());
        close.send(()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !connection.is_closed() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the close was never noticed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let closed = connection
            .request::<_, MetadataResponse>(ApiKey::Metadata, &request, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(closed.is_retriable(), "{closed}");
    }

    /// Connecting to a port nobody listens on is a connect error naming the address.
    #[tokio::test]
    async fn refused_connection_names_the_address() {
        let (_refusing, address) = refusing_address();
        let error = Connection::open(&address, &ClientConfig::new([address.clone()]))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cannot reach broker at {address}: connection refused")
        );
    }
}
