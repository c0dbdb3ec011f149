//! The local metadata log of the pre-Raft release: `<data_dir>/__cluster_metadata/
//! metadata.log`, a file header followed by records framed as
//!
//! ```text
//! length:uint32  crc:uint32 (CRC-32 of the payload)  payload:[length bytes of JSON]
//! ```
//!
//! Metadata now goes through the quorum ([`super::metadata_log`]); this file is only read
//! once, to migrate a data directory of that release (see [`super::migration`]). Reading
//! changes nothing: a torn tail (a crash during an append) is skipped, not cut.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::records::MetadataRecord;
use crate::storage::StorageError;
use crate::storage::file_format::{FILE_HEADER_BYTES, FileKind, check_file_header};

/// The directory of the metadata inside the data directory (the quorum's files, and the
/// old log). It cannot be mistaken for a partition directory, whose names end in
/// `-<partition>`.
pub const METADATA_DIR: &str = "__cluster_metadata";
/// The old log's name in [`METADATA_DIR`].
pub const FILE_NAME: &str = "metadata.log";
/// Largest metadata record; a topic with many partitions stays far below.
pub const RECORD_BYTES_MAX: u32 = 16 << 20;

/// The path of the old log in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(METADATA_DIR).join(FILE_NAME)
}

/// Every whole record of the log at `path`, in order; `None` when there is no such file.
pub fn read(path: &Path) -> Result<Option<Vec<MetadataRecord>>, StorageError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("open", path, error)),
    };
    let length = file
        .metadata()
        .map_err(|error| StorageError::io("stat", path, error))?
        .len();
    if length < FILE_HEADER_BYTES {
        // The release created the header before anything else: nothing was written.
        return Ok(Some(Vec::new()));
    }
    let mut reader = BufReader::new(file);
    let mut header = [0u8; FILE_HEADER_BYTES as usize];
    reader
        .read_exact(&mut header)
        .map_err(|error| StorageError::io("read", path, error))?;
    check_file_header(path, &header, FileKind::MetadataLog, 0)?;
    let mut records = Vec::new();
    let mut position = FILE_HEADER_BYTES;
    loop {
        let mut frame = [0u8; 8];
        if reader.read_exact(&mut frame).is_err() {
            break;
        }
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap());
        let crc = u32::from_be_bytes(frame[4..].try_into().unwrap());
        if size > RECORD_BYTES_MAX || u64::from(size) > length - position - 8 {
            break;
        }
        let mut payload = vec![0u8; size as usize];
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let record = serde_json::from_slice(&payload).map_err(|error| StorageError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "record at byte {position} has a valid checksum but cannot be read: {error}"
            ),
        })?;
        records.push(record);
        position += 8 + u64::from(size);
    }
    if position < length {
        tracing::warn!(path = %path.display(), bytes = length - position, "ignoring a torn tail of the old metadata log");
    }
    Ok(Some(records))
}

/// Writes a log as the pre-Raft release did, for tests of reading and migration.
#[cfg(test)]
pub fn write(path: &Path, records: &[MetadataRecord]) {
    use crate::storage::file_format::encode_file_header;
    let mut bytes = encode_file_header(FileKind::MetadataLog, 0).to_vec();
    for record in records {
        let payload = serde_json::to_vec(record).unwrap();
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        bytes.extend_from_slice(&payload);
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every whole record is read, a torn last record is skipped and left in place, and
    /// a missing file is `None`.
    #[test]
    fn reads_records_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        assert_eq!(read(&path).unwrap(), None);
        let first = MetadataRecord::ClusterInitialized {
            cluster_id: "c".into(),
        };
        let second = MetadataRecord::TopicDeleted {
            topic_id: "t".into(),
        };
        write(&path, &[first.clone(), second.clone()]);
        assert_eq!(read(&path).unwrap(), Some(vec![first.clone(), second]));
        let full = std::fs::read(&path).unwrap();
        let torn = &full[..full.len() - 3];
        std::fs::write(&path, torn).unwrap();
        assert_eq!(read(&path).unwrap(), Some(vec![first]));
        assert_eq!(std::fs::read(&path).unwrap(), torn);
    }

    /// The log of the pre-Raft release in the test fixture reads whole.
    #[test]
    fn reads_the_pre_raft_fixture() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-raft-data-dir");
        let records = read(&path(&fixture)).unwrap().unwrap();
        assert!(matches!(
            &records[0],
            MetadataRecord::ClusterInitialized { cluster_id }
                if cluster_id == "4f60bcff-7ea3-4f55-b899-e84309634422"
        ));
    }
}
