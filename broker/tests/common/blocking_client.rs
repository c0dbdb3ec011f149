//! Blocking clients for a broker process's HTTP API and native protocol, for tests
//! that run without an async runtime (a restart after kill -9, a full disk, an
//! open-file limit).

#![allow(dead_code)] // each test binary uses a part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::frame::{Decoded, RequestHeader, decode_frame, encode_request, split_response};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use serde_json::Value;

/// Longest a blocking client waits for an answer, or for the broker to become ready.
pub const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request (`Connection: close`); the status and the JSON body (`Null`
/// when the body is not JSON).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to HTTP");
    stream.set_read_timeout(Some(CLIENT_PATIENCE)).unwrap();
    let body = body.map(|body| serde_json::to_vec(body).unwrap());
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = &body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    if let Some(body) = &body {
        stream.write_all(body).unwrap();
    }
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read HTTP response");
    let text = String::from_utf8_lossy(&response);
    let status = text[9..12].parse().expect("status code");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A blocking native-protocol client.
pub struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    next_correlation_id: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the broker");
        stream.set_read_timeout(Some(CLIENT_PATIENCE)).unwrap();
        Self {
            stream,
            buffer: BytesMut::new(),
            next_correlation_id: 1,
        }
    }

    fn call<T: Message>(&mut self, api: ApiKey, body: &impl Message) -> T {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key: api.code(),
            api_version: 0,
            correlation_id,
            client_id: Some("process-test".into()),
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, |out| body.encode(out));
        self.stream.write_all(&out).unwrap();
        loop {
            if let Ok(Decoded::Complete { consumed, .. }) = decode_frame(&self.buffer) {
                let frame = self.buffer.split_to(consumed).freeze();
                let (header, body) = split_response(frame).unwrap();
                assert_eq!(header.correlation_id, correlation_id);
                assert_eq!(header.error_code, ErrorCode::None);
                return T::decode_body(body).unwrap();
            }
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk).expect("a response in time");
            assert!(read > 0, "the broker closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Produces `records` (acks = leader: durable before the answer); the error code.
    pub fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> ErrorCode {
        let request = ProduceRequest {
            acks: 1,
            timeout_ms: 30_000,
            topics: vec![ProduceTopic {
                name: topic.into(),
                partitions: vec![ProducePartition {
                    partition,
                    current_leader_epoch: -1,
                    records,
                }],
            }],
        };
        let response: ProduceResponse = self.call(ApiKey::Produce, &request);
        response.topics[0].partitions[0].error_code
    }

    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> FetchPartitionResponse {
        let request = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    current_leader_epoch: -1,
                    fetch_offset: offset,
                    partition_max_bytes: 1 << 20,
                }],
            }],
        };
        let response: FetchResponse = self.call(ApiKey::Fetch, &request);
        response.topics[0].partitions[0].clone()
    }
}

/// A batch of `count` records with values `<prefix>-<index>`, stamped now.
pub fn values_batch(prefix: &str, count: usize) -> Bytes {
    let values: Vec<String> = (0..count)
        .map(|index| format!("{prefix}-{index}"))
        .collect();
    // Now, so that time retention keeps them.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new();
    for value in &values {
        builder.push(&RecordInput {
            value: Some(value.as_bytes()),
            timestamp_ms: now_ms,
            ..Default::default()
        });
    }
    builder.finish()
}

/// The offsets and values of the records in `records` (whole batches).
pub fn values(records: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let size = fjord_protocol::RecordBatch::size_at(&rest).unwrap();
        let batch = fjord_protocol::RecordBatch::new(rest.split_to(size)).unwrap();
        for record in batch.records() {
            let record = record.unwrap();
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            out.push((record.offset, value));
        }
    }
    out
}

/// Creates a topic through the HTTP API with `config`; panics unless it is created.
pub fn create_topic(http_addr: SocketAddr, name: &str, partitions: i32, config: Value) {
    let body = serde_json::json!({"name": name, "partitions": partitions, "config": config});
    let (status, response) = http(http_addr, "POST", "/v1/topics", Some(&body));
    assert_eq!(status, 201, "create {name}: {response}");
}

/// Waits until `GET /readyz` answers 200; how long it took.
pub fn wait_ready(http_addr: SocketAddr) -> Duration {
    let started = Instant::now();
    while started.elapsed() < CLIENT_PATIENCE {
        if let Ok(mut stream) = TcpStream::connect(http_addr) {
            stream.set_read_timeout(Some(CLIENT_PATIENCE)).unwrap();
            let request =
                format!("GET /readyz HTTP/1.1\r\nHost: {http_addr}\r\nConnection: close\r\n\r\n");
            let mut response = Vec::new();
            if stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_end(&mut response).is_ok()
                && response.starts_with(b"HTTP/1.1 200")
            {
                return started.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("/readyz did not answer 200 within {CLIENT_PATIENCE:?}");
}
