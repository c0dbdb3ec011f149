//! A client speaking the raw protocol over one TCP connection, for tests that need to
//! pipeline requests, send partial frames or leave responses unread.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::{
    Decoded, RequestHeader, ResponseHeader, decode_frame, encode_request, split_response,
};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawClient {
    pub stream: TcpStream,
    pub next_correlation_id: i32,
    pub buffer: BytesMut,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
            buffer: BytesMut::new(),
        }
    }

    pub fn encode(&mut self, api: ApiKey, body: &impl Message) -> (i32, BytesMut) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: api.code(),
            api_version: 0,
            correlation_id,
            client_id: Some("raw-test-client".into()),
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, |out| body.encode(out));
        (correlation_id, out)
    }

    pub async fn send(&mut self, api: ApiKey, body: &impl Message) -> i32 {
        let (correlation_id, out) = self.encode(api, body);
        self.stream.write_all(&out).await.unwrap();
        correlation_id
    }

    /// The next response, or `None` when the broker closed the connection.
    pub async fn receive(&mut self) -> Option<(ResponseHeader, Bytes)> {
        loop {
            if let Ok(Decoded::Complete { consumed, .. }) = decode_frame(&self.buffer) {
                return Some(split_response(self.buffer.split_to(consumed).freeze()).unwrap());
            }
            let read = tokio::time::timeout(
                Duration::from_secs(30),
                self.stream.read_buf(&mut self.buffer),
            )
            .await
            .expect("no response within 30 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn call<T: Message>(&mut self, api: ApiKey, body: &impl Message) -> T {
        let correlation_id = self.send(api, body).await;
        let (header, body) = self.receive().await.expect("connection closed");
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(header.error_code, ErrorCode::None);
        T::decode_body(body).unwrap()
    }

    pub async fn create_topic(&mut self, name: &str) {
        let request = CreateTopicsRequest {
            topics: vec![CreateTopic {
                name: name.into(),
                partitions: 1,
                replication_factor: 1,
                configs: vec![],
            }],
            timeout_ms: 10_000,
            validate_only: false,
        };
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, &request).await;
        assert_eq!(response.topics[0].error_code, ErrorCode::None);
    }
}

/// The wall clock in milliseconds since the epoch, as producers stamp records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
