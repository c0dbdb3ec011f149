//! A minimal pipelined connection speaking Fjord's protocol directly, so that the
//! load generator measures the broker and not a client library's batching: it sends
//! the batches it built itself, as they are.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use fjord_protocol::frame::{Decoded, RequestHeader, decode_frame, encode_request, split_response};
use fjord_protocol::messages::{Message, ProducePartition, ProduceRequest, ProduceTopic};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The sending half: writes request frames.
#[derive(Debug)]
pub struct Sender {
    stream: OwnedWriteHalf,
    next_correlation_id: i32,
    head: BytesMut,
}

/// The receiving half: reads response frames in order.
#[derive(Debug)]
pub struct Receiver {
    stream: OwnedReadHalf,
    buffer: BytesMut,
}

pub async fn connect(addr: SocketAddr) -> anyhow::Result<(Sender, Receiver)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach broker at {addr}"))?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    Ok((
        Sender {
            stream: write,
            next_correlation_id: 1,
            head: BytesMut::with_capacity(4096),
        },
        Receiver {
            stream: read,
            buffer: BytesMut::with_capacity(1 << 20),
        },
    ))
}

impl Sender {
    fn header(&mut self, api: ApiKey) -> RequestHeader {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        RequestHeader {
            api_key: api.code(),
            api_version: 0,
            correlation_id,
            client_id: Some("fjord-bench".into()),
        }
    }

    /// Sends any request; returns its correlation id.
    pub async fn send(&mut self, api: ApiKey, body: &impl Message) -> anyhow::Result<i32> {
        let header = self.header(api);
        self.head.clear();
        encode_request(&mut self.head, &header, |out| body.encode(out));
        self.stream
            .write_all(&self.head)
            .await
            .context("sending a request")?;
        Ok(header.correlation_id)
    }

    /// Sends a produce request for one partition without copying the batch bytes into
    /// the frame: the frame is encoded with empty records, then its two length fields
    /// are patched and the batch follows it on the socket.
    pub async fn send_produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        batch: &Bytes,
    ) -> anyhow::Result<i32> {
        let header = self.header(ApiKey::Produce);
        let request = ProduceRequest {
            acks,
            timeout_ms: 30_000,
            topics: vec![ProduceTopic {
                name: topic.to_owned(),
                partitions: vec![ProducePartition {
                    partition,
                    current_leader_epoch: -1,
                    records: Bytes::new(),
                }],
            }],
        };
        self.head.clear();
        encode_request(&mut self.head, &header, |out| request.encode(out));
        let frame_length = (self.head.len() - 4 + batch.len()) as i32;
        self.head[..4].copy_from_slice(&frame_length.to_be_bytes());
        let records_length = self.head.len() - 4;
        self.head[records_length..].copy_from_slice(&(batch.len() as i32).to_be_bytes());
        self.stream
            .write_all(&self.head)
            .await
            .context("sending a produce request")?;
        self.stream
            .write_all(batch)
            .await
            .context("sending a produce request")?;
        Ok(header.correlation_id)
    }
}

impl Receiver {
    /// The next response body; fails on a closed connection or a request-level error.
    pub async fn receive(&mut self) -> anyhow::Result<(i32, Bytes)> {
        loop {
            if let Decoded::Complete { consumed, .. } = decode_frame(&self.buffer)? {
                let (header, body) = split_response(self.buffer.split_to(consumed).freeze())?;
                if header.error_code != ErrorCode::None {
                    bail!(
                        "request {} failed: {}",
                        header.correlation_id,
                        header.error_code
                    );
                }
                return Ok((header.correlation_id, body));
            }
            if self.buffer.capacity() - self.buffer.len() < 64 * 1024 {
                self.buffer.reserve(1 << 20);
            }
            if self
                .stream
                .read_buf(&mut self.buffer)
                .await
                .context("reading a response")?
                == 0
            {
                bail!("the broker closed the connection");
            }
        }
    }

    pub async fn receive_message<T: Message>(&mut self) -> anyhow::Result<T> {
        let (_, body) = self.receive().await?;
        Ok(T::decode_body(body)?)
    }
}

/// Sends one request and waits for its response.
pub async fn call<T: Message>(
    connection: &mut (Sender, Receiver),
    api: ApiKey,
    body: &impl Message,
) -> anyhow::Result<T> {
    connection.0.send(api, body).await?;
    connection.1.receive_message().await
}
