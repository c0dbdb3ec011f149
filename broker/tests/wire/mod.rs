//! A raw client for the broker's protocol, shared by the conformance tests: it sends
//! exactly the bytes it is given and hands back whole response frames, so that tests
//! control and see every byte.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::{Decoded, RequestHeader, ResponseHeader, decode_frame, split_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a test waits for one response.
pub const RESPONSE_PATIENCE: Duration = Duration::from_secs(30);

pub struct RawClient {
    stream: TcpStream,
    buffer: BytesMut,
    next_correlation_id: i32,
}

impl RawClient {
    pub async fn connect(address: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(address).await.expect("broker accepts"),
            buffer: BytesMut::new(),
            next_correlation_id: 1000,
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// The next whole response frame (length prefix included), or `None` when the
    /// broker closed the connection.
    pub async fn receive_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Ok(Decoded::Complete { consumed, .. }) = decode_frame(&self.buffer) {
                return Some(self.buffer.split_to(consumed).freeze());
            }
            let read =
                tokio::time::timeout(RESPONSE_PATIENCE, self.stream.read_buf(&mut self.buffer))
                    .await
                    .expect("a response or a close within the patience");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends `body` under a header with a fresh correlation id and the given client id,
    /// and returns the response header (checked to echo the correlation id) and body.
    pub async fn call_with_client_id(
        &mut self,
        api_key: i16,
        api_version: i16,
        client_id: Option<String>,
        body: &[u8],
    ) -> (ResponseHeader, Bytes) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id,
        };
        let mut out = BytesMut::new();
        fjord_protocol::frame::encode_request(&mut out, &header, |out| out.extend_from_slice(body));
        self.send_raw(&out).await;
        let frame = self
            .receive_frame()
            .await
            .expect("the broker answers instead of closing the connection");
        let (header, body) = split_response(frame).expect("a response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "correlation id echoed"
        );
        (header, body)
    }

    /// [`RawClient::call_with_client_id`] at version 0 with client id `conformance`.
    pub async fn call(&mut self, api_key: i16, body: &[u8]) -> (ResponseHeader, Bytes) {
        self.call_with_client_id(api_key, 0, Some("conformance".into()), body)
            .await
    }
}
