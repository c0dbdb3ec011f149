//! The replica fetch: how a follower asks its leader for records, on the internal
//! listener (frame kind [`REPLICA_FETCH`](crate::internal::frame::kind::REPLICA_FETCH)).
//!
//! One request per follower and leader carries every partition the follower follows
//! there. The request is JSON. The response is a JSON header followed by the records,
//! so that record bytes travel as they are stored:
//!
//! ```text
//! response  header_length:uint32  header:JSON  records of partition 1, 2, …
//! ```
//!
//! The header gives each partition's `records_bytes`, in order; their sum must be
//! what follows the header, exactly.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A follower's fetch of all the partitions it follows on one leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub replica_id: i32,
    /// How long the leader may wait for new records before answering with none.
    pub max_wait_ms: u64,
    /// Most record bytes in the response (at least one batch of a partition is sent).
    pub max_bytes: u64,
    pub partitions: Vec<PartitionFetch>,
}

/// Where a follower is in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFetch {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader epoch the follower follows (from its metadata).
    pub leader_epoch: i32,
    /// The follower's log end: it has everything below, matching the leader if
    /// `last_fetched_epoch` does.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch (`None`: its log is empty).
    pub last_fetched_epoch: Option<i32>,
    /// The follower has everything below this durable.
    pub durable_end: i64,
    /// The high watermark the follower knows: a leader with a higher one answers at once.
    pub high_watermark: i64,
}

/// Why the leader did not serve a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FetchError {
    /// This broker does not lead the partition (or leads another topic of that name).
    #[error("not the leader")]
    NotLeader,
    /// The follower follows an older leader epoch: it must learn the new metadata.
    #[error("leader epoch {follower} is older than the leader's {leader}")]
    FencedLeaderEpoch { follower: i32, leader: i32 },
    /// The follower follows a newer leader epoch than this leader knows.
    #[error("leader epoch {follower} is newer than the leader's {leader}")]
    UnknownLeaderEpoch { follower: i32, leader: i32 },
    /// The fetcher is not a replica of the partition, or not its current registration.
    #[error("broker {0} is not a replica of the partition")]
    NotAReplica(i32),
    /// The follower's log ends below the leader's log start: retention removed what it
    /// would need next.
    #[error("offset {fetch_offset} is below the leader's log start {log_start_offset}")]
    OffsetOutOfRange {
        fetch_offset: i64,
        log_start_offset: i64,
    },
    #[error("leader storage: {0}")]
    Storage(String),
}

/// Where the follower's log leaves the leader's: it must truncate to `end_offset`
/// (the end of `epoch` in the leader's log) and fetch again (Kafka's KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diverging {
    /// The largest epoch the leader has at or below the follower's last one; -1: none.
    pub epoch: i32,
    pub end_offset: i64,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionData {
    pub topic: String,
    pub partition: i32,
    pub error: Option<FetchError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub diverging: Option<Diverging>,
    /// The length of this partition's records after the header.
    pub records_bytes: u64,
    #[serde(skip)]
    pub records: Bytes,
}

impl PartitionData {
    /// An answer with no records.
    pub fn empty(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            error: None,
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            diverging: None,
            records_bytes: 0,
            records: Bytes::new(),
        }
    }

    pub fn failed(topic: &str, partition: i32, error: FetchError) -> Self {
        Self {
            error: Some(error),
            ..Self::empty(topic, partition)
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    partitions: Vec<PartitionData>,
}

/// The response's bytes.
pub fn encode_response(partitions: Vec<PartitionData>) -> Vec<u8> {
    let mut partitions = partitions;
    for partition in &mut partitions {
        partition.records_bytes = partition.records.len() as u64;
    }
    let records: Vec<Bytes> = partitions.iter().map(|p| p.records.clone()).collect();
    let header = serde_json::to_vec(&Header { partitions }).expect("headers serialize");
    let total: usize = records.iter().map(Bytes::len).sum();
    let mut body = Vec::with_capacity(4 + header.len() + total);
    body.extend_from_slice(&(header.len() as u32).to_be_bytes());
    body.extend_from_slice(&header);
    for bytes in records {
        body.extend_from_slice(&bytes);
    }
    body
}

/// Reads a response; an error says why the bytes cannot be one.
pub fn decode_response(body: Vec<u8>) -> Result<Vec<PartitionData>, String> {
    let body = Bytes::from(body);
    let Some(length) = body.get(..4) else {
        return Err(format!("{} bytes are too few for a response", body.len()));
    };
    let header_length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
    let header_end = 4usize
        .checked_add(header_length)
        .filter(|end| *end <= body.len())
        .ok_or_else(|| format!("header of {header_length} bytes overruns the response"))?;
    let header: Header = serde_json::from_slice(&body[4..header_end])
        .map_err(|error| format!("response header: {error}"))?;
    let mut partitions = header.partitions;
    let mut position = header_end;
    for partition in &mut partitions {
        let end = usize::try_from(partition.records_bytes)
            .ok()
            .and_then(|bytes| position.checked_add(bytes))
            .filter(|end| *end <= body.len())
            .ok_or_else(|| {
                format!(
                    "records of {}-{} overrun the response",
                    partition.topic, partition.partition
                )
            })?;
        partition.records = body.slice(position..end);
        position = end;
    }
    if position != body.len() {
        return Err(format!(
            "{} bytes after the last partition's records",
            body.len() - position
        ));
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_reads_back_with_its_records() {
        let mut first = PartitionData::empty("a", 0);
        first.records = Bytes::from_static(b"first records");
        first.high_watermark = 7;
        let second = PartitionData::failed("b", 3, FetchError::NotLeader);
        let mut third = PartitionData::empty("c", 1);
        third.records = Bytes::from_static(b"xyz");
        third.diverging = Some(Diverging {
            epoch: 2,
            end_offset: 40,
        });
        let body = encode_response(vec![first, second, third]);
        let read = decode_response(body).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(&read[0].records[..], b"first records");
        assert_eq!(read[0].high_watermark, 7);
        assert_eq!(read[1].error, Some(FetchError::NotLeader));
        assert!(read[1].records.is_empty());
        assert_eq!(&read[2].records[..], b"xyz");
        assert_eq!(read[2].diverging.unwrap().end_offset, 40);
    }

    #[test]
    fn a_response_that_lies_about_its_lengths_is_refused() {
        let mut data = PartitionData::empty("a", 0);
        data.records = Bytes::from_static(b"0123456789");
        let body = encode_response(vec![data]);
        assert!(decode_response(body[..body.len() - 1].to_vec()).is_err());
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_response(longer).is_err());
        assert!(decode_response(vec![0, 0]).is_err());
        assert!(decode_response(vec![0xff, 0xff, 0xff, 0xff, b'{']).is_err());
    }
}
