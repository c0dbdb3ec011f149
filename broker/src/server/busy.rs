//! Connections beyond `max_connections`. Rather than a bare close, which a client
//! cannot tell from a network failure, such a connection gets `BROKER_BUSY` in answer
//! to its first request and is then closed. Answering costs a task and a descriptor
//! for at most [`BUSY_ANSWER_TIMEOUT`] each, so at most [`BUSY_ANSWERS_MAX`] are
//! answered at once; beyond that, connections are closed bare.

use std::net::SocketAddr;
use std::time::Duration;

use fjord_protocol::ErrorCode;
use fjord_protocol::frame::LENGTH_PREFIX_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::response::ResponseFrame;

/// Most refused connections being answered at once.
pub const BUSY_ANSWERS_MAX: usize = 64;

/// Longest a refused connection is given to send its first request header, and then
/// to read the answer.
pub const BUSY_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of a request that carry its correlation id: length prefix, api key, api
/// version, correlation id.
const HEADER_PREFIX_BYTES: usize = LENGTH_PREFIX_BYTES + 8;

/// Most bytes read (and dropped) after the answer, so that closing does not reset the
/// connection before the client has read it.
const DRAIN_BYTES_MAX: usize = 1 << 20;

/// Answers the first request of a connection over the cap with `BROKER_BUSY`, then
/// closes it.
pub async fn answer_busy(mut stream: TcpStream, peer: SocketAddr, _slot: OwnedSemaphorePermit) {
    let mut head = [0u8; HEADER_PREFIX_BYTES];
    match tokio::time::timeout(BUSY_ANSWER_TIMEOUT, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "refused connection closed before its first request");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "refused connection sent no request in time");
            return;
        }
    }
    let correlation_id = i32::from_be_bytes(
        head[LENGTH_PREFIX_BYTES + 4..HEADER_PREFIX_BYTES]
            .try_into()
            .expect("four bytes"),
    );
    let answer = ResponseFrame::error(correlation_id, ErrorCode::BrokerBusy).to_bytes();
    let answered = tokio::time::timeout(BUSY_ANSWER_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Read what the client still sends until it closes, so that the close is not a
        // reset that could destroy the answer before the client reads it.
        let mut drained = 0;
        let mut scratch = [0u8; 4096];
        while drained < DRAIN_BYTES_MAX {
            match stream.read(&mut scratch).await? {
                0 => break,
                read => drained += read,
            }
        }
        std::io::Result::Ok(())
    })
    .await;
    match answered {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "answering a refused connection failed"),
        Err(_) => tracing::debug!(%peer, "refused connection did not close in time"),
    }
}
