//! One client connection.
//!
//! A reader loop cuts frames off the socket and starts a task per request; a writer task
//! writes the responses in request order. The bounded queue between them caps the
//! requests in flight per connection (the reader stops reading when it is full).
//!
//! Memory is bounded whatever a client does:
//! - A frame is reserved whole from the broker-wide `request_memory_bytes` (and from
//!   the connection's share of it, see `memory.rs`) once its length is read, before
//!   the rest of it, and released when its response has been written; before that,
//!   a connection reads ahead (up to [`READ_CHUNK_BYTES`]) only with memory to spare.
//!   A frame must arrive within `request_read_timeout_ms` of its first byte (or of
//!   being reserved, if it waited for memory), or the connection is closed, so a
//!   client that announces a large frame and sends nothing holds it only for that
//!   long, and only within the large frames' share.
//! - Fetch responses reserve their record bytes from the broker-wide
//!   `response_memory_bytes` (see `handlers/fetch.rs`), and a connection reads one
//!   fetch response at a time: the next fetch waits until the previous response has been
//!   written. A response whose writing makes no progress for `response_write_timeout_ms`
//!   (the client stopped reading) closes the connection and frees its memory.
//! - An idle connection keeps no buffer: both sides drop theirs when empty.
//!
//! Bad input never reaches other connections: a frame that cannot be framed or whose
//! header runs past its frame closes this connection; a header holding a refused value
//! (such as an over-long client id), a request that cannot be decoded or handled, or one
//! larger than `max_request_bytes` (read and discarded), is answered with an error code
//! in the response header.
//!
//! Shutdown: an idle connection closes at once; requests already received are answered
//! with `BROKER_SHUTTING_DOWN`, as is a frame that was partly received, once it is
//! complete; requests in flight finish (parked fetches answer at once).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_protocol::frame::{
    Decoded, LENGTH_PREFIX_BYTES, answerable_correlation_id, decode_frame, split_request,
};
use fjord_protocol::limits::FRAME_BYTES_MAX;
use fjord_protocol::messages::Request;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::handlers;
use super::handles::Handles;
use super::memory::{READ_CHUNK_BYTES, RequestMemory, Reservation};
use super::order::{Chain, Turn};
use super::response::ResponseFrame;
use crate::metadata::Listener;

/// Responses smaller than this are gathered and written together; larger chunks (fetched
/// records) are written as they are.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes of a request payload that carry its correlation id: api key, api version,
/// correlation id.
const CORRELATION_ID_END_BYTES: usize = 8;

/// A request being handled, in the order it arrived.
struct Pending {
    correlation_id: i32,
    response: JoinHandle<Option<ResponseFrame>>,
    /// The request's share of the broker's request memory.
    _memory: Option<Reservation>,
    /// The request's place among the connection's `max_in_flight_requests`, given back
    /// once its response has been written.
    _in_flight: Option<OwnedSemaphorePermit>,
}

pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    handles: Arc<Handles>,
    shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    metrics::gauge!("fjord_connections_active").increment(1.0);
    metrics::counter!("fjord_connections_accepted_total").increment(1);
    let (reader, writer) = stream.into_split();
    let (queue, responses) = mpsc::channel(handles.settings.max_in_flight_requests);
    let writer = ResponseWriter {
        stream: writer,
        buffer: BytesMut::new(),
        stall_timeout: Duration::from_millis(handles.settings.response_write_timeout_ms),
    };
    let writer = tokio::spawn(write_responses(writer, responses, peer));
    let mut requests = RequestReader {
        reader,
        peer,
        listener,
        handles: &handles,
        buffer: BytesMut::new(),
        memory: RequestMemory::new(
            handles.request_memory.clone(),
            handles.settings.connection_memory_bytes,
        ),
        admitted: None,
        ahead: None,
        unreserved: 0,
        deadline: None,
        produce_chain: Chain::default(),
        fetch_chain: Chain::default(),
        in_flight: Arc::new(Semaphore::new(handles.settings.max_in_flight_requests)),
    };
    if let Err(reason) = requests.run(queue, shutdown).await {
        tracing::warn!(%peer, %reason, "closing connection");
    }
    drop(requests);
    // The queue's sender is gone: the writer answers what is in flight, then ends.
    if let Err(error) = writer.await {
        tracing::error!(%peer, %error, "response writer panicked");
    }
    metrics::gauge!("fjord_connections_active").decrement(1.0);
}

/// What a non-blocking read found.
enum ReadOutcome {
    Bytes,
    WouldBlock,
    Closed,
}

/// The reading side of a connection.
struct RequestReader<'a> {
    reader: OwnedReadHalf,
    peer: SocketAddr,
    listener: Listener,
    handles: &'a Arc<Handles>,
    /// Received bytes not yet cut into frames.
    buffer: BytesMut,
    memory: RequestMemory,
    /// The frame at the front of `buffer`, reserved whole (see `memory.rs`) and not
    /// yet complete; `buffer` holds nothing beyond it.
    admitted: Option<Reservation>,
    /// Read-ahead covering the buffered bytes when no frame is admitted, except
    /// `unreserved` of them.
    ahead: Option<Reservation>,
    /// Buffered bytes read without a reservation, when no read-ahead could be had:
    /// only enough to learn a frame's length (and the correlation id of one that is
    /// too large), so at most [`HEADER_PEEK_BYTES`].
    unreserved: usize,
    /// When the frame being received must be complete; `None` between frames and
    /// while it waits for memory.
    deadline: Option<Instant>,
    produce_chain: Chain,
    fetch_chain: Chain,
    /// Requests started and not yet answered on the wire; at most
    /// `max_in_flight_requests`, and the reader reads nothing more while all are taken.
    in_flight: Arc<Semaphore>,
}

/// Bytes that tell a frame's length and, for a frame too large to keep, the
/// correlation id to answer it with.
const HEADER_PEEK_BYTES: usize = LENGTH_PREFIX_BYTES + CORRELATION_ID_END_BYTES;

impl RequestReader<'_> {
    /// Reads frames until end of stream, shutdown, or input that makes the stream
    /// unusable (the error says why).
    async fn run(
        &mut self,
        queue: mpsc::Sender<Pending>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let max_request_bytes = self.handles.settings.max_request_bytes;
        let mut stopping = false;
        loop {
            if let Some(length) = self.frame_length()
                && length > max_request_bytes
                && length <= FRAME_BYTES_MAX
                && self.buffer.len() >= HEADER_PEEK_BYTES
            {
                let header = &self.buffer[LENGTH_PREFIX_BYTES..];
                let api_key = i16::from_be_bytes([header[0], header[1]]);
                let api = ApiKey::from_code(api_key).map_or("unknown", ApiKey::name);
                let correlation_id =
                    i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                tracing::debug!(peer = %self.peer, length, max_request_bytes, "discarding a request larger than max_request_bytes");
                self.discard(LENGTH_PREFIX_BYTES + length).await?;
                metrics::counter!("fjord_request_errors_total", "api" => api, "code" => ErrorCode::InvalidRequest.name()).increment(1);
                let answer = ResponseFrame::error(correlation_id, ErrorCode::InvalidRequest);
                send(&queue, answered(correlation_id, answer, None)).await?;
                continue;
            }
            match decode_frame(&self.buffer) {
                Err(error) => return Err(format!("unreadable frame: {error}")),
                Ok(Decoded::Complete { consumed, .. }) => {
                    let frame = self.buffer.split_to(consumed).freeze();
                    let memory = self.take_reserved(consumed);
                    if self.buffer.is_empty() {
                        // Keep no buffer while idle.
                        self.buffer = BytesMut::new();
                        self.deadline = None;
                    } else {
                        self.deadline = Some(self.frame_deadline());
                    }
                    let in_flight = tokio::select! {
                        permit = self.in_flight.clone().acquire_owned() => {
                            permit.expect("the in-flight semaphore is never closed")
                        }
                        () = queue.closed() => return Err("the connection's writer stopped".into()),
                    };
                    let slot = queue
                        .reserve()
                        .await
                        .map_err(|_| "the connection's writer stopped".to_string())?;
                    let refuse = stopping || *shutdown.borrow();
                    let mut pending = self.start_request(frame, memory, refuse, &shutdown)?;
                    pending._in_flight = Some(in_flight);
                    slot.send(pending);
                    continue;
                }
                Ok(Decoded::Incomplete) => {}
            }
            if let Some(length) = self.frame_length()
                && length <= max_request_bytes
                && self.admitted.is_none()
            {
                // Reserve the whole frame before reading more of it. Waiting for memory
                // is not the client's fault: its deadline starts again once admitted.
                let held = self.ahead.take();
                self.unreserved = 0;
                let admitted = tokio::select! {
                    admitted = self.memory.admit(LENGTH_PREFIX_BYTES + length, held) => admitted,
                    () = queue.closed() => return Err("the connection's writer stopped".into()),
                };
                self.admitted = Some(admitted);
                self.deadline = Some(self.frame_deadline());
            }
            if stopping && self.buffer.is_empty() {
                return Ok(());
            }
            // Wait for bytes, the frame's deadline, or shutdown.
            let deadline = self.deadline;
            let stopped = tokio::select! {
                ready = self.reader.readable() => {
                    ready.map_err(|error| format!("read failed: {error}"))?;
                    false
                }
                _ = shutdown.wait_for(|stop| *stop), if !stopping => true,
                () = sleep_until(deadline) => return Err(self.late()),
                () = queue.closed() => return Err("the connection's writer stopped".into()),
            };
            if stopped {
                stopping = true;
            }
            if self.deadline.is_none() {
                self.deadline = Some(self.frame_deadline());
            }
            match self.read_some()? {
                ReadOutcome::Bytes => {}
                ReadOutcome::WouldBlock => {
                    if self.buffer.is_empty() {
                        self.deadline = None;
                    }
                }
                ReadOutcome::Closed if self.buffer.is_empty() => return Ok(()),
                ReadOutcome::Closed => {
                    return Err(format!(
                        "peer closed the connection inside a frame ({} bytes pending)",
                        self.buffer.len()
                    ));
                }
            }
        }
    }

    /// The announced payload length of the frame at the front of the buffer.
    fn frame_length(&self) -> Option<usize> {
        let prefix = self.buffer.first_chunk::<LENGTH_PREFIX_BYTES>()?;
        usize::try_from(i32::from_be_bytes(*prefix)).ok()
    }

    fn frame_deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.handles.settings.request_read_timeout_ms)
    }

    fn late(&self) -> String {
        format!(
            "request not received within request_read_timeout_ms ({} ms; {} bytes of it arrived)",
            self.handles.settings.request_read_timeout_ms,
            self.buffer.len()
        )
    }

    /// Reads what the memory held allows, without blocking: the rest of an admitted
    /// frame (a chunk at a time); otherwise a chunk of read-ahead if the budgets have
    /// one to spare now, or else only the few bytes that tell the next frame's length.
    fn read_some(&mut self) -> Result<ReadOutcome, String> {
        let mut read_ahead = None;
        let want = match (&self.admitted, self.frame_length()) {
            (Some(_), Some(length)) => {
                (LENGTH_PREFIX_BYTES + length - self.buffer.len()).min(READ_CHUNK_BYTES)
            }
            _ => {
                if self.unreserved == 0 {
                    read_ahead = self.memory.try_read_ahead(READ_CHUNK_BYTES);
                }
                match read_ahead {
                    Some(_) => READ_CHUNK_BYTES,
                    None => HEADER_PEEK_BYTES.saturating_sub(self.buffer.len()).max(1),
                }
            }
        };
        let before = self.buffer.len();
        let outcome = self.read_into_buffer(want)?;
        let arrived = self.buffer.len() - before;
        if let Some(mut reservation) = read_ahead {
            // Keep the read-ahead of the bytes that arrived, give back the rest.
            if let Some(kept) = reservation.split_read_ahead(arrived) {
                match &mut self.ahead {
                    Some(ahead) => ahead.merge(kept),
                    None => self.ahead = Some(kept),
                }
            }
        } else if self.admitted.is_none() {
            self.unreserved += arrived;
        }
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
            self.ahead = None;
        }
        Ok(outcome)
    }

    /// Reads up to `want` bytes into the buffer without blocking.
    fn read_into_buffer(&mut self, want: usize) -> Result<ReadOutcome, String> {
        let before = self.buffer.len();
        self.buffer.reserve(want);
        let read = self
            .reader
            .try_read_buf(&mut (&mut self.buffer).limit(want));
        match read {
            Ok(0) => Ok(ReadOutcome::Closed),
            Ok(bytes) => {
                debug_assert_eq!(self.buffer.len(), before + bytes);
                metrics::counter!("fjord_network_received_bytes_total").increment(bytes as u64);
                Ok(ReadOutcome::Bytes)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(error) => Err(format!("read failed: {error}")),
        }
    }

    /// The reservation of a complete frame of `bytes` at the front of the buffer.
    fn take_reserved(&mut self, bytes: usize) -> Option<Reservation> {
        if let Some(admitted) = self.admitted.take() {
            return Some(admitted);
        }
        let from_unreserved = self.unreserved.min(bytes);
        self.unreserved -= from_unreserved;
        let reserved = bytes - from_unreserved;
        if reserved == 0 {
            return None;
        }
        let ahead = self.ahead.as_mut()?;
        let frame = if ahead.bytes() == reserved {
            self.ahead.take()
        } else {
            ahead.split_read_ahead(reserved)
        };
        frame.map(Reservation::into_frame)
    }

    /// Reads and drops the `bytes` of a frame too large to keep, whose first bytes are
    /// buffered, through a small scratch buffer that no budget needs to cover.
    async fn discard(&mut self, bytes: usize) -> Result<(), String> {
        if self.buffer.len() >= bytes {
            // Read ahead whole, perhaps with requests behind it: drop only this frame.
            self.buffer.advance(bytes);
            drop(self.take_reserved(bytes));
            self.deadline = if self.buffer.is_empty() {
                self.buffer = BytesMut::new();
                None
            } else {
                Some(self.frame_deadline())
            };
            return Ok(());
        }
        let mut remaining = bytes - self.buffer.len();
        self.buffer = BytesMut::new();
        self.admitted = None;
        self.ahead = None;
        self.unreserved = 0;
        let mut scratch = [0_u8; 8 * 1024];
        while remaining > 0 {
            tokio::select! {
                ready = self.reader.readable() => ready.map_err(|error| format!("read failed: {error}"))?,
                () = sleep_until(self.deadline) => return Err(self.late()),
            }
            let want = remaining.min(scratch.len());
            match self.reader.try_read(&mut scratch[..want]) {
                Ok(0) => return Err("peer closed the connection inside an oversized frame".into()),
                Ok(read) => {
                    metrics::counter!("fjord_network_received_bytes_total").increment(read as u64);
                    remaining -= read;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(format!("read failed: {error}")),
            }
        }
        self.deadline = None;
        Ok(())
    }

    /// Reads the header and starts handling the request on its own task (or answers
    /// it with `BROKER_SHUTTING_DOWN` when `refuse`).
    fn start_request(
        &mut self,
        frame: Bytes,
        memory: Option<Reservation>,
        refuse: bool,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Pending, String> {
        let (header, body) = match split_request(frame.clone()) {
            Ok(parts) => parts,
            Err(error) => {
                // A header that fits its frame but holds a refused value (an over-long
                // client id) is answered; one that runs past its frame closes the
                // connection, since nothing in it can be trusted.
                let correlation_id = answerable_correlation_id(&frame, &error)
                    .ok_or_else(|| format!("unreadable request header: {error}"))?;
                tracing::debug!(correlation_id, %error, "refusing request header");
                let answer = ResponseFrame::error(correlation_id, ErrorCode::InvalidRequest);
                return Ok(answered(correlation_id, answer, memory));
            }
        };
        let correlation_id = header.correlation_id;
        let api_key = ApiKey::from_code(header.api_key);
        let api = api_key.map_or("unknown", ApiKey::name);
        if refuse {
            metrics::counter!("fjord_request_errors_total", "api" => api, "code" => ErrorCode::BrokerShuttingDown.name()).increment(1);
            let answer = ResponseFrame::error(correlation_id, ErrorCode::BrokerShuttingDown);
            return Ok(answered(correlation_id, answer, memory));
        }
        let turn = match api_key {
            Some(ApiKey::Produce) => self.produce_chain.next_turn(),
            Some(ApiKey::Fetch) => self.fetch_chain.next_turn(),
            _ => Turn::free(),
        };
        let handles = self.handles.clone();
        let context = handlers::RequestContext {
            correlation_id,
            client_id: header.client_id.clone(),
            peer: self.peer,
            listener: self.listener,
            shutdown: shutdown.clone(),
        };
        let response = tokio::spawn(async move {
            let started = Instant::now();
            metrics::counter!("fjord_requests_total", "api" => api).increment(1);
            let request = match Request::decode(&header, body) {
                Ok(request) => request,
                Err(error) => {
                    tracing::debug!(correlation_id, %error, "refusing request");
                    metrics::counter!("fjord_request_errors_total", "api" => api, "code" => error.error_code().name()).increment(1);
                    return Some(ResponseFrame::error(correlation_id, error.error_code()));
                }
            };
            let timeout = Duration::from_millis(handles.settings.request_timeout_ms);
            let response = match tokio::time::timeout(
                timeout,
                handlers::handle(&handles, &context, request, turn),
            )
            .await
            {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("fjord_request_errors_total", "api" => api, "code" => ErrorCode::RequestTimedOut.name()).increment(1);
                    Some(ResponseFrame::error(
                        correlation_id,
                        ErrorCode::RequestTimedOut,
                    ))
                }
            };
            metrics::histogram!("fjord_request_duration_seconds", "api" => api)
                .record(started.elapsed().as_secs_f64());
            response
        });
        Ok(Pending {
            correlation_id,
            response,
            _memory: memory,
            _in_flight: None,
        })
    }
}

/// A request answered without being handled.
fn answered(correlation_id: i32, answer: ResponseFrame, memory: Option<Reservation>) -> Pending {
    Pending {
        correlation_id,
        response: tokio::spawn(std::future::ready(Some(answer))),
        _memory: memory,
        _in_flight: None,
    }
}

async fn send(queue: &mpsc::Sender<Pending>, pending: Pending) -> Result<(), String> {
    queue
        .send(pending)
        .await
        .map_err(|_| "the connection's writer stopped".to_string())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The writing side of a connection: gathers small responses, writes large chunks as
/// they are, and gives up when the socket accepts nothing for `stall_timeout`.
struct ResponseWriter {
    stream: OwnedWriteHalf,
    /// Small responses not written yet; dropped (not just emptied) once written.
    buffer: BytesMut,
    stall_timeout: Duration,
}

impl ResponseWriter {
    async fn write_frame(&mut self, frame: &ResponseFrame) -> io::Result<()> {
        for chunk in &frame.chunks {
            if self.buffer.len() + chunk.len() > WRITE_BUFFER_BYTES {
                self.flush().await?;
            }
            if chunk.len() >= WRITE_BUFFER_BYTES {
                self.write_all(&chunk[..]).await?;
            } else {
                self.buffer.extend_from_slice(chunk);
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let buffer = std::mem::take(&mut self.buffer);
            self.write_all(&buffer).await?;
        }
        Ok(())
    }

    /// Writes all of `bytes`; fails when one write makes no progress in time.
    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = tokio::time::timeout(self.stall_timeout, self.stream.write(bytes))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client read nothing for {} ms (response_write_timeout_ms)",
                            self.stall_timeout.as_millis()
                        ),
                    )
                })??;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written..];
        }
        Ok(())
    }
}

/// Writes responses in request order; flushes whenever no further response is ready.
/// After a failed write it stops: requests still queued are abandoned, and the
/// reader, seeing the queue closed, stops reading.
async fn write_responses(
    mut writer: ResponseWriter,
    mut queue: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    let mut failure = None;
    while let Some(pending) = queue.recv().await {
        // Earlier responses must not wait in the buffer behind a slow one (a
        // long-polling fetch, a produce waiting for fsync).
        if !pending.response.is_finished()
            && let Err(error) = writer.flush().await
        {
            pending.response.abort();
            failure = Some(error);
            break;
        }
        let response = match pending.response.await {
            Ok(response) => response,
            Err(error) => {
                tracing::error!(%peer, correlation_id = pending.correlation_id, %error, "request handler panicked");
                Some(ResponseFrame::error(
                    pending.correlation_id,
                    ErrorCode::UnknownServerError,
                ))
            }
        };
        let Some(response) = response else {
            continue;
        };
        let mut result = writer.write_frame(&response).await;
        if result.is_ok() && queue.is_empty() {
            result = writer.flush().await;
        }
        // The response's memory and turn are released here, once it is written.
        let sent = response.len();
        drop(response);
        match result {
            Ok(()) => metrics::counter!("fjord_network_sent_bytes_total").increment(sent as u64),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let Some(error) = failure else {
        if let Err(error) = writer.stream.shutdown().await {
            tracing::debug!(%peer, %error, "closing the connection failed");
        }
        return;
    };
    if error.kind() == io::ErrorKind::TimedOut {
        tracing::warn!(%peer, %error, "closing a connection whose client does not read");
    } else {
        tracing::debug!(%peer, %error, "write failed; closing the connection");
    }
    queue.close();
    while let Some(pending) = queue.recv().await {
        pending.response.abort();
    }
}
