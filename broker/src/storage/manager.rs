//! The log manager: every partition log of the broker, and their background work.
//!
//! It owns the data directory (locked against a second broker process), opens every
//! partition directory at start-up, creates and deletes partitions, and runs one
//! bounded background loop that flushes `interval`-policy logs, applies retention and
//! checkpoints high watermarks.
//!
//! A partition whose log cannot be opened (lost or damaged durable data, a damaged
//! file header, a partition directory that disappeared) is kept offline with the
//! reason, and every other partition is served; [`LogManager::recover`] carries out
//! the operator's decision.
//!
//! Each partition directory records the id of its topic ([`topic_id`]). A directory
//! whose recorded id is not the id of the topic of its name now (the topic was deleted
//! and re-created while this broker was down) is removed and the partition starts
//! empty; a directory without the record (written by an earlier release) is adopted
//! and the id recorded; a damaged record keeps the partition offline.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use uuid::Uuid;

use super::clock::Clock;
use super::config::LogConfig;
use super::error::{Result, StorageError};
use super::log::{PartitionLog, RecoveryReport};
use super::log_ends;
use super::recovery::{RecoverError, RecoveryAction, RecoveryMode};
use super::topic_id;
use super::topic_partition::TopicPartition;

const LOCK_FILE: &str = ".lock";
const DELETED_SUFFIX: &str = ".deleted";
/// Longest file or directory name the common Linux file systems accept (NAME_MAX).
const FILE_NAME_BYTES_MAX: usize = 255;

/// The name a partition directory is renamed to before its removal:
/// `<topic>-<partition>.<now_ms>.deleted`, with the topic shortened as needed to fit a
/// file name, because a topic name may be 249 characters long and the suffix would
/// push it past [`FILE_NAME_BYTES_MAX`]. Topic names are ASCII, so cutting bytes cuts
/// characters.
fn deleted_dir_name(partition: &TopicPartition, now_ms: i64) -> String {
    let suffix = format!("-{}.{now_ms}{DELETED_SUFFIX}", partition.partition);
    let topic_bytes = partition
        .topic
        .len()
        .min(FILE_NAME_BYTES_MAX.saturating_sub(suffix.len()));
    let topic = partition.topic.get(..topic_bytes).unwrap_or("partition");
    format!("{topic}{suffix}")
}

/// How often the background loop does each kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundIntervals {
    pub flush_check: Duration,
    pub retention_check: Duration,
    pub checkpoint: Duration,
}

impl Default for BackgroundIntervals {
    fn default() -> Self {
        Self {
            flush_check: Duration::from_millis(50),
            retention_check: Duration::from_secs(60),
            checkpoint: Duration::from_secs(5),
        }
    }
}

/// A partition whose log is not open, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OfflinePartition {
    reason: String,
    /// Set when the partition's directory is gone: where its log ended.
    lost_log_end_offset: Option<i64>,
    /// Set when the directory's topic id record is damaged: no recovery action
    /// applies; the operator removes the record (adopt) or the directory.
    topic_id_damaged: bool,
}

/// An open log and the topic it belongs to.
#[derive(Debug)]
struct OpenLog {
    topic_id: Uuid,
    log: Arc<PartitionLog>,
}

/// What the metadata says of a partition directory found at start-up (see
/// [`LogManager::open_all`]).
#[derive(Debug, Clone)]
pub enum FoundDir {
    /// A partition this broker holds a replica of, of the topic `topic_id`.
    Held { topic_id: Uuid, config: LogConfig },
    /// A partition of the topic `topic_id` that this broker holds no replica of.
    NotHeld { topic_id: Uuid },
    /// No topic of the metadata has this partition.
    Unknown,
}

#[derive(Debug)]
pub struct LogManager {
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// Open logs, each with the id of the topic it belongs to: a log of an earlier topic
    /// of the same name must never serve the new one (see [`LogManager::get_of`]).
    logs: RwLock<HashMap<TopicPartition, OpenLog>>,
    /// Partitions whose log could not be opened; an operator decides (see
    /// [`LogManager::recover`]).
    offline: RwLock<BTreeMap<TopicPartition, OfflinePartition>>,
    /// The last log end recorded for each partition (`log-ends`).
    known_ends: Mutex<BTreeMap<TopicPartition, i64>>,
    /// How many partitions are opened (recovered) or closed at once.
    parallelism: AtomicUsize,
    /// Held for the manager's life: the OS releases the lock when the process dies.
    _lock: File,
}

impl LogManager {
    /// Takes the data directory, failing clearly if another broker holds it, and
    /// finishes deletions a crash interrupted.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        fs::create_dir_all(data_dir)
            .map_err(|error| StorageError::io("create directory", data_dir, error))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = File::create(&lock_path)
            .map_err(|error| StorageError::io("create", &lock_path, error))?;
        lock.try_lock().map_err(|_| StorageError::Corrupt {
            path: data_dir.to_owned(),
            reason: "the data directory is in use by another broker process".into(),
        })?;
        let known_ends = log_ends::load(data_dir).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring unreadable log ends; missing partition directories go unnoticed this time");
            BTreeMap::new()
        });
        let manager = Self {
            data_dir: data_dir.to_owned(),
            clock,
            logs: RwLock::new(HashMap::new()),
            offline: RwLock::new(BTreeMap::new()),
            known_ends: Mutex::new(known_ends),
            parallelism: AtomicUsize::new(default_parallelism()),
            _lock: lock,
        };
        for (name, path) in manager.partition_dirs()? {
            if name.ends_with(DELETED_SUFFIX) {
                fs::remove_dir_all(&path)
                    .map_err(|error| StorageError::io("delete", &path, error))?;
            }
        }
        Ok(manager)
    }

    /// Every partition directory in the data directory, with the topic id it records
    /// (`None` when it records none, as in a directory of an earlier release, or its
    /// record cannot be read). What a broker tells the controller it holds.
    pub fn partition_dirs_found(&self) -> Result<Vec<(TopicPartition, Option<Uuid>)>> {
        Ok(self
            .partition_dirs()?
            .into_iter()
            .filter_map(|(name, path)| {
                let partition = TopicPartition::parse_dir_name(&name)?;
                Some((partition, topic_id::load(&path).ok().flatten()))
            })
            .collect())
    }

    fn partition_dirs(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut dirs = Vec::new();
        let entries = fs::read_dir(&self.data_dir)
            .map_err(|error| StorageError::io("list", &self.data_dir, error))?;
        for entry in entries {
            let entry = entry.map_err(|error| StorageError::io("list", &self.data_dir, error))?;
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                dirs.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                ));
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sets how many partitions [`LogManager::open_all`] and [`LogManager::close_all`]
    /// handle at once (at least one; 0 = 16, or the number of cores when more).
    pub fn set_parallelism(&self, threads: usize) {
        let threads = if threads == 0 {
            default_parallelism()
        } else {
            threads
        };
        self.parallelism.store(threads, Ordering::Relaxed);
    }

    /// Runs `work` on every item, on up to [`LogManager::set_parallelism`] threads
    /// that take the items in order; the results in the items' order.
    fn in_parallel<T: Sync, R: Send>(&self, items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
        let threads = self
            .parallelism
            .load(Ordering::Relaxed)
            .clamp(1, items.len().max(1));
        if threads == 1 {
            return items.iter().map(work).collect();
        }
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(item) = items.get(index) else {
                                return done;
                            };
                            done.push((index, work(item)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().expect("a storage worker panicked"))
                .collect()
        });
        results.sort_unstable_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }

    /// Opens every partition directory that `found` says this broker holds, with its
    /// topic's id and log config. Directories of no known partition are left untouched,
    /// with a warning: losing metadata must never delete data. A directory of an earlier
    /// topic of the same name is removed, and the partition created empty when this
    /// broker holds it (see [`LogManager::claim_dir`]); one of a partition it does not
    /// hold, of the same topic, is left alone (not opened). A log that cannot be opened, or a damaged topic id
    /// record, leaves its partition offline, with the error as the reason; the others
    /// open.
    ///
    /// Logs are opened on up to [`LogManager::set_parallelism`] threads at once: each
    /// recovery is mostly waiting for reads and fsyncs, which the disk serves side by
    /// side.
    pub fn open_all(
        &self,
        found: impl Fn(&TopicPartition) -> FoundDir,
    ) -> Result<Vec<(TopicPartition, RecoveryReport)>> {
        let mut known = Vec::new();
        for (name, path) in self.partition_dirs()? {
            let Some(partition) = TopicPartition::parse_dir_name(&name) else {
                continue;
            };
            let (topic_id, config) = match found(&partition) {
                FoundDir::Held { topic_id, config } => (topic_id, config),
                FoundDir::NotHeld { topic_id } => {
                    self.remove_if_stale(&partition, &path, topic_id)?;
                    continue;
                }
                FoundDir::Unknown => {
                    tracing::warn!(dir = %path.display(), "partition directory of no known topic; leaving it alone");
                    continue;
                }
            };
            // One small read per directory, done before the parallel opening so that
            // removing a stale directory never races with recording log ends.
            let claimed = match topic_id::load(&path) {
                Ok(recorded) => self.claim_dir(&partition, &path, topic_id, recorded),
                Err(error) => {
                    let reason = damaged_topic_id_reason(&partition, &path, topic_id, &error);
                    tracing::error!(%partition, "partition is offline: {reason}");
                    self.offline.write().expect("lock poisoned").insert(
                        partition,
                        OfflinePartition {
                            reason,
                            lost_log_end_offset: None,
                            topic_id_damaged: true,
                        },
                    );
                    continue;
                }
            };
            if let Err(error) = claimed {
                tracing::error!(%partition, %error, "partition is offline: its directory cannot be made its topic's");
                self.set_offline(&partition, error.to_string(), None);
                continue;
            }
            known.push((partition, path, topic_id, config));
        }
        let opened = self.in_parallel(&known, |(_, path, _, config)| {
            PartitionLog::open(path, config.clone(), self.clock.clone())
        });
        let mut reports = Vec::new();
        for ((partition, _, topic_id, _), opened) in known.into_iter().zip(opened) {
            match opened {
                Ok((log, report)) => {
                    self.logs
                        .write()
                        .expect("lock poisoned")
                        .insert(partition.clone(), OpenLog { topic_id, log });
                    reports.push((partition, report));
                }
                Err(error) => {
                    tracing::error!(%partition, %error, "partition is offline: its log cannot be opened");
                    self.set_offline(&partition, error.to_string(), None);
                }
            }
        }
        Ok(reports)
    }

    /// Keeps a partition offline whose log could not be opened or created.
    /// Keeps a reason recorded earlier (such as a lost directory's).
    pub fn mark_offline(&self, partition: &TopicPartition, reason: String) {
        if self.get(partition).is_none() {
            self.offline
                .write()
                .expect("lock poisoned")
                .entry(partition.clone())
                .or_insert(OfflinePartition {
                    reason,
                    lost_log_end_offset: None,
                    topic_id_damaged: false,
                });
        }
    }

    fn set_offline(&self, partition: &TopicPartition, reason: String, lost: Option<i64>) {
        self.offline.write().expect("lock poisoned").insert(
            partition.clone(),
            OfflinePartition {
                reason,
                lost_log_end_offset: lost,
                topic_id_damaged: false,
            },
        );
    }

    /// The open log of the partition, whichever topic of that name it belongs to.
    pub fn get(&self, partition: &TopicPartition) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .expect("lock poisoned")
            .get(partition)
            .map(|open| open.log.clone())
    }

    /// The open log of the partition if it belongs to the topic `topic_id`. Between a
    /// topic's deletion and its re-creation under the same name being reconciled, the
    /// old topic's log is still open under the name: serving it as the new topic's would
    /// acknowledge writes that its deletion then removes.
    pub fn get_of(&self, partition: &TopicPartition, topic_id: Uuid) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .expect("lock poisoned")
            .get(partition)
            .filter(|open| open.topic_id == topic_id)
            .map(|open| open.log.clone())
    }

    /// Refuses to hand out the open log of another topic of the same name.
    fn open_log_of(
        &self,
        partition: &TopicPartition,
        open: &OpenLog,
        topic_id: Uuid,
    ) -> Result<Arc<PartitionLog>> {
        if open.topic_id == topic_id {
            return Ok(open.log.clone());
        }
        Err(StorageError::Offline {
            path: self.data_dir.join(partition.to_string()),
            reason: format!(
                "the log open under this name belongs to topic id {}, not {topic_id}; it is \
                 removed when that topic's deletion is reconciled",
                open.topic_id
            ),
        })
    }

    /// Opens the partition's log of the topic `topic_id`, creating it (and recording
    /// the topic id) when it does not exist. An offline partition is not touched; a
    /// partition whose directory is gone although it held data (`log-ends` says so)
    /// goes offline instead of coming back empty; a directory of an earlier topic of
    /// the same name is replaced by an empty one.
    pub fn get_or_create(
        &self,
        partition: &TopicPartition,
        topic_id: Uuid,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>> {
        if let Some(open) = self.logs.read().expect("lock poisoned").get(partition) {
            return self.open_log_of(partition, open, topic_id);
        }
        // Lock order: `offline` before `logs` (as in `recover`), never both here.
        let dir = self.data_dir.join(partition.to_string());
        if let Some(offline) = self.offline.read().expect("lock poisoned").get(partition) {
            return Err(StorageError::Offline {
                path: dir,
                reason: offline.reason.clone(),
            });
        }
        let known_end = self
            .known_ends
            .lock()
            .expect("lock poisoned")
            .get(partition)
            .copied();
        if let Some(end) = known_end.filter(|end| *end > 0 && !dir.exists()) {
            let reason = format!(
                "the partition directory {} is missing, but its log ended at offset {end}: \
                 the data is lost. Recovering with accept_loss recreates it empty from \
                 offset {end}",
                dir.display()
            );
            tracing::error!(%partition, "{reason}");
            self.set_offline(partition, reason.clone(), Some(end));
            return Err(StorageError::Offline { path: dir, reason });
        }
        // Before taking `logs`: removing a stale directory takes `known_ends`, which
        // `write_log_ends` holds while it reads `logs`.
        let recorded = topic_id::load(&dir)?;
        self.claim_dir(partition, &dir, topic_id, recorded)?;
        let mut logs = self.logs.write().expect("lock poisoned");
        if let Some(open) = logs.get(partition) {
            return self.open_log_of(partition, open, topic_id);
        }
        let (log, _) = PartitionLog::open(&dir, config, self.clock.clone())?;
        logs.insert(
            partition.clone(),
            OpenLog {
                topic_id,
                log: log.clone(),
            },
        );
        Ok(log)
    }

    /// Why the partition cannot be served: its log could not be opened, or a write or
    /// fsync failed since. `None` when it is online (or unknown here).
    pub fn offline_reason(&self, partition: &TopicPartition) -> Option<String> {
        if let Some(offline) = self.offline.read().expect("lock poisoned").get(partition) {
            return Some(offline.reason.clone());
        }
        self.get(partition).and_then(|log| log.failure())
    }

    /// Every partition that cannot be served, with the reason, by partition.
    pub fn offline_partitions(&self) -> Vec<(TopicPartition, String)> {
        let mut offline: Vec<_> = self
            .offline
            .read()
            .expect("lock poisoned")
            .iter()
            .map(|(partition, offline)| (partition.clone(), offline.reason.clone()))
            .collect();
        for (partition, log) in self.logs() {
            if let Some(failure) = log.failure() {
                offline.push((partition, format!("a write or fsync failed: {failure}")));
            }
        }
        offline.sort_by(|a, b| a.0.cmp(&b.0));
        offline
    }

    /// Carries out an operator's decision for an offline partition: `truncate` or
    /// `skip_gap` for a log that could not be opened, `accept_loss` for a partition
    /// whose directory is gone (recreated empty from where its log ended, recording
    /// `topic_id`). The log is online when this returns `Ok`; on failure it stays
    /// offline with the new reason. A damaged topic id record is no decision about data:
    /// no action applies to it.
    pub fn recover(
        &self,
        partition: &TopicPartition,
        topic_id: Uuid,
        action: RecoveryAction,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, RecoverError> {
        let mut offline_partitions = self.offline.write().expect("lock poisoned");
        let not_applicable = |reason: &str| RecoverError::NotApplicable {
            partition: partition.to_string(),
            action: action.name(),
            reason: reason.to_owned(),
        };
        let Some(offline) = offline_partitions.get(partition).cloned() else {
            if self
                .get(partition)
                .is_some_and(|log| log.failure().is_some())
            {
                return Err(not_applicable(
                    "a write or fsync failed while it was open; restarting the broker \
                     recovers its log",
                ));
            }
            return Err(RecoverError::NotOffline(partition.to_string()));
        };
        if offline.topic_id_damaged {
            return Err(not_applicable(&offline.reason));
        }
        let dir = self.data_dir.join(partition.to_string());
        let opened = match (action, offline.lost_log_end_offset) {
            (RecoveryAction::AcceptLoss, Some(end)) => fs::create_dir_all(&dir)
                .map_err(|error| StorageError::io("create directory", &dir, error))
                .and_then(|()| topic_id::store(&dir, topic_id))
                .and_then(|()| {
                    PartitionLog::create_empty_at(&dir, config, self.clock.clone(), end)
                }),
            (RecoveryAction::AcceptLoss, None) => {
                return Err(not_applicable(
                    "its directory is there; truncate or skip_gap decide about damaged data",
                ));
            }
            (_, Some(_)) => {
                return Err(not_applicable(
                    "its directory is gone; only accept_loss applies",
                ));
            }
            (RecoveryAction::Truncate, None) => {
                PartitionLog::open_with(&dir, config, self.clock.clone(), RecoveryMode::Truncate)
                    .map(|(log, _)| log)
            }
            (RecoveryAction::SkipGap, None) => {
                PartitionLog::open_with(&dir, config, self.clock.clone(), RecoveryMode::SkipGap)
                    .map(|(log, _)| log)
            }
        };
        match opened {
            Ok(log) => {
                tracing::warn!(%partition, action = action.name(), log_start_offset = log.log_start_offset(), log_end_offset = log.log_end_offset(), "offline partition recovered by an operator");
                offline_partitions.remove(partition);
                self.logs.write().expect("lock poisoned").insert(
                    partition.clone(),
                    OpenLog {
                        topic_id,
                        log: log.clone(),
                    },
                );
                Ok(log)
            }
            Err(error) => {
                tracing::error!(%partition, action = action.name(), %error, "recovering the partition failed; it stays offline");
                offline_partitions.insert(
                    partition.clone(),
                    OfflinePartition {
                        reason: error.to_string(),
                        ..offline
                    },
                );
                Err(error.into())
            }
        }
    }

    /// The log end last recorded for `partition` when its directory is gone although
    /// its log held data (a replaced disk, a deleted directory); `None` when the
    /// directory is there, or nothing of it was recorded.
    pub fn lost_log_end(&self, partition: &TopicPartition) -> Option<i64> {
        let end = self
            .known_ends
            .lock()
            .expect("lock poisoned")
            .get(partition)
            .copied()?;
        (end > 0 && !self.data_dir.join(partition.to_string()).exists()).then_some(end)
    }

    /// Forgets what was known of a partition's log end: a new topic's partitions have
    /// no history, whatever a topic of the same name once held.
    pub fn forget_log_end(&self, partition: &TopicPartition) {
        self.known_ends
            .lock()
            .expect("lock poisoned")
            .remove(partition);
    }

    /// Records every partition's log end in `log-ends`: open logs, and offline
    /// partitions with what was known of them, so that a lost directory stays noticed.
    pub fn write_log_ends(&self) -> Result<()> {
        let mut known = self.known_ends.lock().expect("lock poisoned");
        let offline = self.offline.read().expect("lock poisoned");
        let mut ends = BTreeMap::new();
        for (partition, state) in offline.iter() {
            let end = state
                .lost_log_end_offset
                .or_else(|| known.get(partition).copied());
            if let Some(end) = end {
                ends.insert(partition.clone(), end);
            }
        }
        drop(offline);
        for (partition, log) in self.logs() {
            ends.insert(partition, log.log_end_offset());
        }
        if ends != *known {
            log_ends::store(&self.data_dir, &ends)?;
            *known = ends;
        }
        Ok(())
    }

    /// Removes the partition and its data. The directory is first renamed, so a crash
    /// halfway leaves a `.deleted` directory that the next start removes, never a
    /// half-deleted log that a new topic of the same name could pick up.
    pub fn delete(&self, partition: &TopicPartition) -> Result<()> {
        let log = self
            .logs
            .write()
            .expect("lock poisoned")
            .remove(partition)
            .map(|open| open.log);
        self.offline
            .write()
            .expect("lock poisoned")
            .remove(partition);
        let forgotten = self
            .known_ends
            .lock()
            .expect("lock poisoned")
            .remove(partition)
            .is_some();
        if forgotten {
            self.write_log_ends()?;
        }
        let dir = self.data_dir.join(partition.to_string());
        if let Some(log) = &log {
            log.close()?;
        }
        self.remove_dir(partition, &dir)
    }

    /// Removes a partition directory crash-safely: renamed to `*.deleted` first (which
    /// the next start removes if a crash comes first), then removed.
    fn remove_dir(&self, partition: &TopicPartition, dir: &Path) -> Result<()> {
        // Not a directory: nothing of the partition's (a file in the way of its
        // creation is someone else's, and stays).
        if !dir.is_dir() {
            return Ok(());
        }
        let doomed = self
            .data_dir
            .join(deleted_dir_name(partition, self.clock.now_ms()));
        fs::rename(dir, &doomed).map_err(|error| StorageError::io("rename", dir, error))?;
        super::file_format::sync_dir(&self.data_dir)?;
        fs::remove_dir_all(&doomed).map_err(|error| StorageError::io("delete", &doomed, error))
    }

    /// A directory of a partition this broker holds no replica of: removed when it
    /// records another topic than `topic_id` (the one of its name now), since that
    /// topic was deleted while this broker was down; left alone otherwise.
    fn remove_if_stale(
        &self,
        partition: &TopicPartition,
        dir: &Path,
        topic_id: Uuid,
    ) -> Result<()> {
        match topic_id::load(dir) {
            Ok(Some(recorded)) if recorded != topic_id => {
                tracing::warn!(%partition, recorded_topic_id = %recorded, %topic_id, "the partition directory holds an earlier topic of this name, deleted while this broker was down, and this broker holds no replica of the new one; removing it");
                self.remove_stale_dir(partition, dir)
            }
            _ => {
                tracing::warn!(dir = %dir.display(), "directory of a partition this broker holds no replica of; leaving it alone");
                Ok(())
            }
        }
    }

    /// Makes `dir` the directory of `partition` of the topic `topic_id`; `recorded` is
    /// the id the directory records. The same id: nothing to do. Another id: the topic
    /// was deleted and a new one of the same name created while this broker was down,
    /// so the old data is removed (its log end forgotten first, so that the empty
    /// directory is not taken for a lost one) and an empty directory made. No id in an
    /// existing directory: written by an earlier release, adopted, since the metadata
    /// is the only authority it could have had. No directory: a new one is made with
    /// its id.
    fn claim_dir(
        &self,
        partition: &TopicPartition,
        dir: &Path,
        topic_id: Uuid,
        recorded: Option<Uuid>,
    ) -> Result<()> {
        match recorded {
            Some(recorded) if recorded == topic_id => return Ok(()),
            Some(recorded) => {
                tracing::warn!(%partition, recorded_topic_id = %recorded, %topic_id, "the partition directory holds an earlier topic of this name, deleted while this broker was down; removing its data and starting the partition empty");
                self.remove_stale_dir(partition, dir)?;
            }
            None if dir.is_dir() => {
                // A failure here (a full disk) must not take the partition offline:
                // it is adopted as it always was, and the next start records the id.
                match topic_id::store(dir, topic_id) {
                    Ok(()) => {
                        tracing::info!(%partition, %topic_id, "recorded the topic id of a partition directory written by an earlier release")
                    }
                    Err(error) => {
                        tracing::warn!(%partition, %error, "cannot record the topic id of a partition directory written by an earlier release; adopting it, the next start tries again")
                    }
                }
                return Ok(());
            }
            None => {}
        }
        fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        topic_id::store(dir, topic_id)
    }

    /// Removes the directory of an earlier topic of the partition's name, its recorded
    /// log end first (see [`Self::forget_stale_log_end`]).
    fn remove_stale_dir(&self, partition: &TopicPartition, dir: &Path) -> Result<()> {
        self.forget_stale_log_end(partition)?;
        self.remove_dir(partition, dir)
    }

    /// Forgets the recorded log end of a partition whose directory is stale, on disk
    /// before the directory goes: a crash in between must not make the next start take
    /// the missing directory for lost data.
    fn forget_stale_log_end(&self, partition: &TopicPartition) -> Result<()> {
        let mut known = self.known_ends.lock().expect("lock poisoned");
        if known.remove(partition).is_some() {
            log_ends::store(&self.data_dir, &known)?;
        }
        Ok(())
    }

    /// Every open log.
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        let logs = self.logs.read().expect("lock poisoned");
        let mut all: Vec<_> = logs
            .iter()
            .map(|(partition, open)| (partition.clone(), open.log.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// One pass of background work over every log; blocking (run it off the runtime).
    pub fn background_pass(&self, flush: bool, retention: bool, checkpoint: bool) {
        for (partition, log) in self.logs() {
            if flush && let Err(error) = log.flush_if_due() {
                tracing::error!(%partition, %error, "background flush failed");
            }
            if retention {
                match log.apply_retention() {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(%partition, deleted, "retention deleted segments")
                    }
                    Err(error) => tracing::error!(%partition, %error, "retention failed"),
                }
            }
            if checkpoint && let Err(error) = log.checkpoint() {
                tracing::warn!(%partition, %error, "checkpoint failed");
            }
        }
        if checkpoint && let Err(error) = self.write_log_ends() {
            tracing::warn!(%error, "recording log ends failed");
        }
    }

    /// Runs background work until `shutdown` resolves. Each pass handles the logs one
    /// after another on a blocking thread, so the loop never piles up work.
    pub async fn run_background(
        self: Arc<Self>,
        intervals: BackgroundIntervals,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut flush = tokio::time::interval(intervals.flush_check);
        let mut retention = tokio::time::interval(intervals.retention_check);
        let mut checkpoint = tokio::time::interval(intervals.checkpoint);
        for timer in [&mut flush, &mut retention, &mut checkpoint] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        tokio::pin!(shutdown);
        loop {
            let work = tokio::select! {
                _ = &mut shutdown => return,
                _ = flush.tick() => (true, false, false),
                _ = retention.tick() => (false, true, false),
                _ = checkpoint.tick() => (false, false, true),
            };
            let manager = self.clone();
            let pass = tokio::task::spawn_blocking(move || {
                manager.background_pass(work.0, work.1, work.2)
            });
            if let Err(error) = pass.await {
                tracing::error!(%error, "background pass panicked");
            }
        }
    }

    /// Flushes and closes every log cleanly, on up to [`LogManager::set_parallelism`]
    /// threads at once (each close is a few fsyncs, which the disk serves side by side).
    pub fn close_all(&self) -> Result<()> {
        let mut first_error = None;
        if let Err(error) = self.write_log_ends() {
            tracing::error!(%error, "recording log ends failed");
            first_error = Some(error);
        }
        let logs = self.logs();
        let closed = self.in_parallel(&logs, |(_, log)| log.close());
        for ((partition, _), closed) in logs.iter().zip(closed) {
            if let Err(error) = closed {
                tracing::error!(%partition, %error, "closing log failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Why a partition whose topic id record cannot be read is offline, and what an
/// operator can do. Nothing is deleted: the record may be all that is damaged.
fn damaged_topic_id_reason(
    partition: &TopicPartition,
    dir: &Path,
    topic_id: Uuid,
    error: &StorageError,
) -> String {
    format!(
        "its topic id record is unreadable ({error}); nothing was deleted. If {} holds \
         the data of topic {} ({topic_id}), remove {} and restart to adopt it; otherwise \
         remove the directory and restart (the partition then counts as one whose \
         directory was lost)",
        dir.display(),
        partition.topic,
        dir.join(topic_id::FILE_NAME).display()
    )
}

/// Partitions opened or closed at once by default: opening and closing are mostly
/// waits for fsyncs and reads, which a disk serves side by side, so more threads than
/// cores pay off (2,008 partitions on 2 cores: 17 s to recover after kill -9 with 2
/// threads, 4.3 s with 16; docs/benchmarks.md).
const PARALLELISM_DEFAULT: usize = 16;

/// [`PARALLELISM_DEFAULT`], or the number of cores when that is more.
fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .max(PARALLELISM_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SystemClock;

    /// A directory recording another topic id than its topic's is replaced by an empty
    /// one recording the right id, and its recorded log end is forgotten on disk (else
    /// the next start would take the fresh directory, if lost, for lost data); one
    /// without a record is adopted and gets it.
    #[test]
    fn stale_directories_are_replaced_and_unrecorded_ones_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let (old_id, new_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let stale = TopicPartition::new("orders", 0);
        let unrecorded = TopicPartition::new("orders", 1);
        let ends = BTreeMap::from([(stale.clone(), 7), (unrecorded.clone(), 0)]);
        log_ends::store(dir.path(), &ends).unwrap();
        let stale_dir = dir.path().join(stale.to_string());
        fs::create_dir_all(&stale_dir).unwrap();
        topic_id::store(&stale_dir, old_id).unwrap();
        fs::write(stale_dir.join("old-data"), b"records of the old topic").unwrap();
        let unrecorded_dir = dir.path().join(unrecorded.to_string());
        fs::create_dir_all(&unrecorded_dir).unwrap();
        fs::write(unrecorded_dir.join("kept"), b"adopted").unwrap();

        let manager = LogManager::open(dir.path(), Arc::new(SystemClock)).unwrap();
        manager
            .open_all(|_| FoundDir::Held {
                topic_id: new_id,
                config: LogConfig::default(),
            })
            .unwrap();
        assert!(manager.offline_partitions().is_empty());
        assert_eq!(manager.get(&stale).unwrap().log_end_offset(), 0);
        assert!(!stale_dir.join("old-data").exists());
        assert_eq!(topic_id::load(&stale_dir).unwrap(), Some(new_id));
        assert_eq!(
            log_ends::load(dir.path()).unwrap(),
            BTreeMap::from([(unrecorded.clone(), 0)])
        );
        assert_eq!(fs::read(unrecorded_dir.join("kept")).unwrap(), b"adopted");
        assert_eq!(topic_id::load(&unrecorded_dir).unwrap(), Some(new_id));
        let names: Vec<String> = manager
            .partition_dirs()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            ["orders-0", "orders-1"],
            "no .deleted directory is left"
        );
        manager.close_all().unwrap();
    }

    /// Directories of partitions this broker holds no replica of are not opened: one of
    /// an earlier topic of the name (deleted while the broker was down) is removed with
    /// its recorded log end; one of the current topic, or of no known topic, stays.
    #[test]
    fn directories_of_partitions_not_held_are_removed_only_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let (old_id, new_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let stale = TopicPartition::new("orders", 0);
        let current = TopicPartition::new("orders", 1);
        let unknown = TopicPartition::new("audit", 0);
        let ends = BTreeMap::from([(stale.clone(), 7), (current.clone(), 3)]);
        log_ends::store(dir.path(), &ends).unwrap();
        for (partition, id) in [(&stale, old_id), (&current, new_id), (&unknown, old_id)] {
            let partition_dir = dir.path().join(partition.to_string());
            fs::create_dir_all(&partition_dir).unwrap();
            topic_id::store(&partition_dir, id).unwrap();
            fs::write(partition_dir.join("data"), b"records").unwrap();
        }

        let manager = LogManager::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let reports = manager
            .open_all(|partition| match partition.topic.as_str() {
                "orders" => FoundDir::NotHeld { topic_id: new_id },
                _ => FoundDir::Unknown,
            })
            .unwrap();
        assert!(reports.is_empty() && manager.logs().is_empty());
        assert!(!dir.path().join(stale.to_string()).exists());
        assert!(dir.path().join(current.to_string()).join("data").exists());
        assert!(dir.path().join(unknown.to_string()).join("data").exists());
        assert_eq!(
            log_ends::load(dir.path()).unwrap(),
            BTreeMap::from([(current.clone(), 3)])
        );
        manager.close_all().unwrap();
    }

    /// While a deleted topic's log is still open under its name, the log is never handed
    /// out as a new topic's of the same name: not to readers and writers (`get_of`),
    /// and not by `get_or_create`, which refuses until the old log is deleted and then
    /// creates the new topic's, empty.
    #[test]
    fn an_open_log_serves_only_its_own_topic() {
        let dir = tempfile::tempdir().unwrap();
        let (old_id, new_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let partition = TopicPartition::new("orders", 0);
        let manager = LogManager::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let old = manager
            .get_or_create(&partition, old_id, LogConfig::default())
            .unwrap();
        let mut batch = fjord_protocol::batch::BatchBuilder::new();
        batch.push(&fjord_protocol::batch::RecordInput {
            value: Some(b"old"),
            ..Default::default()
        });
        let batch = fjord_protocol::RecordBatch::new(batch.finish()).unwrap();
        old.append(&[batch], 0).unwrap();
        assert!(manager.get_of(&partition, old_id).is_some());
        assert!(manager.get_of(&partition, new_id).is_none());
        let refused = manager
            .get_or_create(&partition, new_id, LogConfig::default())
            .unwrap_err();
        assert!(
            refused.to_string().contains("belongs to topic id"),
            "{refused}"
        );
        manager.delete(&partition).unwrap();
        let new = manager
            .get_or_create(&partition, new_id, LogConfig::default())
            .unwrap();
        assert_eq!(new.log_end_offset(), 0);
        assert!(manager.get_of(&partition, old_id).is_none());
        assert!(manager.get_of(&partition, new_id).is_some());
        manager.close_all().unwrap();
    }

    /// The deletion name of a partition of a longest topic name fits a file name, ends
    /// with the suffix start-up looks for, and short names are kept whole.
    #[test]
    fn deleted_dir_names_fit_a_file_name() {
        let longest = TopicPartition::new("t".repeat(249), 9_999);
        let name = deleted_dir_name(&longest, 1_767_225_600_000);
        assert!(name.len() <= FILE_NAME_BYTES_MAX, "{}", name.len());
        assert!(name.ends_with("-9999.1767225600000.deleted"), "{name}");
        assert_eq!(
            deleted_dir_name(&TopicPartition::new("orders", 3), 5),
            "orders-3.5.deleted"
        );
    }
}
