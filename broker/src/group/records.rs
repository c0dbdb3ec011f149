//! The records of the internal `__consumer_offsets` topic: committed offsets and their
//! deletions.
//!
//! Each committed offset is one record in the group's partition of the topic. Its key
//! names what the offset is for, its value what it is; a record with the same key and
//! a null value (a tombstone) deletes the offset. The latest record of a key wins, so
//! replaying the partition from its start rebuilds every group's offsets, and a future
//! compaction may keep only the latest record per key.
//!
//! ```text
//! key       := key_version:int16 (= 1, a committed offset)
//!              group_id:string  topic:string  partition:int32
//! value     := value_version:int16 (= 0)  committed_offset:int64
//!              metadata:nullable string  commit_timestamp_ms:int64
//! tombstone := the key, with a null record value
//! ```
//! Integers are big-endian and strings are the protocol's (`int16` length, UTF-8), as in
//! `docs/protocol.md`. The key version doubles as the record type, so that later record
//! types (group metadata) can share the topic: a reader skips key versions it does not
//! know, and refuses value versions it does not know.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_protocol::limits::{GROUP_ID_BYTES_MAX, TOPIC_NAME_BYTES_MAX};
use fjord_protocol::wire::{DecodeError, Reader, put_nullable_string, put_string};

/// Key version of a committed-offset record.
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Value version of a committed offset.
pub const OFFSET_VALUE_VERSION: i16 = 0;

/// What a committed offset is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetKey {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group consumes.
    pub committed_offset: i64,
    pub metadata: Option<String>,
    /// Wall-clock time of the commit, milliseconds since the Unix epoch.
    pub commit_timestamp_ms: i64,
}

/// One record of the offsets topic: a commit, or (`value` `None`) a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub key: OffsetKey,
    pub value: Option<OffsetValue>,
}

/// Why a record of the offsets topic could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("offsets record without a key")]
    MissingKey,
    #[error("offsets record value version {0} is unknown")]
    UnknownValueVersion(i16),
    #[error("malformed offsets record: {0}")]
    Malformed(#[from] DecodeError),
}

impl OffsetRecord {
    pub fn encode_key(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.key.group_id.len() + self.key.topic.len());
        out.put_i16(OFFSET_KEY_VERSION);
        put_string(&mut out, &self.key.group_id);
        put_string(&mut out, &self.key.topic);
        out.put_i32(self.key.partition);
        out.freeze()
    }

    /// The record value; `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        let value = self.value.as_ref()?;
        let metadata_bytes = value.metadata.as_ref().map_or(0, String::len);
        let mut out = BytesMut::with_capacity(22 + metadata_bytes);
        out.put_i16(OFFSET_VALUE_VERSION);
        out.put_i64(value.committed_offset);
        put_nullable_string(&mut out, value.metadata.as_deref());
        out.put_i64(value.commit_timestamp_ms);
        Some(out.freeze())
    }

    /// Reads a record; `Ok(None)` for a record type (key version) this build does not
    /// know, which the caller skips.
    pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Result<Option<Self>, RecordError> {
        let key = key.ok_or(RecordError::MissingKey)?;
        let mut reader = Reader::new(key.clone());
        if reader.i16("key_version")? != OFFSET_KEY_VERSION {
            return Ok(None);
        }
        let key = OffsetKey {
            group_id: reader.bounded_string("group_id", GROUP_ID_BYTES_MAX)?,
            topic: reader.bounded_string("topic", TOPIC_NAME_BYTES_MAX)?,
            partition: reader.i32("partition")?,
        };
        reader.finish()?;
        let Some(value) = value else {
            return Ok(Some(Self { key, value: None }));
        };
        let mut reader = Reader::new(value.clone());
        let version = reader.i16("value_version")?;
        if version != OFFSET_VALUE_VERSION {
            return Err(RecordError::UnknownValueVersion(version));
        }
        let value = OffsetValue {
            committed_offset: reader.i64("committed_offset")?,
            metadata: reader.nullable_string("metadata")?,
            commit_timestamp_ms: reader.i64("commit_timestamp_ms")?,
        };
        reader.finish()?;
        Ok(Some(Self {
            key,
            value: Some(value),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Bytes {
        let digits: String = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        (0..digits.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&digits[at..at + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .into()
    }

    /// The layout drawn in docs/architecture.md, byte for byte (computed by hand), and
    /// back.
    #[test]
    fn committed_offset_layout() {
        let record = OffsetRecord {
            key: OffsetKey {
                group_id: "shipping".into(),
                topic: "orders".into(),
                partition: 2,
            },
            value: Some(OffsetValue {
                committed_offset: 42,
                metadata: None,
                commit_timestamp_ms: 1_700_000_000_000,
            }),
        };
        let key = hex("
            0001                  # key_version = 1 (committed offset)
            0008 7368697070696e67 # group_id = \"shipping\"
            0006 6f7264657273     # topic = \"orders\"
            00000002              # partition = 2
        ");
        let value = hex("
            0000                  # value_version = 0
            000000000000002a      # committed_offset = 42
            ffff                  # metadata = null
            0000018bcfe56800      # commit_timestamp_ms = 1700000000000
        ");
        assert_eq!(record.encode_key(), key);
        assert_eq!(record.encode_value(), Some(value.clone()));
        assert_eq!(
            OffsetRecord::decode(Some(&key), Some(&value)),
            Ok(Some(record.clone()))
        );
        let tombstone = OffsetRecord {
            value: None,
            ..record
        };
        assert_eq!(tombstone.encode_value(), None);
        assert_eq!(OffsetRecord::decode(Some(&key), None), Ok(Some(tombstone)));
    }

    /// Unknown record types are skipped, unknown value versions and damaged records
    /// refused, never a panic.
    #[test]
    fn unknown_and_damaged_records() {
        let other_type = Bytes::from_static(&[0, 2, 0, 0]);
        assert_eq!(OffsetRecord::decode(Some(&other_type), None), Ok(None));
        assert_eq!(
            OffsetRecord::decode(None, None),
            Err(RecordError::MissingKey)
        );
        let key = hex("0001 0001 67 0001 74 00000000");
        let future_value = Bytes::from_static(&[0, 9]);
        assert_eq!(
            OffsetRecord::decode(Some(&key), Some(&future_value)),
            Err(RecordError::UnknownValueVersion(9))
        );
        for cut in 0..key.len() {
            let short = key.slice(..cut);
            assert!(OffsetRecord::decode(Some(&short), None).is_err(), "{cut}");
        }
    }
}
