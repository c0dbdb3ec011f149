//! The metadata quorum's vote and committed position: `raft.vote`, a state file (magic,
//! version, kind, length, JSON payload, CRC-32) replaced whole on every change: written
//! to `raft.vote.tmp`, fsynced, renamed over `raft.vote`, directory fsynced. A crash
//! leaves the old state or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::RaftStoreError;
use super::stored::{LogPosition, StoredVote};
use crate::storage::StorageError;
use crate::storage::file_format::{StateKind, read_state_file, write_state_file};

pub const VOTE_FILE_NAME: &str = "raft.vote";

/// What the vote file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteState {
    pub vote: Option<StoredVote>,
    /// The last entry known to be committed by a quorum.
    pub committed: Option<LogPosition>,
}

#[derive(Debug)]
pub struct VoteFile {
    dir: PathBuf,
    state: VoteState,
}

impl VoteFile {
    /// Reads `dir/raft.vote`; a missing file is the state of a node that never voted.
    pub fn open(dir: &Path) -> Result<Self, RaftStoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        let state = match read_state_file(dir, VOTE_FILE_NAME, StateKind::RaftVote)? {
            None => VoteState::default(),
            Some(payload) => {
                serde_json::from_slice(&payload).map_err(|error| StorageError::Corrupt {
                    path: dir.join(VOTE_FILE_NAME),
                    reason: format!("vote state cannot be read: {error}"),
                })?
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            state,
        })
    }

    pub fn state(&self) -> VoteState {
        self.state
    }

    /// Replaces the state; when this returns it is on disk.
    pub fn save(&mut self, state: VoteState) -> Result<(), RaftStoreError> {
        let payload = serde_json::to_vec(&state).expect("vote state serializes");
        write_state_file(&self.dir, VOTE_FILE_NAME, StateKind::RaftVote, &payload)?;
        self.state = state;
        Ok(())
    }
}
