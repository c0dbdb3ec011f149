//! openraft's log storage (`RaftLogStorage`, `RaftLogReader`) over the Raft log file and
//! the vote file. Every write runs on a blocking thread and is on disk before the call
//! (or, for appends, the flush callback) reports it done; openraft issues them one at a
//! time, so they happen in its order.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageIOError, Vote};

use super::log_file::RaftLogFile;
use super::vote_file::{VoteFile, VoteState};
use super::{
    MetadataRaft, RaftStorageError, RaftStoreError, blocking, entry_of, log_id_of, position_of,
    storage_error, stored_entry, stored_vote, vote_of,
};

/// The log and vote storage of one quorum member, in one directory.
#[derive(Debug, Clone)]
pub struct LogStore {
    log: Arc<Mutex<RaftLogFile>>,
    vote: Arc<Mutex<VoteFile>>,
}

/// Reads entries while the store goes on writing (used by replication).
#[derive(Debug, Clone)]
pub struct LogReader {
    log: Arc<Mutex<RaftLogFile>>,
}

impl LogStore {
    /// Opens (or creates) `dir/raft.log` and `dir/raft.vote`.
    pub fn open(dir: &Path) -> Result<Self, RaftStoreError> {
        Ok(Self {
            log: Arc::new(Mutex::new(RaftLogFile::open(dir)?)),
            vote: Arc::new(Mutex::new(VoteFile::open(dir)?)),
        })
    }

    fn vote_state(&self) -> VoteState {
        self.vote.lock().expect("vote lock poisoned").state()
    }

    async fn save_vote_state(
        &self,
        change: impl FnOnce(&mut VoteState) + Send + 'static,
    ) -> Result<(), RaftStoreError> {
        let vote = self.vote.clone();
        blocking(move || {
            let mut file = vote.lock().expect("vote lock poisoned");
            let mut state = file.state();
            change(&mut state);
            file.save(state)
        })
        .await
    }
}

/// The entries of `log` with an index in `range`.
fn read_entries(
    log: &Mutex<RaftLogFile>,
    range: impl RangeBounds<u64>,
) -> Vec<Entry<MetadataRaft>> {
    let start = match range.start_bound() {
        Bound::Included(index) => *index,
        Bound::Excluded(index) => index.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(index) => index.saturating_add(1),
        Bound::Excluded(index) => *index,
        Bound::Unbounded => u64::MAX,
    };
    let stored = log.lock().expect("log lock poisoned").entries(start, end);
    stored.into_iter().map(entry_of).collect()
}

impl RaftLogReader<MetadataRaft> for LogReader {
    async fn try_get_log_entries<Range: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: Range,
    ) -> Result<Vec<Entry<MetadataRaft>>, RaftStorageError> {
        Ok(read_entries(&self.log, range))
    }
}

impl RaftLogReader<MetadataRaft> for LogStore {
    async fn try_get_log_entries<Range: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: Range,
    ) -> Result<Vec<Entry<MetadataRaft>>, RaftStorageError> {
        Ok(read_entries(&self.log, range))
    }
}

impl RaftLogStorage<MetadataRaft> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, RaftStorageError> {
        let log = self.log.lock().expect("log lock poisoned");
        Ok(LogState {
            last_purged_log_id: log.last_purged().map(log_id_of),
            last_log_id: log.last_position().map(log_id_of),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            log: self.log.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        let vote = stored_vote(vote);
        self.save_vote_state(move |state| state.vote = Some(vote))
            .await
            .map_err(|error| storage_error(StorageIOError::write_vote, error))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        Ok(self.vote_state().vote.map(vote_of))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), RaftStorageError> {
        let committed = committed.as_ref().map(position_of);
        self.save_vote_state(move |state| state.committed = committed)
            .await
            .map_err(|error| storage_error(StorageIOError::write, error))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError> {
        Ok(self.vote_state().committed.map(log_id_of))
    }

    async fn append<Entries>(
        &mut self,
        entries: Entries,
        callback: LogFlushed<MetadataRaft>,
    ) -> Result<(), RaftStorageError>
    where
        Entries: IntoIterator<Item = Entry<MetadataRaft>> + Send,
        Entries::IntoIter: Send,
    {
        let stored = entries.into_iter().map(stored_entry).collect();
        let log = self.log.clone();
        let result = blocking(move || log.lock().expect("log lock poisoned").append(stored)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(storage_error(StorageIOError::write_logs, error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        let log = self.log.clone();
        blocking(move || {
            log.lock()
                .expect("log lock poisoned")
                .truncate_from(log_id.index)
        })
        .await
        .map_err(|error| storage_error(StorageIOError::write_logs, error))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        let log = self.log.clone();
        let upto = position_of(&log_id);
        blocking(move || log.lock().expect("log lock poisoned").purge_upto(upto))
            .await
            .map_err(|error| storage_error(StorageIOError::write_logs, error))
    }
}
