//! The partition log: an ordered set of segments with one active segment at the end.
//!
//! Appends take the log's lock, stamp offsets and the leader epoch into the batches,
//! copy them into one buffer and write it with a single positional write. Durability is
//! separate: [`PartitionLog::commit`] waits for an fsync under the `fsync` policy. One
//! fsync at a time runs per log, covering everything written before it started, so
//! concurrent producers share fsyncs (group commit). Reads snapshot a segment under the
//! lock and read the file outside it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use fjord_protocol::RecordBatch;
use fjord_protocol::batch::{set_base_offset, set_partition_leader_epoch};
use tokio::sync::watch;

use super::clock::Clock;
use super::config::{Durability, LogConfig};
use super::epochs::EpochCache;
use super::error::{Result, StorageError};
use super::file_format::{StateKind, read_state_file, sync_dir, write_state_file};
use super::recovery::{RecoveryMode, gap_batches};
use super::segment::{BatchInfo, Segment, file_name as segment_file_name};

const CHECKPOINT_FILE: &str = "checkpoint";
/// Leading bytes of a batch that an append copies to stamp: base offset, batch
/// length, partition leader epoch and magic.
const STAMPED_BYTES: usize = 17;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: u64,
}

impl AppendInfo {
    /// The append of the batches described by `infos`, from `base_offset` to
    /// `last_offset`.
    fn of(base_offset: i64, last_offset: i64, infos: &[BatchInfo]) -> Self {
        Self {
            base_offset,
            last_offset,
            max_timestamp: infos
                .iter()
                .map(|info| info.max_timestamp)
                .max()
                .unwrap_or(-1),
            bytes: infos.iter().map(|info| info.size).sum(),
        }
    }
}

/// Batches read from the log, with the log's offsets at the time of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, as stored.
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// What opening the log found; recovery figures for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    pub segments: usize,
    pub segments_scanned: usize,
    pub truncated_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    recovery_point: i64,
    high_watermark: i64,
    log_start_offset: i64,
    clean: bool,
}

impl Checkpoint {
    fn encode(&self) -> [u8; 25] {
        let mut bytes = [0u8; 25];
        bytes[0..8].copy_from_slice(&self.recovery_point.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.high_watermark.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.log_start_offset.to_be_bytes());
        bytes[24] = self.clean as u8;
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 25] = bytes.try_into().ok()?;
        let field = |start: usize| i64::from_be_bytes(bytes[start..start + 8].try_into().unwrap());
        Some(Self {
            recovery_point: field(0),
            high_watermark: field(8),
            log_start_offset: field(16),
            clean: bytes[24] == 1,
        })
    }
}

#[derive(Debug)]
struct LogState {
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    log_start_offset: i64,
    /// Every offset below it is on disk.
    recovery_point: i64,
    /// Set by a failed write or fsync: the log refuses writes from then on.
    failure: Option<String>,
    /// Set when opening could not write the checkpoint that marks the log in use (a
    /// full disk): writes are refused until a checkpoint is written, because the one
    /// on disk may still say "closed cleanly", and a crash after new appends would
    /// then go unscanned. Reads are served.
    read_only: Option<String>,
    closed: bool,
    epochs: EpochCache,
    batch_infos: Vec<BatchInfo>,
    /// Segments sealed since the last flush, whose data the next flush fsyncs; and
    /// whether the directory (new segment files) needs an fsync too.
    unsynced_segments: Vec<Arc<File>>,
    directory_unsynced: bool,
    unflushed_bytes: u64,
    last_flush_ms: i64,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }
}

/// One partition's log on disk.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: RwLock<LogConfig>,
    clock: Arc<dyn Clock>,
    state: Mutex<LogState>,
    high_watermark: AtomicI64,
    /// The offset below which everything is durable; waiters of `commit` watch it.
    durable: watch::Sender<i64>,
    /// Consumers long-polling for new data watch the high watermark.
    high_watermark_changes: watch::Sender<i64>,
    flush_running: AtomicBool,
    /// Flushes (fsync passes) run since the log was opened, for tests and statistics.
    flushes: AtomicU64,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it after an unclean shutdown.
    /// Missing or damaged data below the recovery point makes it fail with
    /// [`StorageError::NeedsRecovery`] and neither deletes nor cuts any data.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, RecoveryReport)> {
        Self::open_with(dir, config, clock, RecoveryMode::Refuse)
    }

    /// Opens the log like [`PartitionLog::open`], doing what `mode` says with missing
    /// or damaged data below the recovery point.
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        mode: RecoveryMode,
    ) -> Result<(Arc<Self>, RecoveryReport)> {
        fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        let checkpoint = match read_state_file(dir, CHECKPOINT_FILE, StateKind::Checkpoint) {
            Ok(payload) => payload.as_deref().and_then(Checkpoint::decode),
            Err(error) => {
                tracing::warn!(%error, "ignoring unreadable checkpoint; scanning the whole log");
                None
            }
        };
        let now_ms = clock.now_ms();
        let mut report = RecoveryReport {
            clean_shutdown: checkpoint.is_some_and(|c| c.clean),
            ..Default::default()
        };
        let bases = list_segments(dir)?;
        // Offsets below the recovery point were fsynced before the checkpoint said so:
        // losing them is not a torn write, and only an operator may give them up.
        // Without a checkpoint, every segment but the last is presumed durable.
        let durable_end = match checkpoint {
            Some(checkpoint) => checkpoint.recovery_point,
            None => bases.last().copied().unwrap_or(i64::MIN),
        };
        // Scan from the segment holding the recovery point (everything after a clean
        // shutdown is trusted; without a checkpoint everything is scanned).
        let scan_from = match checkpoint {
            Some(checkpoint) if checkpoint.clean => i64::MAX,
            Some(checkpoint) => bases
                .iter()
                .rev()
                .find(|base| **base <= checkpoint.recovery_point)
                .copied()
                .unwrap_or(i64::MIN),
            None => i64::MIN,
        };
        let mut segments = BTreeMap::new();
        let mut expected_base: Option<i64> = None;
        let mut discard_rest = false;
        let mut rebuilt = Vec::new();
        // The first segment must hold the log start the checkpoint knows.
        if let Some(checkpoint) = checkpoint {
            let missing_to = bases.first().copied().unwrap_or(i64::MAX).min(durable_end);
            if checkpoint.log_start_offset < missing_to {
                let reason = format!(
                    "offsets {}..{missing_to} at the start of the log are missing (no segment \
                     file holds them; they lie below the recovery point {durable_end})",
                    checkpoint.log_start_offset
                );
                match mode {
                    RecoveryMode::Refuse => {
                        return Err(StorageError::NeedsRecovery {
                            path: dir.join(segment_file_name(checkpoint.log_start_offset, "log")),
                            reason,
                        });
                    }
                    RecoveryMode::Truncate => discard_rest = true,
                    // The log start moves up to the first segment below.
                    RecoveryMode::SkipGap => {}
                }
                tracing::warn!(dir = %dir.display(), ?mode, "{reason}");
            }
        }
        for base in bases {
            if discard_rest {
                tracing::warn!(dir = %dir.display(), base, "deleting segment after the point the log was cut at");
                delete_segment_files(dir, base)?;
                continue;
            }
            if let Some(expected) = expected_base.filter(|expected| *expected != base) {
                let below_recovery_point = expected < durable_end;
                if below_recovery_point && expected < base && mode == RecoveryMode::SkipGap {
                    fill_gap(dir, &config, now_ms, &mut segments, expected, base)?;
                    rebuilt.push(expected);
                } else if below_recovery_point && mode == RecoveryMode::Refuse {
                    let (path, reason) = if expected < base {
                        (
                            dir.join(segment_file_name(expected, "log")),
                            format!(
                                "segment file is missing: offsets {expected}..{base} lie below \
                                 the recovery point {durable_end}"
                            ),
                        )
                    } else {
                        (
                            dir.join(segment_file_name(base, "log")),
                            format!(
                                "segment overlaps the one before it, which ends at offset {expected}"
                            ),
                        )
                    };
                    return Err(StorageError::NeedsRecovery { path, reason });
                } else {
                    tracing::warn!(dir = %dir.display(), base, expected, "deleting segment after a gap or a damaged segment");
                    discard_rest = true;
                    delete_segment_files(dir, base)?;
                    continue;
                }
            }
            let scan = base >= scan_from;
            let durable_limit = match mode {
                RecoveryMode::Refuse => durable_end,
                RecoveryMode::Truncate | RecoveryMode::SkipGap => i64::MIN,
            };
            let opened = Segment::open(
                dir,
                base,
                &config,
                now_ms,
                scan,
                durable_limit,
                mode == RecoveryMode::SkipGap,
            );
            let (segment, outcome) = match opened {
                Ok(opened) => opened,
                Err(error @ StorageError::Corrupt { .. }) if mode == RecoveryMode::Truncate => {
                    tracing::warn!(%error, "truncating the log at a segment whose header is damaged");
                    discard_rest = true;
                    delete_segment_files(dir, base)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            report.segments_scanned += outcome.rebuilt as usize;
            if outcome.truncated_bytes > 0 {
                tracing::warn!(dir = %dir.display(), base, bytes = outcome.truncated_bytes, "cut a torn or corrupt tail");
                report.truncated_bytes += outcome.truncated_bytes;
                // Under skip_gap, segments after damage below the recovery point stay.
                discard_rest =
                    mode != RecoveryMode::SkipGap || segment.next_offset() >= durable_end;
            }
            expected_base = Some(segment.next_offset());
            if outcome.rebuilt {
                rebuilt.push(base);
            }
            // The one before is sealed: let go of its file now, so that opening a log
            // of many segments holds no more than one or two at a time.
            if let Some((_, previous)) = segments.iter_mut().next_back() {
                previous.release_file();
            }
            segments.insert(base, segment);
        }
        // The end must reach the recovery point: later segment files may be missing.
        let end = segments.values().next_back().map(Segment::next_offset);
        if let Some(end) = end.filter(|end| *end < durable_end) {
            match mode {
                RecoveryMode::Refuse => {
                    return Err(StorageError::NeedsRecovery {
                        path: dir.join(segment_file_name(end, "log")),
                        reason: format!(
                            "the log ends at offset {end} but offsets up to the recovery point \
                             {durable_end} were durable: the segment files from offset {end} on \
                             are missing"
                        ),
                    });
                }
                RecoveryMode::Truncate => {}
                RecoveryMode::SkipGap => {
                    fill_gap(dir, &config, now_ms, &mut segments, end, durable_end)?;
                    rebuilt.push(end);
                }
            }
        }
        if segments.is_empty() {
            let log_start = checkpoint.map_or(0, |c| c.log_start_offset.max(0));
            // A log whose every segment is lost keeps its end under skip_gap.
            let base = match mode {
                RecoveryMode::SkipGap => log_start.max(durable_end),
                RecoveryMode::Refuse | RecoveryMode::Truncate => log_start,
            };
            segments.insert(base, Segment::create(dir, base, &config, now_ms)?);
            sync_dir(dir)?;
        }
        // What a scan verified becomes durable now, so that the recovery point may
        // cover it: damage there later is lost data, not a torn write.
        for base in &rebuilt {
            if let Some(segment) = segments.get(base) {
                segment.flush()?;
            }
        }
        report.segments = segments.len();
        // Rebuilt indexes are pre-allocated; trim those of sealed segments, or every
        // later open would find them untrimmed and rebuild them again.
        let last_base = *segments.keys().next_back().unwrap();
        for (base, segment) in segments.iter_mut() {
            if *base != last_base && rebuilt.contains(base) {
                segment.seal_indexes()?;
            }
        }
        // Sealed segments keep no descriptor: reads open them through the bounded set
        // of open files, so the number of segments does not count against the limit.
        for (base, segment) in segments.iter_mut() {
            if *base != last_base {
                segment.release_file();
            }
        }
        let first_base = *segments.keys().next().unwrap();
        let active = segments.values_mut().next_back().unwrap();
        active.unseal(&config)?;
        // After a clean shutdown everything is on disk already; after a crash the
        // active segment was scanned, and rebuilt segments were fsynced above.
        if !report.clean_shutdown && !rebuilt.contains(&last_base) {
            active.flush()?;
        }
        let next_offset = active.next_offset();
        let log_start_offset = checkpoint.map_or(first_base, |c| {
            c.log_start_offset.clamp(first_base, next_offset)
        });
        let high_watermark = checkpoint.map_or(log_start_offset, |c| {
            c.high_watermark.clamp(log_start_offset, next_offset)
        });
        let mut epochs = EpochCache::load(dir)?;
        epochs.truncate_from(dir, next_offset)?;
        let state = LogState {
            segments,
            next_offset,
            log_start_offset,
            recovery_point: next_offset,
            failure: None,
            read_only: None,
            closed: false,
            epochs,
            batch_infos: Vec::new(),
            unsynced_segments: Vec::new(),
            directory_unsynced: false,
            unflushed_bytes: 0,
            last_flush_ms: now_ms,
        };
        let log = Arc::new(Self {
            dir: dir.to_owned(),
            config: RwLock::new(config),
            clock,
            state: Mutex::new(state),
            high_watermark: AtomicI64::new(high_watermark),
            durable: watch::Sender::new(next_offset),
            high_watermark_changes: watch::Sender::new(high_watermark),
            flush_running: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
        });
        // From here on a crash is an unclean shutdown. On a full disk the log still
        // opens, read-only until the checkpoint pass manages to write this.
        let marked = log.checkpoint_with(&log.lock(), false);
        match marked {
            Ok(()) => {}
            Err(error) if error.is_no_space() => {
                tracing::warn!(dir = %dir.display(), %error, "the disk is full: the log serves reads and refuses writes until its checkpoint can be written");
                log.lock().read_only = Some(format!(
                    "the disk is full ({error}); writes resume once there is space for the checkpoint"
                ));
            }
            Err(error) => return Err(error),
        }
        Ok((log, report))
    }

    /// Creates the log in `dir`, which must hold no segment, empty and starting at
    /// `log_start_offset`: for a log whose directory was lost, so that offsets already
    /// handed out are never reused.
    pub fn create_empty_at(
        dir: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        log_start_offset: i64,
    ) -> Result<Arc<Self>> {
        fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        if !list_segments(dir)?.is_empty() {
            return Err(StorageError::Corrupt {
                path: dir.to_owned(),
                reason: "holds segments; an empty log cannot be created over them".into(),
            });
        }
        let checkpoint = Checkpoint {
            recovery_point: log_start_offset,
            high_watermark: log_start_offset,
            log_start_offset,
            clean: false,
        };
        write_state_file(
            dir,
            CHECKPOINT_FILE,
            StateKind::Checkpoint,
            &checkpoint.encode(),
        )?;
        Ok(Self::open(dir, config, clock)?.0)
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().expect("log lock poisoned")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config.read().expect("config lock poisoned").clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().expect("config lock poisoned") = config;
    }

    /// Why the log refuses writes (a failed write or fsync), if it does.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    fn writable(&self, state: &LogState) -> Result<()> {
        if state.closed {
            return Err(StorageError::Closed(self.dir.clone()));
        }
        if let Some(reason) = &state.failure {
            return Err(StorageError::Offline {
                path: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        if let Some(reason) = &state.read_only {
            return Err(StorageError::ReadOnly {
                path: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Takes the log offline after a failed write or fsync and returns the error.
    fn fail(&self, state: &mut LogState, error: StorageError) -> StorageError {
        tracing::error!(dir = %self.dir.display(), %error, "log failed; it is read-only until restart");
        state.failure.get_or_insert_with(|| error.to_string());
        error
    }

    /// Appends validated batches as leader in `leader_epoch`: assigns their offsets
    /// and writes them. Only the first 17 bytes of each batch (base offset, length,
    /// epoch, magic) are copied, to stamp them; the rest goes from the producer's
    /// buffer to the file in the same vectored write. The data is durable only once
    /// [`PartitionLog::commit`] returns.
    pub fn append(&self, batches: &[RecordBatch], leader_epoch: i32) -> Result<AppendInfo> {
        assert!(!batches.is_empty(), "append of no batches");
        let config = self.config();
        let mut guard = self.lock();
        let state = &mut *guard;
        self.writable(state)?;
        let mut infos = std::mem::take(&mut state.batch_infos);
        infos.clear();
        let mut headers = Vec::with_capacity(batches.len());
        let base_offset = state.next_offset;
        let mut next_offset = base_offset;
        for batch in batches {
            let mut header = [0u8; STAMPED_BYTES];
            header.copy_from_slice(&batch.as_bytes()[..STAMPED_BYTES]);
            set_base_offset(&mut header, next_offset);
            set_partition_leader_epoch(&mut header, leader_epoch);
            let info = BatchInfo {
                base_offset: next_offset,
                last_offset: next_offset + i64::from(batch.last_offset_delta()),
                max_timestamp: batch.max_timestamp(),
                leader_epoch,
                size: batch.size_bytes() as u64,
            };
            next_offset = info.last_offset + 1;
            infos.push(info);
            headers.push(header);
        }
        let mut slices: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(batches)
            .flat_map(|(header, batch)| {
                [
                    IoSlice::new(header),
                    IoSlice::new(&batch.as_bytes()[STAMPED_BYTES..]),
                ]
            })
            .collect();
        let result = self.write(state, &config, &mut slices, &infos, leader_epoch);
        let info = AppendInfo::of(base_offset, next_offset - 1, &infos);
        state.batch_infos = infos;
        result.map(|()| info)
    }

    /// Appends batches copied from the leader as they are: their offsets and leader
    /// epochs were given by the leader. The first must start at the log end and each
    /// must follow the one before, or nothing is written
    /// ([`StorageError::NonContiguous`]). Durable once flushed, as any append.
    pub fn append_replicated(&self, batches: &[RecordBatch]) -> Result<AppendInfo> {
        assert!(!batches.is_empty(), "append of no batches");
        let config = self.config();
        let mut guard = self.lock();
        let state = &mut *guard;
        self.writable(state)?;
        let base_offset = state.next_offset;
        let mut expected = base_offset;
        let mut infos = Vec::with_capacity(batches.len());
        for batch in batches {
            if batch.base_offset() != expected || batch.last_offset() < batch.base_offset() {
                return Err(StorageError::NonContiguous {
                    path: self.dir.clone(),
                    expected,
                    found: batch.base_offset(),
                });
            }
            let info = BatchInfo {
                base_offset: batch.base_offset(),
                last_offset: batch.last_offset(),
                max_timestamp: batch.max_timestamp(),
                leader_epoch: batch.partition_leader_epoch(),
                size: batch.size_bytes() as u64,
            };
            expected = info.last_offset + 1;
            infos.push(info);
        }
        // One write per run of batches of one leader epoch, so that the epoch cache
        // records where each epoch starts.
        let mut start = 0;
        while start < batches.len() {
            let epoch = infos[start].leader_epoch;
            let end = start
                + infos[start..]
                    .iter()
                    .take_while(|info| info.leader_epoch == epoch)
                    .count();
            let mut slices: Vec<IoSlice<'_>> = batches[start..end]
                .iter()
                .map(|batch| IoSlice::new(batch.as_bytes()))
                .collect();
            self.write(state, &config, &mut slices, &infos[start..end], epoch)?;
            start = end;
        }
        Ok(AppendInfo::of(base_offset, expected - 1, &infos))
    }

    fn write(
        &self,
        state: &mut LogState,
        config: &LogConfig,
        slices: &mut [IoSlice<'_>],
        infos: &[BatchInfo],
        epoch: i32,
    ) -> Result<()> {
        let bytes: u64 = infos.iter().map(|info| info.size).sum();
        let now_ms = self.clock.now_ms();
        let active = state.active();
        let too_big = active.size() + bytes > config.segment_bytes;
        let too_old = now_ms - active.created_ms >= config.segment_ms as i64;
        if !active.is_empty() && (too_big || too_old || active.index_is_full()) {
            self.roll(state, config, now_ms)?;
        }
        let base_offset = infos[0].base_offset;
        if let Err(error) = state.epochs.assign(&self.dir, epoch, base_offset) {
            return Err(self.fail(state, error));
        }
        if let Err(error) = state.active_mut().append(slices, infos) {
            return Err(self.fail(state, error));
        }
        state.next_offset = infos.last().unwrap().last_offset + 1;
        state.unflushed_bytes += bytes;
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end. The sealed
    /// segment's data and the new file's directory entry are fsynced by the next flush,
    /// not here, so that appends never wait for a whole segment's fsync.
    fn roll(&self, state: &mut LogState, config: &LogConfig, now_ms: i64) -> Result<()> {
        let next_offset = state.next_offset;
        let sealed = state
            .active_mut()
            .seal_indexes()
            .and_then(|()| state.active().file())
            .and_then(|old| {
                Segment::create(&self.dir, next_offset, config, now_ms).map(|new| (old, new))
            });
        match sealed {
            Ok((old, segment)) => {
                // The next flush fsyncs the old file through this reference; reads
                // take it from the bounded set of open files.
                state.unsynced_segments.push(old);
                state.active_mut().release_file();
                state.directory_unsynced = true;
                state.segments.insert(next_offset, segment);
                metrics_roll();
                Ok(())
            }
            Err(error) => Err(self.fail(state, error)),
        }
    }

    /// Waits until the append is as durable as the log's policy asks: fsynced under
    /// `fsync`; under `interval`, it only starts a background fsync when enough bytes
    /// are waiting.
    pub async fn commit(self: &Arc<Self>, info: &AppendInfo) -> Result<()> {
        match self.config().durability {
            Durability::Fsync => self.wait_durable(info.last_offset + 1).await,
            Durability::Interval { interval_bytes, .. } => {
                if self.lock().unflushed_bytes >= interval_bytes {
                    self.start_flush();
                }
                Ok(())
            }
        }
    }

    /// The end of what counts as durable under the log's policy: what is fsynced under
    /// `fsync`, everything written under `interval`.
    pub fn durable_end(&self) -> i64 {
        match self.config().durability {
            Durability::Fsync => *self.durable.borrow(),
            Durability::Interval { .. } => self.log_end_offset(),
        }
    }

    /// Waits until every offset below `offset` is on disk, starting fsyncs as needed.
    pub async fn wait_durable(self: &Arc<Self>, offset: i64) -> Result<()> {
        let mut durable = self.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= offset {
                return Ok(());
            }
            self.writable(&self.lock())?;
            self.start_flush();
            // The flush task always publishes when it ends, so this cannot miss it.
            durable.changed().await.expect("the log owns the sender");
        }
    }

    /// Starts a background fsync unless one is running.
    fn start_flush(self: &Arc<Self>) {
        if self.flush_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let log = self.clone();
        // Straight onto a blocking thread: the fsync and the wake-up of the waiters
        // happen there, with no async task in between.
        tokio::task::spawn_blocking(move || {
            if let Err(error) = log.flush() {
                tracing::debug!(%error, "flush failed");
            }
            log.flush_running.store(false, Ordering::Release);
            // Waiters re-check after every flush, successful or not.
            log.durable.send_modify(|_| {});
        });
    }

    /// fsyncs everything written so far (blocking): segments sealed since the last
    /// flush, the directory if segments were created, then the active segment. A
    /// failure takes the log offline.
    pub fn flush(&self) -> Result<()> {
        let (sealed, directory, active, end, unflushed) = {
            let mut state = self.lock();
            self.writable(&state)?;
            (
                std::mem::take(&mut state.unsynced_segments),
                std::mem::take(&mut state.directory_unsynced),
                state.active().file()?,
                state.next_offset,
                state.unflushed_bytes,
            )
        };
        let started = std::time::Instant::now();
        let mut result = Ok(());
        for file in sealed.iter().chain([&active]) {
            result = result.and_then(|()| {
                file.sync_data()
                    .map_err(|error| StorageError::io("fsync", &self.dir, error))
            });
        }
        if directory {
            result = result.and_then(|()| sync_dir(&self.dir));
        }
        metrics::histogram!("fjord_storage_fsync_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("fjord_storage_fsyncs_total").increment(1);
        self.flushes.fetch_add(1, Ordering::AcqRel);
        let mut state = self.lock();
        if let Err(error) = result {
            return Err(self.fail(&mut state, error));
        }
        state.recovery_point = state.recovery_point.max(end);
        state.unflushed_bytes = state.unflushed_bytes.saturating_sub(unflushed);
        state.last_flush_ms = self.clock.now_ms();
        drop(state);
        self.durable.send_if_modified(|durable| {
            let advanced = end > *durable;
            *durable = (*durable).max(end);
            advanced
        });
        Ok(())
    }

    /// How many flushes (fsync passes over the unsynced files) this log has run since
    /// it was opened; concurrent `commit`s that share one count it once.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// Flushes when the `interval` policy's time has come; for the log manager's timer.
    pub fn flush_if_due(&self) -> Result<()> {
        let Some(interval) = self.config().flush_interval() else {
            return Ok(());
        };
        let due = {
            let state = self.lock();
            state.unflushed_bytes > 0
                && self.clock.now_ms() - state.last_flush_ms >= interval.as_millis() as i64
        };
        if due { self.flush() } else { Ok(()) }
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (at least one batch), and
    /// only batches that start below `offset_limit` (the high watermark for consumers,
    /// the log end for followers).
    pub fn read(&self, offset: i64, max_bytes: u64, offset_limit: i64) -> Result<ReadResult> {
        let (reader, position, result) = {
            let state = self.lock();
            let high_watermark = self.high_watermark();
            let mut result = ReadResult {
                records: Bytes::new(),
                log_start_offset: state.log_start_offset,
                log_end_offset: state.next_offset,
                high_watermark,
            };
            if offset < state.log_start_offset || offset > state.next_offset {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.next_offset,
                });
            }
            if offset >= offset_limit.min(state.next_offset) {
                return Ok(result);
            }
            let mut found = None;
            for segment in state
                .segments
                .range(..=offset)
                .next_back()
                .into_iter()
                .chain(state.segments.range(offset + 1..))
            {
                if let Some((position, _)) = segment.1.position_of(offset)? {
                    found = Some((segment.1.reader()?, position));
                    break;
                }
            }
            let Some((reader, position)) = found else {
                result.records = Bytes::new();
                return Ok(result);
            };
            (reader, position, result)
        };
        Ok(ReadResult {
            records: reader.read(position, max_bytes, offset_limit)?,
            ..result
        })
    }

    /// The first offset whose record timestamp is at or after `timestamp`, with that
    /// timestamp; `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let (reader, position, log_start_offset) = {
            let state = self.lock();
            let mut found = None;
            for segment in state
                .segments
                .values()
                .filter(|segment| segment.max_timestamp() >= timestamp)
            {
                if let Some((position, _)) = segment.position_of_timestamp(timestamp)? {
                    found = Some((segment.reader()?, position));
                    break;
                }
            }
            let Some((reader, position)) = found else {
                return Ok(None);
            };
            (reader, position, state.log_start_offset)
        };
        let bytes = reader.read(position, 0, i64::MAX)?;
        let batch = RecordBatch::new(bytes).map_err(|error| StorageError::Corrupt {
            path: self.dir.clone(),
            reason: error.to_string(),
        })?;
        for record in batch.records() {
            let record = record.map_err(|error| StorageError::Corrupt {
                path: self.dir.clone(),
                reason: error.to_string(),
            })?;
            if record.timestamp_ms >= timestamp && record.offset >= log_start_offset {
                return Ok(Some((record.offset, record.timestamp_ms)));
            }
        }
        Ok(None)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// The offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().next_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Sets the high watermark (clamped to the log's range) and wakes long-polling
    /// readers. Persisted by the next checkpoint.
    pub fn set_high_watermark(&self, offset: i64) {
        let (start, end) = {
            let state = self.lock();
            (state.log_start_offset, state.next_offset)
        };
        let offset = offset.clamp(start, end);
        self.high_watermark.store(offset, Ordering::Release);
        self.high_watermark_changes.send_if_modified(|current| {
            let changed = *current != offset;
            *current = offset;
            changed
        });
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark_changes.subscribe()
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The latest leader epoch written to the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest_epoch()
    }

    /// Where `epoch` ends in this log (for follower truncation).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.next_offset)
    }

    /// Removes every batch at or after the batch that holds `offset`; returns the new
    /// log end. A follower uses it to drop what the leader does not have.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let config = self.config();
        let mut guard = self.lock();
        let state = &mut *guard;
        self.writable(state)?;
        if offset >= state.next_offset {
            return Ok(state.next_offset);
        }
        let offset = offset.max(state.log_start_offset);
        let result = (|| {
            // The recovery point comes down first: a crash after the files changed
            // must find a log that ends at or after it, or it would take the cut
            // for lost data.
            let new_end = match state.segments.range(..=offset).next_back() {
                Some((_, segment)) => segment
                    .position_of(offset)?
                    .map_or(segment.next_offset(), |(_, info)| info.base_offset),
                None => offset,
            };
            if new_end < state.recovery_point || new_end < state.log_start_offset {
                state.recovery_point = state.recovery_point.min(new_end);
                let log_start_offset = state.log_start_offset;
                state.log_start_offset = log_start_offset.min(new_end);
                let written = self.checkpoint_with(state, false);
                state.log_start_offset = log_start_offset;
                written?;
            }
            // Whole segments starting at or after the offset go; the batch holding the
            // offset is then in the last remaining segment.
            while state.segments.len() > 1 && *state.segments.keys().next_back().unwrap() >= offset
            {
                state.segments.pop_last().unwrap().1.delete()?;
            }
            let active = state.active_mut();
            active.unseal(&config)?;
            let end = active.truncate_to(offset)?;
            state.epochs.truncate_from(&self.dir, end)?;
            Ok(end)
        })();
        match result {
            Ok(end) => {
                state.next_offset = end;
                // The batch holding the offset may have started below the log start
                // (records deleted mid-batch): the log is then empty from `end` on.
                let log_start_moved = state.log_start_offset > end;
                state.log_start_offset = state.log_start_offset.min(end);
                state.recovery_point = state.recovery_point.min(end);
                self.high_watermark.fetch_min(end, Ordering::AcqRel);
                self.durable
                    .send_modify(|durable| *durable = (*durable).min(end));
                if log_start_moved {
                    // Recovery clamps the checkpointed log start to the segments it
                    // finds; after appends past `end` the old, higher start would fit
                    // and come back, hiding the new records below it.
                    self.checkpoint_with(state, false)?;
                }
                Ok(end)
            }
            Err(error) => Err(self.fail(state, error)),
        }
    }

    /// Drops every batch and makes the log, empty, start at `offset`, past its end: a
    /// follower whose whole log lies below its leader's log start (the leader's
    /// retention deleted what it would fetch next) copies the leader from there.
    /// Does nothing unless `offset` is past the log end.
    ///
    /// Crash-safe in this order: the new log start is checkpointed first, with the
    /// recovery point left within the old log (a crash then finds the old segments,
    /// and recovery keeps the old log); the old segment files are deleted (a crash then
    /// finds none, and recovery starts an empty log at the checkpointed start); the new
    /// segment is created, and the recovery point moves to it last.
    pub fn restart_at(&self, offset: i64) -> Result<()> {
        let config = self.config();
        let now_ms = self.clock.now_ms();
        let mut guard = self.lock();
        let state = &mut *guard;
        self.writable(state)?;
        if offset <= state.next_offset {
            return Ok(());
        }
        let result = (|| {
            state.log_start_offset = offset;
            self.checkpoint_with(state, false)?;
            state.unsynced_segments.clear();
            state.batch_infos.clear();
            state.unflushed_bytes = 0;
            for (_, segment) in std::mem::take(&mut state.segments) {
                segment.delete()?;
            }
            state.epochs.truncate_from(&self.dir, i64::MIN)?;
            state
                .segments
                .insert(offset, Segment::create(&self.dir, offset, &config, now_ms)?);
            sync_dir(&self.dir)?;
            state.recovery_point = offset;
            self.high_watermark.store(offset, Ordering::Release);
            self.checkpoint_with(state, false)
        })();
        match result {
            Ok(()) => {
                state.next_offset = offset;
                self.durable.send_modify(|durable| *durable = offset);
                self.high_watermark_changes.send_replace(offset);
                Ok(())
            }
            Err(error) => Err(self.fail(state, error)),
        }
    }

    /// Makes offsets below `offset` unreadable and deletes the sealed segments wholly
    /// below it. `offset` may not pass the high watermark. Returns the new log start.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let offset = offset.min(self.high_watermark());
        let mut state = self.lock();
        state.log_start_offset = state.log_start_offset.max(offset);
        self.checkpoint_with(&state, false)?;
        let start = state.log_start_offset;
        self.delete_segments_while(&mut state, |segment| segment.next_offset() <= start)?;
        Ok(state.log_start_offset)
    }

    /// Deletes sealed segments past the retention limits; returns how many.
    ///
    /// A segment's age is its largest record timestamp, or its file's modification
    /// time when that timestamp is negative or far in the future (see
    /// [`Segment::retention_timestamp`]), so one bad timestamp cannot hold back the
    /// retention of every later segment.
    pub fn apply_retention(&self) -> Result<usize> {
        let config = self.config();
        let now_ms = self.clock.now_ms();
        let high_watermark = self.high_watermark();
        let mut state = self.lock();
        let mut size = state.size_bytes();
        self.delete_segments_while(&mut state, |segment| {
            let below_high_watermark = segment.next_offset() <= high_watermark;
            let over_size = config
                .retention_bytes
                .is_some_and(|limit| size.saturating_sub(segment.size()) >= limit);
            let expired = config.retention_ms.is_some_and(|limit| {
                segment.retention_timestamp(now_ms) < now_ms.saturating_sub(limit as i64)
            });
            let delete = below_high_watermark && (over_size || expired);
            if delete {
                size -= segment.size();
            }
            delete
        })
    }

    /// Deletes the oldest sealed segments while `doomed` says so, moving the log start.
    /// The new log start is checkpointed before any file goes: a crash in between
    /// leaves segments below the log start (deleted again later), never a log start
    /// that no segment holds, which the next start would take for lost data.
    fn delete_segments_while(
        &self,
        state: &mut LogState,
        mut doomed: impl FnMut(&Segment) -> bool,
    ) -> Result<usize> {
        let sealed = state.segments.len() - 1;
        let count = state
            .segments
            .values()
            .take(sealed)
            .take_while(|segment| doomed(segment))
            .count();
        if count == 0 {
            return Ok(0);
        }
        let next_base = *state
            .segments
            .keys()
            .nth(count)
            .expect("the active segment stays");
        state.log_start_offset = state.log_start_offset.max(next_base);
        self.checkpoint_with(state, false)?;
        for _ in 0..count {
            let (_, segment) = state.segments.pop_first().expect("counted above");
            segment.delete()?;
        }
        metrics::counter!("fjord_storage_retention_deleted_segments_total").increment(count as u64);
        Ok(count)
    }

    /// Persists the recovery point, high watermark and log start offset. A log that
    /// opened read-only on a full disk takes writes again once this succeeds.
    pub fn checkpoint(&self) -> Result<()> {
        let mut state = self.lock();
        self.checkpoint_with(&state, false)?;
        if state.read_only.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "checkpoint written: the log takes writes again");
        }
        Ok(())
    }

    /// Why the log refuses writes although it serves reads (see
    /// [`StorageError::ReadOnly`]), if it does.
    pub fn read_only_reason(&self) -> Option<String> {
        self.lock().read_only.clone()
    }

    fn checkpoint_with(&self, state: &LogState, clean: bool) -> Result<()> {
        let checkpoint = Checkpoint {
            recovery_point: state.recovery_point,
            high_watermark: self.high_watermark(),
            log_start_offset: state.log_start_offset,
            clean,
        };
        write_state_file(
            &self.dir,
            CHECKPOINT_FILE,
            StateKind::Checkpoint,
            &checkpoint.encode(),
        )
    }

    /// Flushes, trims the active segment's indexes and writes a clean checkpoint, so
    /// that the next open scans nothing. Further appends fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        if self.lock().closed {
            return Ok(());
        }
        // Segments sealed since the last flush, and the directory, first.
        let flushed = self.flush();
        let mut state = self.lock();
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        if state.failure.is_some() {
            return flushed;
        }
        // The flush above covered everything written before it; fsync again only for
        // appends that came in between.
        if state.unflushed_bytes > 0 {
            state.active_mut().seal()?;
        } else {
            state.active_mut().seal_indexes()?;
        }
        for segment in state.segments.values() {
            segment.discard_damaged_index()?;
        }
        state.recovery_point = state.next_offset;
        self.checkpoint_with(&state, true)
    }
}

fn metrics_roll() {
    metrics::counter!("fjord_storage_segment_rolls_total").increment(1);
}

/// Base offsets of the segments in `dir`, sorted; removes leftovers of interrupted
/// writes (`*.tmp`) and index files whose log is gone.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(|error| StorageError::io("list", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::io("list", dir, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            fs::remove_file(entry.path())
                .map_err(|error| StorageError::io("delete", entry.path(), error))?;
            continue;
        }
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match extension {
            "log" => logs.push(base),
            "index" | "timeindex" => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            fs::remove_file(&path).map_err(|error| StorageError::io("delete", path, error))?;
        }
    }
    logs.sort_unstable();
    Ok(logs)
}

/// Fills the lost offsets `from..to` with gap batches (skip_gap): in the last segment
/// when it is empty and starts at `from` (all that was left of a damaged segment),
/// otherwise in a new segment file at `from`. The data is fsynced before it returns.
fn fill_gap(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
    segments: &mut BTreeMap<i64, Segment>,
    from: i64,
    to: i64,
) -> Result<()> {
    tracing::warn!(dir = %dir.display(), from, to, "skipping lost offsets: filling them with empty batches");
    let reuse = segments
        .values()
        .next_back()
        .is_some_and(|last| last.is_empty() && last.base_offset == from);
    if !reuse {
        segments.insert(from, Segment::create(dir, from, config, now_ms)?);
    }
    let segment = segments.get_mut(&from).expect("inserted above");
    let batches = gap_batches(from, to);
    let infos: Vec<BatchInfo> = batches
        .iter()
        .map(|batch| BatchInfo::from_header(batch))
        .collect();
    let mut slices: Vec<IoSlice<'_>> = batches.iter().map(|batch| IoSlice::new(batch)).collect();
    segment.append(&mut slices, &infos)?;
    segment.flush()?;
    sync_dir(dir)
}

fn delete_segment_files(dir: &Path, base: i64) -> Result<()> {
    for extension in ["log", "index", "timeindex"] {
        let path = dir.join(segment_file_name(base, extension));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StorageError::io("delete", path, error)),
        }
    }
    Ok(())
}
