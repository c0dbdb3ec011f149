//! The internal listener: how brokers talk to each other, apart from the client port.
//!
//! - [`frame`]: the frame (length, magic, version, kind, request id, CRC-32C of the
//!   body), encoded and decoded without I/O.
//! - [`listener`]: accepts peers' connections and hands each request to a service; a
//!   peer that sends something that is not a frame is disconnected.
//! - [`dispatch`]: one listener for several services, each owning a range of kinds.
//! - [`peer`]: the client side: one connection per peer, reused by every call and
//!   reopened after a failure, with a timeout on connecting and on each call.
//!
//! The metadata quorum (`metadata::raft::network`) and the calls of brokers to the
//! active controller (`metadata::forwarding`) are its users; their request kinds are in
//! [`frame::kind`], with room for the kinds of partition replication.

pub mod dispatch;
pub mod frame;
pub mod listener;
pub mod peer;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub use dispatch::{ByKind, Dispatch, NoService};
pub use frame::{Frame, FrameError};
pub use listener::{InternalListener, InternalService, RunningListener, ServiceError};
pub use peer::{CallError, PeerClient};

/// Once a frame's length has arrived, the rest must follow within this time; a peer
/// that stops in the middle of a frame is disconnected rather than waited for.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(30);

const INITIAL_READ_BYTES: usize = 64 << 10;

/// Why a frame could not be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the rest of a {length}-byte frame did not arrive within {FRAME_READ_TIMEOUT:?}")]
    Stalled { length: usize },
}

/// Reads one frame; `None` when the peer closed the connection between frames.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>, ReadError> {
    let mut length_field = [0u8; frame::LENGTH_BYTES];
    match reader.read_exact(&mut length_field).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    // Checked before anything is allocated; the buffer then grows as bytes arrive, so a
    // peer that announces a large frame and sends nothing holds little memory.
    let length = frame::check_length(length_field)?;
    let mut bytes = Vec::with_capacity(length.min(INITIAL_READ_BYTES));
    let limit = u64::try_from(length).expect("frame lengths fit in u64");
    let mut body = reader.take(limit);
    match tokio::time::timeout(FRAME_READ_TIMEOUT, body.read_to_end(&mut bytes)).await {
        Err(_) => Err(ReadError::Stalled { length }),
        Ok(Err(error)) => Err(error.into()),
        Ok(Ok(read)) if read < length => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("closed after {read} of {length} frame bytes"),
        )
        .into()),
        Ok(Ok(_)) => Ok(Some(frame::decode(bytes)?)),
    }
}

#[cfg(test)]
mod tests;
