//! One segment of a partition log: `<base_offset:020>.log` with its `.index` and
//! `.timeindex`.
//!
//! The log file is a [file header](super::file_format) followed by record batches back
//! to back, exactly as producers sent them apart from the stamped base offset and leader
//! epoch. The offset index maps the base offset of a batch to its file position every
//! `index_interval_bytes`; the time index maps the largest timestamp seen so far to the
//! base offset of the batch where it was recorded, at the same points.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use fjord_protocol::batch::{BATCH_HEADER_BYTES, MAGIC};
use fjord_protocol::{RecordBatch, RecordBatchError};

use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::file_format::{FILE_HEADER_BYTES, FileKind, check_file_header, encode_file_header};
use super::index::Index;
use super::open_files::{SegmentId, next_segment_id, open_segment_files};

/// The header fields of a stored batch that the log needs without decoding records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub leader_epoch: i32,
    pub size: u64,
}

impl BatchInfo {
    pub fn of(batch: &RecordBatch) -> Self {
        Self::from_header(batch.as_bytes())
    }

    /// Reads the fields from the first [`BATCH_HEADER_BYTES`] of a batch.
    pub fn from_header(header: &[u8]) -> Self {
        let field = |start: usize, length: usize| &header[start..start + length];
        let base_offset = i64::from_be_bytes(field(0, 8).try_into().unwrap());
        let length = i32::from_be_bytes(field(8, 4).try_into().unwrap());
        let last_offset_delta = i32::from_be_bytes(field(23, 4).try_into().unwrap());
        Self {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            max_timestamp: i64::from_be_bytes(field(35, 8).try_into().unwrap()),
            leader_epoch: i32::from_be_bytes(field(12, 4).try_into().unwrap()),
            size: 12 + length.max(0) as u64,
        }
    }
}

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// What a recovery scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanOutcome {
    /// Every batch was read and the indexes were rebuilt.
    pub rebuilt: bool,
    /// Bytes cut off the end of the segment because they were torn or corrupt.
    pub truncated_bytes: u64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    /// This segment's key in the set of open sealed-segment files.
    id: SegmentId,
    log_path: PathBuf,
    /// The `.log` file, held open while the segment is active (or being recovered);
    /// `None` once sealed: reads then take it from the bounded set of open files
    /// ([`open_segment_files`]).
    file: Option<Arc<File>>,
    /// Bytes of the log file that hold complete batches (header included).
    size: u64,
    offset_index: Index,
    time_index: Index,
    /// The offset after the last batch of this segment.
    next_offset: i64,
    max_timestamp: i64,
    bytes_since_index_entry: u64,
    /// When the segment was created or opened, for time-based rolling.
    pub created_ms: i64,
    index_interval_bytes: u64,
    /// Set when a lookup found an offset index entry that does not match the log.
    index_damaged: AtomicBool,
}

/// How far ahead of the clock a segment's largest timestamp may be and still count for
/// time retention (see [`Segment::retention_timestamp`]). One hour, like Kafka's default
/// `log.message.timestamp.after.max.ms`.
pub const FUTURE_TIMESTAMP_TOLERANCE_MS: i64 = 3_600_000;

impl Segment {
    pub fn create(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64) -> Result<Self> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|error| StorageError::io("create", &log_path, error))?;
        file.write_all_at(&encode_file_header(FileKind::Log, base_offset), 0)
            .map_err(|error| StorageError::io("write", &log_path, error))?;
        let (offset_index, time_index) = create_indexes(dir, base_offset, config)?;
        Ok(Self {
            base_offset,
            id: next_segment_id(),
            log_path,
            file: Some(Arc::new(file)),
            size: FILE_HEADER_BYTES,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: -1,
            bytes_since_index_entry: 0,
            created_ms: now_ms,
            index_interval_bytes: config.index_interval_bytes,
            index_damaged: AtomicBool::new(false),
        })
    }

    /// Opens an existing segment. With `scan`, or when an index is missing or
    /// inconsistent, every batch is read and CRC-checked, the indexes are rebuilt and a
    /// torn or corrupt tail is cut off. Without, only the bytes after the last index
    /// entry are walked to find the end.
    ///
    /// Damage that starts below `durable_end` (the log's recovery point) is not cut:
    /// the segment is left as it is and the error is [`StorageError::NeedsRecovery`].
    /// With `repair_header`, a damaged file header is rewritten (the batches behind it
    /// are then all verified) instead of refused.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
        scan: bool,
        durable_end: i64,
        repair_header: bool,
    ) -> Result<(Self, ScanOutcome)> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|error| StorageError::io("open", &log_path, error))?;
        let file_size = file
            .metadata()
            .map_err(|error| StorageError::io("stat", &log_path, error))?
            .len();
        let mut header = [0u8; FILE_HEADER_BYTES as usize];
        let header_read = file.read_exact_at(&mut header, 0);
        let mut scan = scan;
        if header_read.is_err()
            || check_file_header(&log_path, &header, FileKind::Log, base_offset).is_err()
        {
            // A crash right after creating the file can leave it without a complete
            // header; it then holds no batches either. Anything else is not ours,
            // unless the operator asked to repair it.
            if file_size > FILE_HEADER_BYTES && !repair_header {
                check_file_header(&log_path, &header, FileKind::Log, base_offset)?;
            }
            file.write_all_at(&encode_file_header(FileKind::Log, base_offset), 0)
                .map_err(|error| StorageError::io("write", &log_path, error))?;
            if file_size <= FILE_HEADER_BYTES {
                file.set_len(FILE_HEADER_BYTES)
                    .map_err(|error| StorageError::io("truncate", &log_path, error))?;
            } else {
                tracing::warn!(path = %log_path.display(), "rewrote a damaged segment header; verifying every batch behind it");
                scan = true;
            }
        }
        let size = file_size.max(FILE_HEADER_BYTES);
        let trimmed = if scan {
            None
        } else {
            open_trimmed_indexes(dir, base_offset)?
        };
        let rebuild = trimmed.is_none();
        let (offset_index, time_index) = match trimmed {
            Some(indexes) => indexes,
            None => create_indexes(dir, base_offset, config)?,
        };
        let mut segment = Self {
            base_offset,
            id: next_segment_id(),
            log_path,
            file: Some(Arc::new(file)),
            size,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: -1,
            bytes_since_index_entry: 0,
            created_ms: now_ms,
            index_interval_bytes: config.index_interval_bytes,
            index_damaged: AtomicBool::new(false),
        };
        if !rebuild && segment.walk_tail()? {
            return Ok((segment, ScanOutcome::default()));
        }
        let outcome = segment.rebuild(dir, config, durable_end)?;
        Ok((segment, outcome))
    }

    /// Finds the end of the segment from the last index entry, checking batch framing
    /// (not CRCs). False when the bytes do not line up, so that the caller rebuilds.
    fn walk_tail(&mut self) -> Result<bool> {
        let (mut offset, mut position) = match self.offset_index.last() {
            Some((offset, position)) => (offset, position as u64),
            None => (self.base_offset, FILE_HEADER_BYTES),
        };
        if position > self.size {
            return Ok(false);
        }
        self.max_timestamp = self
            .time_index
            .last()
            .map_or(-1, |(timestamp, _)| timestamp);
        let mut header = [0u8; BATCH_HEADER_BYTES];
        while position < self.size {
            if self.size - position < BATCH_HEADER_BYTES as u64 {
                return Ok(false);
            }
            self.read_at(&mut header, position)?;
            let info = BatchInfo::from_header(&header);
            if info.base_offset != offset
                || position + info.size > self.size
                || header[16] != MAGIC as u8
            {
                return Ok(false);
            }
            self.max_timestamp = self.max_timestamp.max(info.max_timestamp);
            offset = info.last_offset + 1;
            position += info.size;
        }
        self.next_offset = offset;
        self.bytes_since_index_entry = position
            - self
                .offset_index
                .last()
                .map_or(FILE_HEADER_BYTES, |(_, p)| p as u64);
        Ok(true)
    }

    /// Reads every batch, verifies it, rebuilds both indexes and cuts off whatever
    /// follows the last valid batch, unless that starts below `durable_end`.
    fn rebuild(&mut self, dir: &Path, config: &LogConfig, durable_end: i64) -> Result<ScanOutcome> {
        (self.offset_index, self.time_index) = create_indexes(dir, self.base_offset, config)?;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.bytes_since_index_entry = 0;
        let file_size = self.size;
        let file = self.handle()?;
        let mut reader = BufReader::with_capacity(1 << 20, file.as_ref());
        reader
            .seek(SeekFrom::Start(FILE_HEADER_BYTES))
            .map_err(|error| StorageError::io("seek", &self.log_path, error))?;
        let mut position = FILE_HEADER_BYTES;
        let mut batch = Vec::new();
        while let Some(info) = read_valid_batch(
            &mut reader,
            &mut batch,
            file_size - position,
            self.next_offset,
        ) {
            self.index_batch(&info, position);
            position += info.size;
        }
        self.size = position;
        let truncated_bytes = file_size - position;
        if truncated_bytes > 0 && self.next_offset < durable_end {
            return Err(StorageError::NeedsRecovery {
                path: self.log_path.clone(),
                reason: format!(
                    "damaged batch at byte {position} (offset {}); the {truncated_bytes} bytes \
                     from there on lie below the recovery point {durable_end}",
                    self.next_offset
                ),
            });
        }
        if truncated_bytes > 0 {
            file.set_len(position)
                .map_err(|error| StorageError::io("truncate", &self.log_path, error))?;
            file.sync_all()
                .map_err(|error| StorageError::io("fsync", &self.log_path, error))?;
        }
        Ok(ScanOutcome {
            rebuilt: true,
            truncated_bytes,
        })
    }

    fn index_batch(&mut self, info: &BatchInfo, position: u64) {
        let entry_due = self.bytes_since_index_entry >= self.index_interval_bytes
            || self.offset_index.is_empty();
        if entry_due && !self.offset_index.is_full() && !self.time_index.is_full() {
            self.offset_index.push(info.base_offset, position as i64);
            let running_max = self.max_timestamp.max(info.max_timestamp);
            if self
                .time_index
                .last()
                .is_none_or(|(timestamp, _)| timestamp < running_max)
            {
                self.time_index.push(running_max, info.base_offset);
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += info.size;
        self.max_timestamp = self.max_timestamp.max(info.max_timestamp);
        self.next_offset = info.last_offset + 1;
    }

    /// Appends batches with one positional vectored write: `slices` hold them back to
    /// back (each batch as its stamped header and the rest of the producer's bytes),
    /// described by `infos`. On error the segment's visible size is unchanged; the
    /// caller takes the log offline.
    pub fn append(&mut self, slices: &mut [IoSlice<'_>], infos: &[BatchInfo]) -> Result<()> {
        let total: u64 = infos.iter().map(|info| info.size).sum();
        debug_assert_eq!(
            total,
            slices.iter().map(|slice| slice.len() as u64).sum::<u64>()
        );
        let file = self.handle()?;
        let mut slices = &mut slices[..];
        let mut written = 0u64;
        while written < total {
            let count = rustix::io::pwritev(file.as_ref(), slices, self.size + written)
                .map_err(|error| StorageError::io("write", &self.log_path, error.into()))?;
            if count == 0 {
                let error = std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the file accepted no bytes",
                );
                return Err(StorageError::io("write", &self.log_path, error));
            }
            written += count as u64;
            IoSlice::advance_slices(&mut slices, count);
        }
        let mut position = self.size;
        for info in infos {
            assert_eq!(
                info.base_offset, self.next_offset,
                "offsets must be contiguous"
            );
            self.index_batch(info, position);
            position += info.size;
        }
        self.size = position;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    pub fn index_is_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    /// The `.log` file: the segment's own while it is active, else from the set of
    /// open sealed-segment files (opening it again if the set closed it).
    pub fn file(&self) -> Result<Arc<File>> {
        self.handle()
    }

    fn handle(&self) -> Result<Arc<File>> {
        match &self.file {
            Some(file) => Ok(file.clone()),
            None => open_segment_files().get(self.id, &self.log_path),
        }
    }

    /// Lets go of the segment's own descriptor once it is sealed; reads go through
    /// the bounded set of open files from then on.
    pub fn release_file(&mut self) {
        self.file = None;
    }

    fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.handle()?
            .read_exact_at(buf, position)
            .map_err(|error| StorageError::io("read", &self.log_path, error))
    }

    /// The position of the batch that holds `offset` (or the first batch after it),
    /// or `None` when the segment ends before it.
    ///
    /// The index is a cache: the batch an entry points at must start at the entry's
    /// offset. An entry that does not (a damaged index file) is passed over for the
    /// one before it, down to the start of the segment, so a damaged index costs a
    /// longer walk, never wrong records.
    pub fn position_of(&self, offset: i64) -> Result<Option<(u64, BatchInfo)>> {
        let (mut start, mut start_offset) = (FILE_HEADER_BYTES, self.base_offset);
        let mut entry = self.offset_index.floor_index(offset);
        while let Some(index) = entry {
            let (key, position) = self.offset_index.entry(index);
            if self.batch_starts_at(position, key)? {
                (start, start_offset) = (position as u64, key);
                break;
            }
            if !self.index_damaged.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %self.offset_index.path().display(), key, position, "index entry does not point at the batch it names; the index is rebuilt at the next start");
            }
            entry = index.checked_sub(1);
        }
        self.first_batch_from(start, start_offset, |info| info.last_offset >= offset)
    }

    /// Whether a batch whose base offset is `base_offset` starts at byte `position`.
    fn batch_starts_at(&self, position: i64, base_offset: i64) -> Result<bool> {
        let Ok(position) = u64::try_from(position) else {
            return Ok(false);
        };
        if position < FILE_HEADER_BYTES || position + BATCH_HEADER_BYTES as u64 > self.size {
            return Ok(false);
        }
        let mut header = [0u8; BATCH_HEADER_BYTES];
        self.read_at(&mut header, position)?;
        let info = BatchInfo::from_header(&header);
        Ok(info.base_offset == base_offset
            && header[16] == MAGIC as u8
            && position + info.size <= self.size)
    }

    /// Removes the offset index file when a lookup found it wrong, so that the next
    /// start rebuilds it from the log (the map stays valid until the segment drops).
    pub fn discard_damaged_index(&self) -> Result<()> {
        if !self.index_damaged() {
            return Ok(());
        }
        let path = self.offset_index.path();
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StorageError::io("delete", path, error)),
        }
    }

    /// Whether a lookup found the offset index wrong; the index file is then removed
    /// when the segment is closed, so that the next start rebuilds it from the log.
    pub fn index_damaged(&self) -> bool {
        self.index_damaged.load(Ordering::Relaxed)
    }

    /// The time retention measures the segment's age from: its largest record
    /// timestamp, unless that is negative (no usable timestamp) or more than
    /// [`FUTURE_TIMESTAMP_TOLERANCE_MS`] ahead of `now_ms` (a clock or producer gone
    /// wrong); then the file's last modification, which for a sealed segment is when
    /// its last batch was written.
    pub fn retention_timestamp(&self, now_ms: i64) -> i64 {
        let plausible = 0..=now_ms.saturating_add(FUTURE_TIMESTAMP_TOLERANCE_MS);
        if plausible.contains(&self.max_timestamp) {
            return self.max_timestamp;
        }
        let modified = fs::metadata(&self.log_path)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok());
        match modified {
            Some(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            // Unknowable: keep the segment rather than guess.
            None => i64::MAX,
        }
    }

    /// The first batch whose largest timestamp is at least `timestamp`.
    pub fn position_of_timestamp(&self, timestamp: i64) -> Result<Option<(u64, BatchInfo)>> {
        let start_offset = self
            .time_index
            .below(timestamp)
            .map_or(self.base_offset, |(_, offset)| offset);
        let Some((start, first)) = self.position_of(start_offset)? else {
            return Ok(None);
        };
        self.first_batch_from(start, first.base_offset, |info| {
            info.max_timestamp >= timestamp
        })
    }

    /// Walks batch headers from `position` to the first batch `wanted` accepts.
    fn first_batch_from(
        &self,
        mut position: u64,
        mut expected_base: i64,
        wanted: impl Fn(&BatchInfo) -> bool,
    ) -> Result<Option<(u64, BatchInfo)>> {
        let mut header = [0u8; BATCH_HEADER_BYTES];
        while position < self.size {
            self.read_at(&mut header, position)?;
            let info = BatchInfo::from_header(&header);
            check_framing(
                &self.log_path,
                &header,
                position,
                self.size,
                Some(expected_base),
            )?;
            if wanted(&info) {
                return Ok(Some((position, info)));
            }
            position += info.size;
            expected_base = info.last_offset + 1;
        }
        Ok(None)
    }

    /// A handle for reading without holding the log's lock.
    pub fn reader(&self) -> Result<SegmentReader> {
        Ok(SegmentReader {
            file: self.handle()?,
            path: self.log_path.clone(),
            size: self.size,
        })
    }

    /// Forces the segment's data to disk.
    pub fn flush(&self) -> Result<()> {
        self.handle()?
            .sync_data()
            .map_err(|error| StorageError::io("fsync", &self.log_path, error))
    }

    /// Makes the segment immutable: data fsynced, indexes trimmed and fsynced.
    pub fn seal(&mut self) -> Result<()> {
        self.flush()?;
        self.seal_indexes()
    }

    /// Trims and fsyncs the indexes of a segment that takes no more appends. Its data
    /// is fsynced by the log's next flush, off the append path.
    pub fn seal_indexes(&mut self) -> Result<()> {
        if self.max_timestamp >= 0
            && self
                .time_index
                .last()
                .is_none_or(|(timestamp, _)| timestamp < self.max_timestamp)
            && !self.time_index.is_full()
        {
            // A last entry with the segment's largest timestamp, so that reopening
            // without a scan knows it (retention by age needs it).
            let last_base = self
                .position_of(self.next_offset - 1)?
                .map_or(self.base_offset, |(_, info)| info.base_offset);
            self.time_index.push(self.max_timestamp, last_base);
        }
        self.offset_index.seal()?;
        self.time_index.seal()
    }

    /// Makes a sealed segment active again (after truncation), pre-allocating its indexes.
    pub fn unseal(&mut self, config: &LogConfig) -> Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.log_path)
                .map_err(|error| StorageError::io("open", &self.log_path, error))?;
            open_segment_files().remove(self.id);
            self.file = Some(Arc::new(file));
        }
        self.offset_index.resize(config.index_bytes_max)?;
        self.time_index.resize(config.index_bytes_max)
    }

    /// Drops every batch at or after the batch holding `offset`; returns the new end.
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        let Some((position, info)) = self.position_of(offset)? else {
            return Ok(self.next_offset);
        };
        let file = self.handle()?;
        file.set_len(position)
            .map_err(|error| StorageError::io("truncate", &self.log_path, error))?;
        file.sync_all()
            .map_err(|error| StorageError::io("fsync", &self.log_path, error))?;
        self.size = position;
        self.offset_index.truncate_from(info.base_offset);
        self.time_index.truncate_values_from(info.base_offset);
        self.next_offset = info.base_offset;
        // Recompute the largest timestamp and the index spacing from what is left.
        let walked = self.walk_tail()?;
        assert!(
            walked,
            "segment {} does not line up after truncation",
            self.log_path.display()
        );
        Ok(self.next_offset)
    }

    /// Deletes the segment's files.
    pub fn delete(self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.offset_index.path().to_owned(),
            self.time_index.path().to_owned(),
        ];
        drop(self);
        for path in paths {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(StorageError::io("delete", path, error)),
            }
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        open_segment_files().remove(self.id);
    }
}

fn create_indexes(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<(Index, Index)> {
    let offset = Index::create(
        &dir.join(file_name(base_offset, "index")),
        FileKind::OffsetIndex,
        base_offset,
        config.index_bytes_max,
    )?;
    let time = Index::create(
        &dir.join(file_name(base_offset, "timeindex")),
        FileKind::TimeIndex,
        base_offset,
        config.index_bytes_max,
    )?;
    Ok((offset, time))
}

/// The trimmed indexes of a sealed or cleanly closed segment; `None` when either must
/// be rebuilt.
fn open_trimmed_indexes(dir: &Path, base_offset: i64) -> Result<Option<(Index, Index)>> {
    let offset = Index::open_trimmed(
        &dir.join(file_name(base_offset, "index")),
        FileKind::OffsetIndex,
        base_offset,
    )?;
    let time = Index::open_trimmed(
        &dir.join(file_name(base_offset, "timeindex")),
        FileKind::TimeIndex,
        base_offset,
    )?;
    Ok(offset.zip(time))
}

/// A snapshot of a segment for reads outside the log's lock. Appends only add bytes
/// after `size`, so the snapshot's bytes stay valid.
#[derive(Debug, Clone)]
pub struct SegmentReader {
    file: Arc<File>,
    path: PathBuf,
    size: u64,
}

impl SegmentReader {
    /// Reads whole batches from `position`: at least the first (even beyond
    /// `max_bytes`), then as many as fit in `max_bytes`, stopping before the first batch
    /// whose base offset is `offset_limit` or more.
    pub fn read(&self, position: u64, max_bytes: u64, offset_limit: i64) -> Result<Bytes> {
        read_batches(
            &self.file,
            &self.path,
            position,
            self.size,
            max_bytes,
            offset_limit,
        )
    }
}

fn read_batches(
    file: &File,
    path: &Path,
    position: u64,
    size: u64,
    max_bytes: u64,
    offset_limit: i64,
) -> Result<Bytes> {
    if position >= size {
        return Ok(Bytes::new());
    }
    let mut header = [0u8; BATCH_HEADER_BYTES];
    file.read_exact_at(&mut header, position)
        .map_err(|error| StorageError::io("read", path, error))?;
    let first = BatchInfo::from_header(&header);
    check_framing(path, &header, position, size, None)?;
    if first.base_offset >= offset_limit {
        return Ok(Bytes::new());
    }
    let length = max_bytes.max(first.size).min(size - position) as usize;
    let mut buf = BytesMut::zeroed(length);
    file.read_exact_at(&mut buf, position)
        .map_err(|error| StorageError::io("read", path, error))?;
    // Keep whole batches below the offset limit; each must follow the one before.
    let mut end = 0usize;
    let mut expected_base = first.base_offset;
    while end + BATCH_HEADER_BYTES <= buf.len() {
        let header = &buf[end..end + BATCH_HEADER_BYTES];
        let info = BatchInfo::from_header(header);
        check_framing(
            path,
            header,
            position + end as u64,
            size,
            Some(expected_base),
        )?;
        if info.base_offset >= offset_limit || end + info.size as usize > buf.len() {
            break;
        }
        end += info.size as usize;
        expected_base = info.last_offset + 1;
    }
    buf.truncate(end);
    Ok(buf.freeze())
}

/// Checks what the CRC does not cover in a stored batch's header: magic, a length that
/// fits the segment, offsets in order and (with `expected_base`) following the batch
/// before. Reads fail with [`StorageError::Corrupt`] rather than serve bytes that do
/// not line up.
fn check_framing(
    path: &Path,
    header: &[u8],
    position: u64,
    segment_size: u64,
    expected_base: Option<i64>,
) -> Result<()> {
    let info = BatchInfo::from_header(header);
    let reason = if header[16] != MAGIC as u8 {
        format!("batch at byte {position} has magic {}", header[16] as i8)
    } else if info.size < BATCH_HEADER_BYTES as u64 || position + info.size > segment_size {
        format!(
            "batch at byte {position} claims {} bytes; the segment holds {segment_size}",
            info.size
        )
    } else if info.last_offset < info.base_offset {
        format!("batch at byte {position} ends before it starts")
    } else if expected_base.is_some_and(|expected| expected != info.base_offset) {
        format!(
            "batch at byte {position} starts at offset {}, expected {}",
            info.base_offset,
            expected_base.unwrap_or_default()
        )
    } else {
        return Ok(());
    };
    Err(StorageError::Corrupt {
        path: path.to_owned(),
        reason,
    })
}

/// Reads the next batch for a recovery scan into `batch` and checks it completely:
/// framing, magic, CRC-32C and that its base offset is `expected_offset`. `None` at the
/// end of valid data.
fn read_valid_batch(
    reader: &mut impl Read,
    batch: &mut Vec<u8>,
    remaining: u64,
    expected_offset: i64,
) -> Option<BatchInfo> {
    if remaining < BATCH_HEADER_BYTES as u64 {
        return None;
    }
    batch.resize(BATCH_HEADER_BYTES, 0);
    reader.read_exact(batch).ok()?;
    let size = RecordBatch::size_at(batch).or_else(|error| match error {
        RecordBatchError::Truncated { needed, .. } => Ok(needed),
        other => Err(other),
    });
    let size = size.ok()? as u64;
    if size > remaining {
        return None;
    }
    batch.resize(size as usize, 0);
    reader.read_exact(&mut batch[BATCH_HEADER_BYTES..]).ok()?;
    let info = BatchInfo::from_header(batch);
    let stored_crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    let valid = batch[16] == MAGIC as u8
        && crc32c::crc32c(&batch[21..]) == stored_crc
        && info.base_offset == expected_offset
        && info.last_offset >= info.base_offset;
    valid.then_some(info)
}
