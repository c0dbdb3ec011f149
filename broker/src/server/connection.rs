//! One client connection.
//!
//! A reader loop cuts frames off the socket and starts a task per request; a writer task
//! writes the responses in request order. The bounded queue between them caps the
//! requests in flight per connection (the reader stops reading when it is full), and a
//! broker-wide semaphore of request bytes caps the memory all connections hold: a
//! request's bytes are reserved as soon as its length prefix arrives and released when
//! its response has been written.
//!
//! Bad input never reaches other connections: a frame that cannot be framed or whose
//! header runs past its frame closes this connection; a header holding a refused value
//! (such as an over-long client id) and a request that cannot be decoded or handled are
//! answered with an error code in the response header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::{
    Decoded, LENGTH_PREFIX_BYTES, answerable_correlation_id, decode_frame, split_request,
};
use fjord_protocol::messages::Request;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;

use super::handlers;
use super::response::ResponseFrame;
use crate::broker::Broker;

/// A request being handled, in the order it arrived.
struct Pending {
    correlation_id: i32,
    response: JoinHandle<Option<ResponseFrame>>,
    /// The request's share of the broker's request memory.
    _memory: OwnedSemaphorePermit,
}

pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    metrics::gauge!("fjord_connections_active").increment(1.0);
    metrics::counter!("fjord_connections_accepted_total").increment(1);
    let (reader, writer) = stream.into_split();
    let (queue, responses) = mpsc::channel(broker.config.max_in_flight_requests);
    let writer = tokio::spawn(write_responses(writer, responses, peer));
    if let Err(reason) = read_requests(reader, peer, &broker, queue, shutdown).await {
        tracing::warn!(%peer, %reason, "closing connection");
    }
    // The queue's sender is gone: the writer answers what is in flight, then ends.
    if let Err(error) = writer.await {
        tracing::error!(%peer, %error, "response writer panicked");
    }
    metrics::gauge!("fjord_connections_active").decrement(1.0);
}

/// Reads frames until end of stream, shutdown, or input that makes the stream
/// unusable (the error says why).
async fn read_requests(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    queue: mpsc::Sender<Pending>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let max_request_bytes = broker.config.max_request_bytes;
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut memory: Option<OwnedSemaphorePermit> = None;
    loop {
        match decode_frame(&buffer) {
            Err(error) => return Err(format!("unreadable frame: {error}")),
            Ok(Decoded::Complete { consumed, .. }) => {
                let frame = buffer.split_to(consumed).freeze();
                let permit = match memory.take() {
                    Some(permit) => permit,
                    None => reserve(broker, consumed).await,
                };
                let pending = start_request(broker, peer, frame, permit)?;
                if queue.send(pending).await.is_err() {
                    return Err("the connection's writer stopped".into());
                }
                continue;
            }
            Ok(Decoded::Incomplete) => {
                if let Some(prefix) = buffer.first_chunk::<LENGTH_PREFIX_BYTES>() {
                    let length = i32::from_be_bytes(*prefix) as usize;
                    if length > max_request_bytes {
                        return Err(format!(
                            "request of {length} bytes exceeds max_request_bytes ({max_request_bytes})"
                        ));
                    }
                    if memory.is_none() {
                        memory = Some(reserve(broker, LENGTH_PREFIX_BYTES + length).await);
                        buffer.reserve(LENGTH_PREFIX_BYTES + length - buffer.len());
                    }
                }
            }
        }
        if buffer.capacity() == buffer.len() {
            buffer.reserve(64 * 1024);
        }
        let read = tokio::select! {
            read = reader.read_buf(&mut buffer) => read,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        match read {
            Ok(0) if buffer.is_empty() => return Ok(()),
            Ok(0) => {
                return Err(format!(
                    "peer closed the connection inside a frame ({} bytes pending)",
                    buffer.len()
                ));
            }
            Ok(bytes) => {
                metrics::counter!("fjord_network_received_bytes_total").increment(bytes as u64)
            }
            Err(error) => return Err(format!("read failed: {error}")),
        }
    }
}

/// Reserves `bytes` of the broker's request memory, waiting while other requests hold it.
async fn reserve(broker: &Broker, bytes: usize) -> OwnedSemaphorePermit {
    let bytes = u32::try_from(bytes).expect("request size is bounded by max_request_bytes");
    broker
        .request_memory
        .clone()
        .acquire_many_owned(bytes)
        .await
        .expect("the request memory semaphore is never closed")
}

/// Reads the header and starts handling the request on its own task.
fn start_request(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    frame: Bytes,
    memory: OwnedSemaphorePermit,
) -> Result<Pending, String> {
    let (header, body) = match split_request(frame.clone()) {
        Ok(parts) => parts,
        Err(error) => {
            let correlation_id = answerable_correlation_id(&frame, &error)
                .ok_or_else(|| format!("unreadable request header: {error}"))?;
            tracing::debug!(correlation_id, %error, "refusing request header");
            let response = tokio::spawn(async move {
                Some(ResponseFrame::error(
                    correlation_id,
                    ErrorCode::InvalidRequest,
                ))
            });
            return Ok(Pending {
                correlation_id,
                response,
                _memory: memory,
            });
        }
    };
    let correlation_id = header.correlation_id;
    let broker = broker.clone();
    let response = tokio::spawn(async move {
        let started = Instant::now();
        let api = ApiKey::from_code(header.api_key).map_or("unknown", ApiKey::name);
        metrics::counter!("fjord_requests_total", "api" => api).increment(1);
        let request = match Request::decode(&header, body) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(correlation_id, %error, "refusing request");
                metrics::counter!("fjord_request_errors_total", "api" => api, "code" => error.error_code().name()).increment(1);
                return Some(ResponseFrame::error(correlation_id, error.error_code()));
            }
        };
        let timeout = Duration::from_millis(broker.config.request_timeout_ms);
        let context = handlers::RequestContext {
            correlation_id,
            client_id: header.client_id,
            peer,
        };
        let response = match tokio::time::timeout(
            timeout,
            handlers::handle(&broker, &context, request),
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
    })
}

/// Writes responses in request order; flushes whenever no further response is ready.
async fn write_responses(
    writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut broken = false;
    while let Some(pending) = queue.recv().await {
        // Earlier responses must not wait in the buffer behind a slow one (a
        // long-polling fetch, a produce waiting for fsync).
        if !broken
            && !pending.response.is_finished()
            && let Err(error) = writer.flush().await
        {
            tracing::debug!(%peer, %error, "write failed; dropping further responses");
            broken = true;
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
        // After a write error keep draining the queue, so in-flight handlers finish
        // and release their memory, but write nothing more.
        let (Some(response), false) = (response, broken) else {
            continue;
        };
        let mut result = Ok(());
        for chunk in &response.chunks {
            result = writer.write_all(chunk).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() && queue.is_empty() {
            result = writer.flush().await;
        }
        match result {
            Ok(()) => {
                metrics::counter!("fjord_network_sent_bytes_total").increment(response.len() as u64)
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "write failed; dropping further responses");
                broken = true;
            }
        }
    }
    if !broken && let Err(error) = writer.shutdown().await {
        tracing::debug!(%peer, %error, "closing the connection failed");
    }
}
