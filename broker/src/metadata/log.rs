//! The local metadata log of a single-node broker: `<data_dir>/__cluster_metadata/
//! metadata.log`, a file header followed by records framed as
//!
//! ```text
//! length:uint32  crc:uint32 (CRC-32 of the payload)  payload:[length bytes of JSON]
//! ```
//!
//! Every append is fsynced before the change is published. On open, a torn or corrupt
//! tail (a crash during an append) is cut off; everything before it is replayed.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::records::MetadataRecord;
use crate::storage::StorageError;
use crate::storage::file_format::{
    FILE_HEADER_BYTES, FileKind, check_file_header, encode_file_header, sync_dir,
};

/// The directory of the metadata log inside the data directory. It cannot be mistaken
/// for a partition directory, whose names end in `-<partition>`.
pub const METADATA_DIR: &str = "__cluster_metadata";
const FILE_NAME: &str = "metadata.log";
/// Largest metadata record; a topic with many partitions stays far below.
pub const RECORD_BYTES_MAX: u32 = 16 << 20;

#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    size: u64,
}

impl MetadataLog {
    /// Opens or creates the log and returns it with every record it holds.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<MetadataRecord>), StorageError> {
        let dir = data_dir.join(METADATA_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|error| StorageError::io("create directory", &dir, error))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| StorageError::io("open", &path, error))?;
        let length = file
            .metadata()
            .map_err(|error| StorageError::io("stat", &path, error))?
            .len();
        if length < FILE_HEADER_BYTES {
            file.set_len(0)
                .map_err(|error| StorageError::io("truncate", &path, error))?;
            file.write_all(&encode_file_header(FileKind::MetadataLog, 0))
                .map_err(|error| StorageError::io("write", &path, error))?;
            file.sync_all()
                .map_err(|error| StorageError::io("fsync", &path, error))?;
            sync_dir(&dir)?;
            return Ok((
                Self {
                    path,
                    file,
                    size: FILE_HEADER_BYTES,
                },
                Vec::new(),
            ));
        }
        let mut reader = BufReader::new(&file);
        let mut header = [0u8; FILE_HEADER_BYTES as usize];
        reader
            .read_exact(&mut header)
            .map_err(|error| StorageError::io("read", &path, error))?;
        check_file_header(&path, &header, FileKind::MetadataLog, 0)?;
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
            let record =
                serde_json::from_slice(&payload).map_err(|error| StorageError::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "record at byte {position} has a valid checksum but cannot be read: {error}"
                    ),
                })?;
            records.push(record);
            position += 8 + u64::from(size);
        }
        drop(reader);
        if position < length {
            tracing::warn!(path = %path.display(), bytes = length - position, "cutting a torn tail off the metadata log");
            file.set_len(position)
                .map_err(|error| StorageError::io("truncate", &path, error))?;
            file.sync_all()
                .map_err(|error| StorageError::io("fsync", &path, error))?;
        }
        file.seek(SeekFrom::Start(position))
            .map_err(|error| StorageError::io("seek", &path, error))?;
        Ok((
            Self {
                path,
                file,
                size: position,
            },
            records,
        ))
    }

    /// Appends records and fsyncs them: when this returns they survive a crash.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for record in records {
            let payload = serde_json::to_vec(record).expect("metadata records always serialize");
            assert!(
                payload.len() <= RECORD_BYTES_MAX as usize,
                "metadata record too large"
            );
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        let result = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = result {
            // Put the file back where it was, so a partial write is not followed by more.
            let _restored = self
                .file
                .set_len(self.size)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.size)));
            return Err(StorageError::io("append", &self.path, error));
        }
        self.size += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records survive reopening, and a torn last record is cut off cleanly.
    #[test]
    fn reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records) = MetadataLog::open(dir.path()).unwrap();
        assert!(records.is_empty());
        let first = MetadataRecord::ClusterInitialized {
            cluster_id: "c".into(),
        };
        let second = MetadataRecord::TopicDeleted {
            topic_id: "t".into(),
        };
        log.append(&[first.clone(), second.clone()]).unwrap();
        drop(log);
        let path = dir.path().join(METADATA_DIR).join(FILE_NAME);
        let full = std::fs::read(&path).unwrap();
        assert_eq!(
            MetadataLog::open(dir.path()).unwrap().1,
            vec![first.clone(), second]
        );
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let (mut log, records) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![first.clone()]);
        log.append(std::slice::from_ref(&first)).unwrap();
        assert_eq!(
            MetadataLog::open(dir.path()).unwrap().1,
            vec![first.clone(), first]
        );
    }
}
