//! The metadata quorum's Raft log: one file, `raft.log`, with no segments (a snapshot
//! lets the log be trimmed, so it stays small).
//!
//! ```text
//! file header   24 bytes: magic "FJRD", version, kind 5 (Raft log), base offset 0, CRC-32
//! start frame   {"last_purged": null | LogPosition}: where the log begins
//! entry frames  one StoredEntry each, consecutive indexes
//! frame         length:uint32  crc:uint32 (CRC-32C of the payload)  payload:[length bytes of JSON]
//! ```
//!
//! - **Append** writes the frames at the end and fdatasyncs before it returns. Entries
//!   must follow the last one without a gap; entries at or below the purge point are
//!   skipped, as the snapshot holds them (openraft's conformance suite appends such).
//! - **Open** cuts a torn or corrupt tail (a crash during an append): everything from the
//!   first frame that is short or fails its checksum. A frame that passes its checksum but
//!   cannot be read, or whose index does not follow, is corruption and an error.
//! - **Truncate** (a conflicting suffix, from a new leader) shortens the file and fsyncs.
//! - **Purge** (a prefix covered by a snapshot) writes the remaining entries, behind a new
//!   start frame, to `raft.log.tmp`, fsyncs it, renames it over `raft.log` and fsyncs the
//!   directory: a crash leaves the old log or the new one.
//!
//! Entries are also kept in memory, so reads never touch the file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::RaftStoreError;
use super::stored::{LogPosition, StoredEntry};
use crate::storage::StorageError;
use crate::storage::file_format::{
    FILE_HEADER_BYTES, FileKind, check_file_header, encode_file_header, sync_dir,
};

pub const LOG_FILE_NAME: &str = "raft.log";
const TMP_FILE_NAME: &str = "raft.log.tmp";
/// Largest entry: a batch of metadata records (each at most 16 MiB) and its framing.
pub const ENTRY_BYTES_MAX: u32 = 32 << 20;
const FRAME_HEADER_BYTES: usize = 8;

/// What the first frame says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartFrame {
    last_purged: Option<LogPosition>,
}

#[derive(Debug)]
pub struct RaftLogFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The last entry removed by a purge; no entry at or below its index remains.
    last_purged: Option<LogPosition>,
    entries: VecDeque<StoredEntry>,
    /// File position of each entry's frame.
    frame_positions: VecDeque<u64>,
    /// Length of the valid file.
    size: u64,
    /// Set when a write or fsync failed: what reached the disk is unknown, so the log
    /// refuses writes until it is opened again.
    failed: Option<String>,
}

impl RaftLogFile {
    /// Opens `dir/raft.log`, creating the directory and an empty log when missing.
    pub fn open(dir: &Path) -> Result<Self, RaftStoreError> {
        fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        let path = dir.join(LOG_FILE_NAME);
        let tmp = dir.join(TMP_FILE_NAME);
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::warn!(path = %tmp.display(), "removed an unfinished purge"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StorageError::io("remove", &tmp, error).into()),
        }
        if !path.exists() {
            let created = write_whole_log(dir, None, std::iter::empty())?;
            drop(created.file);
        }
        let bytes = fs::read(&path).map_err(|error| StorageError::io("read", &path, error))?;
        let corrupt = |reason: String| {
            RaftStoreError::from(StorageError::Corrupt {
                path: path.clone(),
                reason,
            })
        };
        check_file_header(&path, &bytes, FileKind::RaftLog, 0)?;
        let mut position = FILE_HEADER_BYTES as usize;
        // The start frame was written whole (by a rename); damage there is not a torn tail.
        let start_payload = read_frame(&bytes, position)
            .ok_or_else(|| corrupt("start frame is missing or damaged".into()))?;
        let start: StartFrame = serde_json::from_slice(start_payload)
            .map_err(|error| corrupt(format!("start frame cannot be read: {error}")))?;
        position += FRAME_HEADER_BYTES + start_payload.len();
        let mut entries = VecDeque::new();
        let mut frame_positions = VecDeque::new();
        while let Some(payload) = read_frame(&bytes, position) {
            let entry: StoredEntry = serde_json::from_slice(payload).map_err(|error| {
                corrupt(format!(
                    "entry at byte {position} has a valid checksum but cannot be read: {error}"
                ))
            })?;
            check_follows(start.last_purged, entries.back(), &entry)
                .map_err(|error| corrupt(format!("entry at byte {position}: {error}")))?;
            entries.push_back(entry);
            frame_positions.push_back(position as u64);
            position += FRAME_HEADER_BYTES + payload.len();
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| StorageError::io("open", &path, error))?;
        if position < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                bytes = bytes.len() - position,
                "cutting a torn tail off the Raft log"
            );
            file.set_len(position as u64)
                .and_then(|()| file.sync_all())
                .map_err(|error| StorageError::io("truncate", &path, error))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            path,
            file,
            last_purged: start.last_purged,
            entries,
            frame_positions,
            size: position as u64,
            failed: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last entry removed by a purge.
    pub fn last_purged(&self) -> Option<LogPosition> {
        self.last_purged
    }

    /// The last entry, or the last purged one when the log holds none.
    pub fn last_position(&self) -> Option<LogPosition> {
        self.entries
            .back()
            .map(|entry| entry.position)
            .or(self.last_purged)
    }

    /// The entries whose index is in `start..end`.
    pub fn entries(&self, start: u64, end: u64) -> Vec<StoredEntry> {
        let Some(first) = self.entries.front().map(|entry| entry.position.index) else {
            return Vec::new();
        };
        let skip = start.saturating_sub(first) as usize;
        let take = end.saturating_sub(start.max(first)) as usize;
        self.entries.iter().skip(skip).take(take).cloned().collect()
    }

    /// Appends entries; when this returns they are on disk.
    ///
    /// Entries at or below the purge point are skipped: a snapshot already holds them.
    pub fn append(&mut self, mut new_entries: Vec<StoredEntry>) -> Result<(), RaftStoreError> {
        self.check_writable()?;
        if let Some(purged) = self.last_purged {
            let count = new_entries.len();
            new_entries.retain(|entry| entry.position.index > purged.index);
            if new_entries.len() < count {
                tracing::debug!(
                    skipped = count - new_entries.len(),
                    purged = purged.index,
                    "Raft log entries at or below the purge point skipped"
                );
            }
        }
        let mut previous = self.entries.back();
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(new_entries.len());
        for entry in &new_entries {
            check_follows(self.last_purged, previous, entry)?;
            previous = Some(entry);
            positions.push(self.size + bytes.len() as u64);
            encode_frame(&mut bytes, entry)?;
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let written = self
            .file
            .write_all_at(&bytes, self.size)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            self.failed = Some(format!("append failed: {error}"));
            return Err(StorageError::io("append", &self.path, error).into());
        }
        self.size += bytes.len() as u64;
        self.entries.extend(new_entries);
        self.frame_positions.extend(positions);
        Ok(())
    }

    /// Removes the entries from `index` on (a suffix that conflicts with the leader's).
    pub fn truncate_from(&mut self, index: u64) -> Result<(), RaftStoreError> {
        self.check_writable()?;
        let Some(first) = self.entries.front().map(|entry| entry.position.index) else {
            return Ok(());
        };
        let keep = index.saturating_sub(first) as usize;
        if keep >= self.entries.len() {
            return Ok(());
        }
        let new_size = self.frame_positions[keep];
        let result = self
            .file
            .set_len(new_size)
            .and_then(|()| self.file.sync_all());
        if let Err(error) = result {
            self.failed = Some(format!("truncation failed: {error}"));
            return Err(StorageError::io("truncate", &self.path, error).into());
        }
        self.entries.truncate(keep);
        self.frame_positions.truncate(keep);
        self.size = new_size;
        Ok(())
    }

    /// Removes the entries up to and including `upto` (covered by a snapshot). `upto` may
    /// lie past the last entry; a purge never moves the start backwards.
    pub fn purge_upto(&mut self, upto: LogPosition) -> Result<(), RaftStoreError> {
        self.check_writable()?;
        if self
            .last_purged
            .is_some_and(|purged| purged.index >= upto.index)
        {
            return Ok(());
        }
        let drop_count = self
            .entries
            .iter()
            .take_while(|entry| entry.position.index <= upto.index)
            .count();
        let written = write_whole_log(&self.dir, Some(upto), self.entries.iter().skip(drop_count));
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                // The rename may or may not have happened.
                self.failed = Some(format!("purge failed: {error}"));
                return Err(error);
            }
        };
        self.file = written.file;
        self.last_purged = Some(upto);
        self.entries.drain(..drop_count);
        self.frame_positions = written.frame_positions.into();
        self.size = written.size;
        Ok(())
    }

    fn check_writable(&self) -> Result<(), RaftStoreError> {
        match &self.failed {
            Some(reason) => Err(StorageError::Offline {
                path: self.path.clone(),
                reason: reason.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }
}

/// Checks that `entry` may come next: right after the previous entry, or past the purge
/// point in an empty log.
fn check_follows(
    last_purged: Option<LogPosition>,
    previous: Option<&StoredEntry>,
    entry: &StoredEntry,
) -> Result<(), RaftStoreError> {
    let index = entry.position.index;
    let follows = match (previous, last_purged) {
        (Some(previous), _) => index == previous.position.index + 1,
        (None, Some(purged)) => index > purged.index,
        (None, None) => true,
    };
    if follows {
        return Ok(());
    }
    let previous = match (previous, last_purged) {
        (Some(previous), _) => format!("entry {}", previous.position.index),
        (None, Some(purged)) => format!("the purge point {}", purged.index),
        (None, None) => "nothing".into(),
    };
    Err(RaftStoreError::NotContiguous { index, previous })
}

/// A log file just written whole.
struct WrittenLog {
    file: File,
    frame_positions: Vec<u64>,
    size: u64,
}

/// Writes a complete log (header, start frame, `entries`) to the temporary file, fsyncs
/// it, renames it over the log and fsyncs the directory.
fn write_whole_log<'a>(
    dir: &Path,
    last_purged: Option<LogPosition>,
    entries: impl Iterator<Item = &'a StoredEntry>,
) -> Result<WrittenLog, RaftStoreError> {
    let mut bytes = encode_file_header(FileKind::RaftLog, 0).to_vec();
    let start = serde_json::to_vec(&StartFrame { last_purged }).expect("positions serialize");
    push_frame(&mut bytes, &start);
    let mut frame_positions = Vec::new();
    for entry in entries {
        frame_positions.push(bytes.len() as u64);
        encode_frame(&mut bytes, entry)?;
    }
    let path = dir.join(LOG_FILE_NAME);
    let tmp = dir.join(TMP_FILE_NAME);
    let mut file = File::create(&tmp).map_err(|error| StorageError::io("create", &tmp, error))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| StorageError::io("write", &tmp, error))?;
    fs::rename(&tmp, &path).map_err(|error| StorageError::io("rename", &tmp, error))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| StorageError::io("open", &path, error))?;
    Ok(WrittenLog {
        file,
        frame_positions,
        size: bytes.len() as u64,
    })
}

fn encode_frame(bytes: &mut Vec<u8>, entry: &StoredEntry) -> Result<(), RaftStoreError> {
    let payload = serde_json::to_vec(entry).expect("log entries always serialize");
    check_entry_size(entry, payload.len())?;
    push_frame(bytes, &payload);
    Ok(())
}

fn check_entry_size(entry: &StoredEntry, bytes: usize) -> Result<(), RaftStoreError> {
    if bytes > ENTRY_BYTES_MAX as usize {
        return Err(RaftStoreError::EntryTooLarge {
            index: entry.position.index,
            bytes,
            limit_bytes: ENTRY_BYTES_MAX,
        });
    }
    Ok(())
}

fn push_frame(bytes: &mut Vec<u8>, payload: &[u8]) {
    let length = u32::try_from(payload.len()).expect("frames are checked against ENTRY_BYTES_MAX");
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
}

/// The payload of the frame at `position`, or `None` when it is short, over the limit or
/// fails its checksum.
fn read_frame(bytes: &[u8], position: usize) -> Option<&[u8]> {
    let header = bytes.get(position..position + FRAME_HEADER_BYTES)?;
    let length = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
    if length > ENTRY_BYTES_MAX {
        return None;
    }
    let start = position + FRAME_HEADER_BYTES;
    let payload = bytes.get(start..start + length as usize)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}
