//! Encoded response frames, kept as a list of chunks so that record bytes read from
//! the log go to the socket without being copied into the response buffer.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::frame::ResponseHeader;
use fjord_protocol::messages::{FetchResponse, Message};
use fjord_protocol::{ErrorCode, limits::FRAME_BYTES_MAX};
use tokio::sync::OwnedSemaphorePermit;

use super::order::Turn;

/// A complete response frame: the length prefix first, then the payload chunks.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    pub chunks: Vec<Bytes>,
    /// Held until the frame has been written (or dropped): the response's share of the
    /// broker's response memory, and the request's turn in its connection's chain.
    pub held: Held,
}

/// What a response keeps until it is written; see [`ResponseFrame::held`].
#[derive(Debug, Default)]
pub struct Held {
    pub memory: Option<OwnedSemaphorePermit>,
    pub turn: Option<Turn>,
}

impl ResponseFrame {
    fn finish(mut payload: Vec<Bytes>) -> Self {
        let length: usize = payload.iter().map(Bytes::len).sum();
        assert!(
            length <= FRAME_BYTES_MAX,
            "response of {length} bytes exceeds FRAME_BYTES_MAX"
        );
        let mut chunks = Vec::with_capacity(payload.len() + 1);
        chunks.push(Bytes::copy_from_slice(&(length as i32).to_be_bytes()));
        chunks.append(&mut payload);
        Self {
            chunks,
            held: Held::default(),
        }
    }

    /// A response whose header carries a request-level error and no body.
    pub fn error(correlation_id: i32, error_code: ErrorCode) -> Self {
        let mut out = BytesMut::with_capacity(6);
        ResponseHeader {
            correlation_id,
            error_code,
        }
        .encode(&mut out);
        Self::finish(vec![out.freeze()])
    }

    /// A successful response with `body`.
    pub fn message(correlation_id: i32, body: &impl Message) -> Self {
        let mut out = BytesMut::with_capacity(256);
        ResponseHeader {
            correlation_id,
            error_code: ErrorCode::None,
        }
        .encode(&mut out);
        body.encode(&mut out);
        Self::finish(vec![out.freeze()])
    }

    /// A fetch response; the record bytes are passed through as their own chunks.
    pub fn fetch(correlation_id: i32, body: &FetchResponse) -> Self {
        let mut chunks = Vec::new();
        let mut out = BytesMut::with_capacity(256);
        ResponseHeader {
            correlation_id,
            error_code: ErrorCode::None,
        }
        .encode(&mut out);
        body.encode_head(&mut out, |out, records| {
            if !records.is_empty() {
                chunks.push(out.split().freeze());
                chunks.push(records.clone());
            }
        });
        chunks.push(out.freeze());
        Self::finish(chunks)
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one buffer (for tests).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for chunk in &self.chunks {
            out.put_slice(chunk);
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::messages::{FetchPartitionResponse, FetchTopicResponse};

    /// The chunked fetch frame is byte for byte the frame the codec would encode.
    #[test]
    fn fetch_chunks_match_plain_encoding() {
        let body = FetchResponse {
            topics: vec![FetchTopicResponse {
                name: "t".into(),
                partitions: vec![FetchPartitionResponse {
                    partition: 0,
                    error_code: ErrorCode::None,
                    high_watermark: 5,
                    log_start_offset: 0,
                    records: Bytes::from_static(b"batch-bytes"),
                }],
            }],
        };
        assert_eq!(
            ResponseFrame::fetch(9, &body).to_bytes(),
            ResponseFrame::message(9, &body).to_bytes()
        );
    }
}
