//! Sparse, memory-mapped index files: the `.index` (offset → file position) and
//! `.timeindex` (timestamp → offset) of a segment.
//!
//! ```text
//! file  := header:24 bytes (see file_format)  entry*
//! entry := key:int64  value:int64            big-endian, keys non-decreasing
//! ```
//!
//! The active segment's index is pre-allocated to `index_bytes_max` and written through
//! a shared memory map, so adding an entry is a store to memory. Sealing trims the file to
//! its entries and fsyncs it. Indexes are a cache of the log: recovery rebuilds any that
//! is missing or inconsistent.
//!
//! An index keeps no file descriptor open: on Linux a shared mapping stays valid after
//! its descriptor is closed, so the file is reopened by path only to resize or fsync
//! it. A partition with thousands of sealed segments thus holds none of their index
//! files open (see `docs/architecture.md`, open files).
//!
//! Why this module uses `unsafe`: mapping a file is unsafe in Rust because another
//! process could change the file under the map. Index files live in the broker's own
//! data directory, are written only by this process (the data directory is locked at
//! start-up), and are never truncated while mapped: [`Index::resize`] drops the map
//! first and maps again afterwards.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::error::{Result, StorageError};
use super::file_format::{FILE_HEADER_BYTES, FileKind, check_file_header, encode_file_header};

pub const ENTRY_BYTES: u64 = 16;
const HEADER: usize = FILE_HEADER_BYTES as usize;

/// One index file.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    map: MmapMut,
    entries: usize,
}

impl Index {
    /// Creates (or replaces) an empty index with room for `bytes_max` bytes.
    pub fn create(path: &Path, kind: FileKind, base_offset: i64, bytes_max: u64) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|error| StorageError::io("create", path, error))?;
        file.write_all(&encode_file_header(kind, base_offset))
            .map_err(|error| StorageError::io("write", path, error))?;
        let mut index = Self::map(path, &file, 0)?;
        drop(file);
        index.resize(bytes_max)?;
        Ok(index)
    }

    /// Opens an index written earlier whose file was trimmed to its entries (sealed,
    /// or closed cleanly). Returns `Ok(None)` when the file is missing, damaged, or not
    /// trimmed, so that the caller rebuilds it.
    pub fn open_trimmed(path: &Path, kind: FileKind, base_offset: i64) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StorageError::io("open", path, error)),
        };
        let length = file
            .metadata()
            .map_err(|error| StorageError::io("stat", path, error))?
            .len();
        if length < FILE_HEADER_BYTES || !(length - FILE_HEADER_BYTES).is_multiple_of(ENTRY_BYTES) {
            return Ok(None);
        }
        let entries = ((length - FILE_HEADER_BYTES) / ENTRY_BYTES) as usize;
        let index = Self::map(path, &file, entries)?;
        drop(file);
        if check_file_header(path, &index.map[..HEADER], kind, base_offset).is_err() {
            return Ok(None);
        }
        let keys_ordered = (1..entries).all(|i| index.entry(i - 1).0 <= index.entry(i).0);
        Ok(keys_ordered.then_some(index))
    }

    fn map(path: &Path, file: &File, entries: usize) -> Result<Self> {
        // SAFETY: see the module documentation; the file belongs to this process alone.
        let map = unsafe { MmapMut::map_mut(file) }
            .map_err(|error| StorageError::io("mmap", path, error))?;
        Ok(Self {
            path: path.to_owned(),
            map,
            entries,
        })
    }

    /// Changes the file's size, keeping the entries; used to pre-allocate and to trim.
    pub fn resize(&mut self, bytes_max: u64) -> Result<()> {
        let length = bytes_max.max(FILE_HEADER_BYTES + self.entries as u64 * ENTRY_BYTES);
        self.map
            .flush()
            .map_err(|error| StorageError::io("msync", &self.path, error))?;
        // Map an empty anonymous region first, so the file is never resized while mapped.
        self.map =
            MmapMut::map_anon(1).map_err(|error| StorageError::io("mmap", &self.path, error))?;
        let file = self.reopen()?;
        file.set_len(length)
            .map_err(|error| StorageError::io("resize", &self.path, error))?;
        // SAFETY: see the module documentation.
        self.map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|error| StorageError::io("mmap", &self.path, error))?;
        Ok(())
    }

    /// Opens the index file again, for the moment a resize or fsync needs it.
    fn reopen(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|error| StorageError::io("open", &self.path, error))
    }

    /// Trims the file to its entries and makes it durable: the segment is sealed.
    /// fsync applies to the file, not the descriptor, so a fresh one serves.
    pub fn seal(&mut self) -> Result<()> {
        self.resize(0)?;
        self.reopen()?
            .sync_all()
            .map_err(|error| StorageError::io("fsync", &self.path, error))
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn is_full(&self) -> bool {
        HEADER + (self.entries + 1) * ENTRY_BYTES as usize > self.map.len()
    }

    pub fn entry(&self, index: usize) -> (i64, i64) {
        let start = HEADER + index * ENTRY_BYTES as usize;
        let bytes = &self.map[start..start + ENTRY_BYTES as usize];
        (
            i64::from_be_bytes(bytes[..8].try_into().unwrap()),
            i64::from_be_bytes(bytes[8..].try_into().unwrap()),
        )
    }

    pub fn last(&self) -> Option<(i64, i64)> {
        self.entries.checked_sub(1).map(|index| self.entry(index))
    }

    /// Appends an entry; the caller checks [`Index::is_full`] first and keeps keys
    /// non-decreasing.
    pub fn push(&mut self, key: i64, value: i64) {
        assert!(!self.is_full(), "index {} is full", self.path.display());
        assert!(
            self.last().is_none_or(|(last, _)| last <= key),
            "index keys must not decrease"
        );
        let start = HEADER + self.entries * ENTRY_BYTES as usize;
        self.map[start..start + 8].copy_from_slice(&key.to_be_bytes());
        self.map[start + 8..start + 16].copy_from_slice(&value.to_be_bytes());
        self.entries += 1;
    }

    /// The last entry whose key is at most `key`.
    pub fn floor(&self, key: i64) -> Option<(i64, i64)> {
        let count = self.partition_point(|entry_key| entry_key <= key);
        count.checked_sub(1).map(|index| self.entry(index))
    }

    /// The position in the file of the last entry whose key is at most `key`.
    pub fn floor_index(&self, key: i64) -> Option<usize> {
        self.partition_point(|entry_key| entry_key <= key)
            .checked_sub(1)
    }

    /// The last entry whose key is strictly below `key`.
    pub fn below(&self, key: i64) -> Option<(i64, i64)> {
        let count = self.partition_point(|entry_key| entry_key < key);
        count.checked_sub(1).map(|index| self.entry(index))
    }

    fn partition_point(&self, predicate: impl Fn(i64) -> bool) -> usize {
        let (mut low, mut high) = (0, self.entries);
        while low < high {
            let middle = (low + high) / 2;
            if predicate(self.entry(middle).0) {
                low = middle + 1
            } else {
                high = middle
            }
        }
        low
    }

    /// Drops every entry whose key is at least `key` (log truncation).
    pub fn truncate_from(&mut self, key: i64) {
        let keep = self.partition_point(|entry_key| entry_key < key);
        let start = HEADER + keep * ENTRY_BYTES as usize;
        let end = HEADER + self.entries * ENTRY_BYTES as usize;
        self.map[start..end].fill(0);
        self.entries = keep;
    }

    /// Drops every entry whose value is at least `value` (for the time index, whose
    /// values are offsets).
    pub fn truncate_values_from(&mut self, value: i64) {
        let keep = (0..self.entries)
            .take_while(|&index| self.entry(index).1 < value)
            .count();
        let start = HEADER + keep * ENTRY_BYTES as usize;
        let end = HEADER + self.entries * ENTRY_BYTES as usize;
        self.map[start..end].fill(0);
        self.entries = keep;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries survive sealing and reopening, lookups find the right floor, and a file
    /// that was not trimmed is reported for rebuilding.
    #[test]
    fn push_seal_reopen_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = Index::create(&path, FileKind::OffsetIndex, 0, 1024).unwrap();
        for i in 0..10 {
            index.push(i * 10, i * 100);
        }
        assert_eq!(index.floor(35), Some((30, 300)));
        assert_eq!(index.floor(-1), None);
        assert_eq!(index.below(30), Some((20, 200)));
        assert!(
            Index::open_trimmed(&path, FileKind::OffsetIndex, 0)
                .unwrap()
                .is_none(),
            "pre-allocated"
        );
        index.seal().unwrap();
        drop(index);
        let reopened = Index::open_trimmed(&path, FileKind::OffsetIndex, 0)
            .unwrap()
            .unwrap();
        assert_eq!(reopened.len(), 10);
        assert_eq!(reopened.floor(1000), Some((90, 900)));
        assert!(
            Index::open_trimmed(&path, FileKind::TimeIndex, 0)
                .unwrap()
                .is_none(),
            "wrong kind"
        );
    }

    /// Truncation drops the entries at and after the key and keeps the rest usable.
    #[test]
    fn truncate_then_push() {
        let dir = tempfile::tempdir().unwrap();
        let mut index =
            Index::create(&dir.path().join("i"), FileKind::OffsetIndex, 0, 1024).unwrap();
        for i in 0..5 {
            index.push(i, i);
        }
        index.truncate_from(3);
        assert_eq!(index.len(), 3);
        index.push(7, 7);
        assert_eq!(index.last(), Some((7, 7)));
    }
}
