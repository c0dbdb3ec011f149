//! The leader-epoch cache: for each leader epoch, the first offset written in it.
//!
//! Replication uses it to answer "where does epoch N end?" so that a follower can
//! truncate to the point where its log and the leader's agree. It is persisted as a
//! state file (`leader-epochs`) whenever it changes, which happens once per leader
//! change, not per append.

use std::path::Path;

use super::error::{Result, StorageError};
use super::file_format::{StateKind, read_state_file, write_state_file};

const FILE_NAME: &str = "leader-epochs";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    /// (epoch, first offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn load(dir: &Path) -> Result<Self> {
        let Some(payload) = read_state_file(dir, FILE_NAME, StateKind::LeaderEpochs)? else {
            return Ok(Self::default());
        };
        if !payload.len().is_multiple_of(12) {
            return Err(StorageError::Corrupt {
                path: dir.join(FILE_NAME),
                reason: "bad payload length".into(),
            });
        }
        let entries = payload
            .chunks_exact(12)
            .map(|chunk| {
                (
                    i32::from_be_bytes(chunk[..4].try_into().unwrap()),
                    i64::from_be_bytes(chunk[4..].try_into().unwrap()),
                )
            })
            .collect();
        Ok(Self { entries })
    }

    fn store(&self, dir: &Path) -> Result<()> {
        let mut payload = Vec::with_capacity(self.entries.len() * 12);
        for (epoch, offset) in &self.entries {
            payload.extend_from_slice(&epoch.to_be_bytes());
            payload.extend_from_slice(&offset.to_be_bytes());
        }
        write_state_file(dir, FILE_NAME, StateKind::LeaderEpochs, &payload)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(epoch, _)| *epoch)
    }

    /// Records that `epoch` starts at `offset`, if it is newer than the latest.
    pub fn assign(&mut self, dir: &Path, epoch: i32, offset: i64) -> Result<()> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| latest >= epoch) {
            return Ok(());
        }
        self.entries.push((epoch, offset));
        self.store(dir)
    }

    /// The largest epoch at most `epoch` and the offset where it ends (the start of the
    /// next epoch, or `log_end_offset` for the latest); `None` when no epoch is that old.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let position = self.entries.partition_point(|(known, _)| *known <= epoch);
        let (found, _) = *self.entries.get(position.checked_sub(1)?)?;
        let end = self
            .entries
            .get(position)
            .map_or(log_end_offset, |(_, start)| *start);
        Some((found, end))
    }

    /// Forgets epochs that start at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, dir: &Path, offset: i64) -> Result<()> {
        let keep = self.entries.partition_point(|(_, start)| *start < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.store(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch end offsets follow the next epoch's start, survive a reload, and truncation
    /// forgets later epochs.
    #[test]
    fn assign_lookup_truncate_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EpochCache::default();
        cache.assign(dir.path(), 1, 0).unwrap();
        cache.assign(dir.path(), 1, 5).unwrap();
        cache.assign(dir.path(), 3, 10).unwrap();
        assert_eq!(cache.end_offset_for(2, 20), Some((1, 10)));
        assert_eq!(cache.end_offset_for(3, 20), Some((3, 20)));
        assert_eq!(cache.end_offset_for(0, 20), None);
        assert_eq!(EpochCache::load(dir.path()).unwrap(), cache);
        cache.truncate_from(dir.path(), 10).unwrap();
        assert_eq!(cache.latest_epoch(), Some(1));
        assert_eq!(EpochCache::load(dir.path()).unwrap(), cache);
    }
}
