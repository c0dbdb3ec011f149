//! Headers of the files Fjord invents, and crash-safe small state files.
//!
//! Segment and index files start with a 24-byte header:
//!
//! ```text
//! offset size field
//!      0    4  magic        "FJRD" (0x464a5244)
//!      4    2  version      1
//!      6    2  kind         1 = log, 2 = offset index, 3 = time index,
//!                           4 = metadata log, 5 = Raft log
//!      8    8  base_offset  the segment's first offset (matches the file name)
//!     16    4  reserved     0
//!     20    4  crc          CRC-32 (crc32fast) of bytes 0..20
//! ```
//!
//! State files (checkpoints, leader-epoch cache, the metadata snapshot, a partition's
//! topic id, the data directory's identity) are small and rewritten whole:
//!
//! ```text
//! magic "FJST":4  version:2  kind:2  payload_length:4  payload  crc:4 (CRC-32 of all before)
//! ```
//!
//! written to `<name>.tmp`, fsynced, renamed over `<name>`, and the directory fsynced, so a
//! crash leaves either the old or the new file, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Result, StorageError};

pub const FILE_HEADER_BYTES: u64 = 24;
const FILE_MAGIC: u32 = 0x464a_5244;
const STATE_MAGIC: u32 = 0x464a_5354;
pub const FORMAT_VERSION: u16 = 1;

/// What a file with a [`FileHeader`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum FileKind {
    Log = 1,
    OffsetIndex = 2,
    TimeIndex = 3,
    MetadataLog = 4,
    /// The Raft log of the metadata quorum (`metadata/raft/log_file.rs`).
    RaftLog = 5,
}

/// Encodes the header of a segment or index file.
pub fn encode_file_header(kind: FileKind, base_offset: i64) -> [u8; FILE_HEADER_BYTES as usize] {
    let mut header = [0u8; FILE_HEADER_BYTES as usize];
    header[0..4].copy_from_slice(&FILE_MAGIC.to_be_bytes());
    header[4..6].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    header[6..8].copy_from_slice(&(kind as u16).to_be_bytes());
    header[8..16].copy_from_slice(&base_offset.to_be_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_be_bytes());
    header
}

/// Checks a header read from `path`.
pub fn check_file_header(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    base_offset: i64,
) -> Result<()> {
    let corrupt = |reason: String| {
        Err(StorageError::Corrupt {
            path: path.to_owned(),
            reason,
        })
    };
    if bytes.len() < FILE_HEADER_BYTES as usize {
        return corrupt(format!(
            "file is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    let field = |range: std::ops::Range<usize>| &bytes[range];
    if field(0..4) != FILE_MAGIC.to_be_bytes() {
        return corrupt("not a Fjord file (bad magic)".into());
    }
    let crc = u32::from_be_bytes(field(20..24).try_into().unwrap());
    if crc != crc32fast::hash(field(0..20)) {
        return corrupt("header checksum mismatch".into());
    }
    let version = u16::from_be_bytes(field(4..6).try_into().unwrap());
    if version != FORMAT_VERSION {
        return corrupt(format!(
            "format version {version} is not supported (expected {FORMAT_VERSION})"
        ));
    }
    if field(6..8) != (kind as u16).to_be_bytes() || field(8..16) != base_offset.to_be_bytes() {
        return corrupt(format!(
            "header does not describe a {kind:?} file at offset {base_offset}"
        ));
    }
    Ok(())
}

/// Kinds of state files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum StateKind {
    Checkpoint = 1,
    LeaderEpochs = 2,
    Metadata = 3,
    /// Every partition's last known log end (`<data_dir>/log-ends`).
    LogEnds = 4,
    /// The metadata quorum's vote and committed position.
    RaftVote = 5,
    /// The metadata quorum's snapshot of the image.
    RaftSnapshot = 6,
    /// The id of the topic a partition directory belongs to (`<partition dir>/topic-id`).
    TopicId = 7,
    /// The node and cluster a data directory belongs to (`<data_dir>/node.identity`).
    NodeIdentity = 8,
}

/// Atomically replaces `dir/name` with a state file holding `payload`.
pub fn write_state_file(dir: &Path, name: &str, kind: StateKind, payload: &[u8]) -> Result<()> {
    let mut bytes = Vec::with_capacity(payload.len() + 16);
    bytes.extend_from_slice(&STATE_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    bytes.extend_from_slice(&(kind as u16).to_be_bytes());
    bytes.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("state file too large")
            .to_be_bytes(),
    );
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());

    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|error| StorageError::io("create", &tmp, error))?;
    let written = file
        .write_all(&bytes)
        .map_err(|error| StorageError::io("write", &tmp, error))
        .and_then(|()| {
            file.sync_all()
                .map_err(|error| StorageError::io("fsync", &tmp, error))
        });
    if let Err(error) = written {
        // Give the space back (a full disk is the usual cause); the old file stays.
        if let Err(remove_error) = fs::remove_file(&tmp) {
            tracing::warn!(path = %tmp.display(), %remove_error, "cannot remove a state file that failed to write");
        }
        return Err(error);
    }
    fs::rename(&tmp, &path).map_err(|error| StorageError::io("rename", &tmp, error))?;
    sync_dir(dir)
}

/// Reads a state file; `None` when it does not exist.
pub fn read_state_file(dir: &Path, name: &str, kind: StateKind) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("read", &path, error)),
    };
    let corrupt = |reason: &str| {
        Err(StorageError::Corrupt {
            path: path.clone(),
            reason: reason.into(),
        })
    };
    if bytes.len() < 16 || bytes[0..4] != STATE_MAGIC.to_be_bytes() {
        return corrupt("not a Fjord state file");
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(content).to_be_bytes() != crc {
        return corrupt("checksum mismatch");
    }
    if content[4..6] != FORMAT_VERSION.to_be_bytes() || content[6..8] != (kind as u16).to_be_bytes()
    {
        return corrupt("unsupported version or wrong kind");
    }
    let length = u32::from_be_bytes(content[8..12].try_into().unwrap()) as usize;
    if length != content.len() - 12 {
        return corrupt("payload length mismatch");
    }
    Ok(Some(content[12..].to_vec()))
}

/// fsyncs a directory so that a rename or new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|error| StorageError::io("open", dir, error))?;
    handle
        .sync_all()
        .map_err(|error| StorageError::io("fsync", dir, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file round-trips, and any flipped byte is detected.
    #[test]
    fn state_file_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        write_state_file(dir.path(), "state", StateKind::Checkpoint, b"payload").unwrap();
        assert_eq!(
            read_state_file(dir.path(), "state", StateKind::Checkpoint)
                .unwrap()
                .unwrap(),
            b"payload"
        );
        assert!(
            read_state_file(dir.path(), "absent", StateKind::Checkpoint)
                .unwrap()
                .is_none()
        );
        let path = dir.path().join("state");
        let original = fs::read(&path).unwrap();
        for index in 0..original.len() {
            let mut damaged = original.clone();
            damaged[index] ^= 0x01;
            fs::write(&path, &damaged).unwrap();
            assert!(
                read_state_file(dir.path(), "state", StateKind::Checkpoint).is_err(),
                "flip at {index}"
            );
        }
    }

    /// Headers of another kind or base offset are refused.
    #[test]
    fn file_header_checks() {
        let header = encode_file_header(FileKind::Log, 42);
        let path = Path::new("x");
        check_file_header(path, &header, FileKind::Log, 42).unwrap();
        assert!(check_file_header(path, &header, FileKind::OffsetIndex, 42).is_err());
        assert!(check_file_header(path, &header, FileKind::Log, 43).is_err());
        assert!(check_file_header(path, &header[..10], FileKind::Log, 42).is_err());
    }
}
