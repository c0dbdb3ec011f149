//! A minimal native-protocol client, for real produce, fetch and group traffic.

#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use fjord_protocol::batch::{BatchBuilder, RecordInput};
use fjord_protocol::frame::{
    Decoded, RequestHeader, ResponseHeader, decode_frame, encode_request, split_response,
};
use fjord_protocol::messages::*;
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http_client::TIMEOUT;

pub struct NativeClient {
    pub stream: TcpStream,
    pub buffer: BytesMut,
    pub next_correlation_id: i32,
    /// Bytes written to and read from the broker so far.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl NativeClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buffer: BytesMut::new(),
            next_correlation_id: 1,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    pub async fn send_raw(&mut self, api_key: i16, write_body: impl FnOnce(&mut BytesMut)) -> i32 {
        self.send_raw_version(api_key, 0, write_body).await
    }

    /// [`Self::send_raw`] with the header's `api_version`.
    pub async fn send_raw_version(
        &mut self,
        api_key: i16,
        api_version: i16,
        write_body: impl FnOnce(&mut BytesMut),
    ) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id: Some("http-test".into()),
        };
        let mut out = BytesMut::new();
        encode_request(&mut out, &header, write_body);
        self.stream.write_all(&out).await.unwrap();
        self.bytes_sent += out.len() as u64;
        correlation_id
    }

    pub async fn receive(&mut self) -> (ResponseHeader, Bytes) {
        loop {
            if let Ok(Decoded::Complete { consumed, .. }) = decode_frame(&self.buffer) {
                return split_response(self.buffer.split_to(consumed).freeze()).unwrap();
            }
            let read = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("no response in time")
                .unwrap();
            assert!(read > 0, "the broker closed the connection");
            self.bytes_received += read as u64;
        }
    }

    pub async fn call<T: Message>(&mut self, api: ApiKey, body: &impl Message) -> T {
        let correlation_id = self.send_raw(api.code(), |out| body.encode(out)).await;
        let (header, body) = self.receive().await;
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(header.error_code, ErrorCode::None);
        T::decode_body(body).unwrap()
    }

    pub async fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> ErrorCode {
        self.produce_with(Acks::Leader, topic, partition, records)
            .await
            .error_code
    }

    /// Produces with `acks`; the partition's whole answer.
    pub async fn produce_with(
        &mut self,
        acks: Acks,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> ProducePartitionResponse {
        let request = produce_request(acks, topic, partition, -1, records);
        let response: ProduceResponse = self.call(ApiKey::Produce, &request).await;
        response.topics[0].partitions[0].clone()
    }

    /// Produces with Produce version 1, which carries the leader epoch the client
    /// knows; the partition's whole answer.
    pub async fn produce_at_epoch(
        &mut self,
        acks: Acks,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        records: Bytes,
    ) -> ProducePartitionResponse {
        let request = produce_request(acks, topic, partition, current_leader_epoch, records);
        let correlation_id = self
            .send_raw_version(ApiKey::Produce.code(), 1, |out| {
                request.encode_version(1, out)
            })
            .await;
        let (header, body) = self.receive().await;
        assert_eq!(header.correlation_id, correlation_id);
        assert_eq!(header.error_code, ErrorCode::None);
        let response = ProduceResponse::decode_body(body).unwrap();
        response.topics[0].partitions[0].clone()
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> FetchPartitionResponse {
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
        let response: FetchResponse = self.call(ApiKey::Fetch, &request).await;
        response.topics[0].partitions[0].clone()
    }

    /// Joins `group` as a new member subscribed to `topic`.
    pub async fn join_group(&mut self, group: &str, topic: &str) -> ConsumerGroupHeartbeatResponse {
        let request = ConsumerGroupHeartbeatRequest {
            group_id: group.into(),
            member_id: String::new(),
            member_epoch: JOIN_MEMBER_EPOCH,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec![topic.into()]),
            owned_partitions: Vec::new(),
        };
        let response: ConsumerGroupHeartbeatResponse =
            self.call(ApiKey::ConsumerGroupHeartbeat, &request).await;
        assert_eq!(response.error_code, ErrorCode::None, "{response:?}");
        response
    }

    /// Commits `offset` of `topic`-`partition` as `member`.
    pub async fn commit(
        &mut self,
        group: &str,
        member: &ConsumerGroupHeartbeatResponse,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> ErrorCode {
        let request = OffsetCommitRequest {
            group_id: group.into(),
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            topics: vec![OffsetCommitTopic {
                name: topic.into(),
                partitions: vec![OffsetCommitPartition {
                    partition,
                    committed_offset: offset,
                    committed_metadata: None,
                }],
            }],
        };
        let response: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, &request).await;
        response.topics[0].partitions[0].error_code
    }
}

pub fn batch(records: &[RecordInput<'_>]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for record in records {
        builder.push(record);
    }
    builder.finish()
}

/// A batch of `count` records with values `prefix-<index>`.
pub fn values_batch(prefix: &str, count: usize) -> Bytes {
    let values: Vec<String> = (0..count)
        .map(|index| format!("{prefix}-{index}"))
        .collect();
    let records: Vec<RecordInput<'_>> = values
        .iter()
        .map(|value| RecordInput {
            value: Some(value.as_bytes()),
            timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        })
        .collect();
    batch(&records)
}

/// A Produce request for one partition, with a 10 s timeout.
fn produce_request(
    acks: Acks,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    records: Bytes,
) -> ProduceRequest {
    ProduceRequest {
        acks: acks.code(),
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                partition,
                current_leader_epoch,
                records,
            }],
        }],
    }
}
