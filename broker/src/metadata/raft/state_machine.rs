//! openraft's state machine (`RaftStateMachine`) over the metadata image.
//!
//! Applying an entry applies its records to the image in memory at the entry's position
//! ([`MetadataImage::apply_batch`]); blank and membership entries only move the image's
//! position, so the image's applied position is the state machine's. What is durable is
//! the log and the snapshot. A snapshot (`raft.snapshot`, a state file replaced
//! atomically) holds the image's snapshot ([`MetadataImage::snapshot`]: the records that
//! rebuild it and its position) and the quorum membership. On open the image is
//! restored from it, and openraft re-applies the committed entries that follow from the
//! log.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::stored::{ImageSnapshot, LogPosition, StoredMembership as StoredQuorum};
use super::{
    Applied, MetadataRaft, QuorumMember, RaftStorageError, RaftStoreError, blocking, log_id_of,
    membership_of, position_of, storage_error, stored_membership,
};
use crate::metadata::image::MetadataImage;
use crate::storage::StorageError;
use crate::storage::file_format::{StateKind, read_state_file, write_state_file};

pub const SNAPSHOT_FILE_NAME: &str = "raft.snapshot";

/// What the snapshot file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    snapshot_id: String,
    membership_position: Option<LogPosition>,
    membership: StoredQuorum,
    image: ImageSnapshot,
}

impl SnapshotFile {
    fn meta(&self) -> SnapshotMeta<u64, QuorumMember> {
        SnapshotMeta {
            last_log_id: self.image.position.map(log_id_of),
            last_membership: StoredMembership::new(
                self.membership_position.map(log_id_of),
                membership_of(&self.membership),
            ),
            snapshot_id: self.snapshot_id.clone(),
        }
    }

    fn to_snapshot(&self) -> Snapshot<MetadataRaft> {
        let data = serde_json::to_vec(&self.image).expect("image snapshots serialize");
        Snapshot {
            meta: self.meta(),
            snapshot: Box::new(Cursor::new(data)),
        }
    }
}

#[derive(Debug)]
struct MachineState {
    /// The image, at the position of the last applied entry.
    image: MetadataImage,
    membership: StoredMembership<u64, QuorumMember>,
    snapshot: Option<SnapshotFile>,
}

impl MachineState {
    fn applied_image(&self) -> AppliedImage {
        AppliedImage {
            applied_index: self.image.applied_position().map(|position| position.index),
            image: Arc::new(self.image.clone()),
        }
    }

    /// Replaces the state with a snapshot's, keeping this node's own controller id.
    fn restore(&mut self, snapshot: SnapshotFile) {
        self.image = MetadataImage::restore(&snapshot.image, self.image.controller_id);
        let meta = snapshot.meta();
        self.membership = meta.last_membership;
        self.snapshot = Some(snapshot);
    }
}

/// The image after the last applied entry, as watchers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedImage {
    /// The Raft log index of the last applied entry (`None` before the first).
    pub applied_index: Option<u64>,
    pub image: Arc<MetadataImage>,
}

/// The metadata image as a Raft state machine, with its snapshot in `dir`.
#[derive(Debug, Clone)]
pub struct ImageStateMachine {
    dir: PathBuf,
    state: Arc<Mutex<MachineState>>,
    /// Every applied batch and installed snapshot is published here.
    published: Arc<watch::Sender<AppliedImage>>,
}

/// Builds a snapshot of the state machine as it is when the build runs.
#[derive(Debug)]
pub struct SnapshotBuilder {
    dir: PathBuf,
    state: Arc<Mutex<MachineState>>,
}

impl ImageStateMachine {
    /// Opens the state machine, restored from `dir/raft.snapshot` when there is one.
    pub fn open(dir: &Path) -> Result<Self, RaftStoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| StorageError::io("create directory", dir, error))?;
        let mut state = MachineState {
            image: MetadataImage::default(),
            membership: StoredMembership::default(),
            snapshot: None,
        };
        if let Some(payload) = read_state_file(dir, SNAPSHOT_FILE_NAME, StateKind::RaftSnapshot)? {
            let snapshot =
                serde_json::from_slice(&payload).map_err(|error| StorageError::Corrupt {
                    path: dir.join(SNAPSHOT_FILE_NAME),
                    reason: format!("snapshot cannot be read: {error}"),
                })?;
            state.restore(snapshot);
        }
        let (published, _) = watch::channel(AppliedImage::default());
        published.send_replace(state.applied_image());
        Ok(Self {
            dir: dir.to_owned(),
            state: Arc::new(Mutex::new(state)),
            published: Arc::new(published),
        })
    }

    /// A watch of the image, updated after every applied batch of entries.
    pub fn subscribe(&self) -> watch::Receiver<AppliedImage> {
        self.published.subscribe()
    }

    /// A copy of the current image.
    pub fn image(&self) -> MetadataImage {
        self.state
            .lock()
            .expect("state lock poisoned")
            .image
            .clone()
    }

    /// The position of the last applied entry.
    pub fn last_applied(&self) -> Option<LogPosition> {
        let state = self.state.lock().expect("state lock poisoned");
        state.image.applied_position()
    }
}

/// A position for a message; `None` is the start of the log.
fn describe(position: Option<LogPosition>) -> String {
    position.map_or_else(
        || "the start of the log".to_owned(),
        |position| position.to_string(),
    )
}

fn write_snapshot_file(dir: &Path, snapshot: &SnapshotFile) -> Result<(), RaftStoreError> {
    let payload = serde_json::to_vec(snapshot).expect("snapshots serialize");
    write_state_file(dir, SNAPSHOT_FILE_NAME, StateKind::RaftSnapshot, &payload)?;
    Ok(())
}

impl RaftSnapshotBuilder<MetadataRaft> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, RaftStorageError> {
        let dir = self.dir.clone();
        let state = self.state.clone();
        let built = blocking(move || {
            // Held while writing, so that an installation cannot interleave with it.
            let mut state = state.lock().expect("state lock poisoned");
            let image = state.image.snapshot();
            let snapshot = SnapshotFile {
                snapshot_id: image.position.map_or_else(
                    || "empty".to_owned(),
                    |position| format!("{}-{}-{}", position.term, position.leader, position.index),
                ),
                membership_position: state.membership.log_id().as_ref().map(position_of),
                membership: stored_membership(state.membership.membership()),
                image,
            };
            write_snapshot_file(&dir, &snapshot)?;
            let built = snapshot.to_snapshot();
            state.snapshot = Some(snapshot);
            Ok(built)
        })
        .await;
        built.map_err(|error| {
            storage_error(|source| StorageIOError::write_snapshot(None, source), error)
        })
    }
}

impl RaftStateMachine<MetadataRaft> for ImageStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, QuorumMember>), RaftStorageError> {
        let state = self.state.lock().expect("state lock poisoned");
        let last_applied = state.image.applied_position().map(log_id_of);
        Ok((last_applied, state.membership.clone()))
    }

    async fn apply<Entries>(&mut self, entries: Entries) -> Result<Vec<Applied>, RaftStorageError>
    where
        Entries: IntoIterator<Item = openraft::Entry<MetadataRaft>> + Send,
        Entries::IntoIter: Send,
    {
        let mut state = self.state.lock().expect("state lock poisoned");
        let mut applied = Vec::new();
        for entry in entries {
            let position = position_of(&entry.log_id);
            let records = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(records) => records,
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            state
                .image
                .apply_batch(position, &records)
                .map_err(|error| {
                    let error = RaftStoreError::from(error);
                    StorageIOError::apply(entry.log_id, AnyError::new(&error))
                })?;
            applied.push(Applied {
                index: entry.log_id.index,
                records_applied: state.image.records_applied,
            });
        }
        self.published.send_replace(state.applied_image());
        Ok(applied)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, QuorumMember>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let image: ImageSnapshot = serde_json::from_slice(snapshot.get_ref()).map_err(|error| {
            storage_error(
                |source| StorageIOError::write_snapshot(None, source),
                RaftStoreError::BadSnapshot(error.to_string()),
            )
        })?;
        let position = meta.last_log_id.as_ref().map(position_of);
        if image.position != position {
            return Err(storage_error(
                |source| StorageIOError::write_snapshot(None, source),
                RaftStoreError::BadSnapshot(format!(
                    "its image is at {}, its metadata says {}",
                    describe(image.position),
                    describe(position)
                )),
            ));
        }
        let snapshot = SnapshotFile {
            snapshot_id: meta.snapshot_id.clone(),
            membership_position: meta.last_membership.log_id().as_ref().map(position_of),
            membership: stored_membership(meta.last_membership.membership()),
            image,
        };
        let dir = self.dir.clone();
        let state = self.state.clone();
        let published = self.published.clone();
        blocking(move || {
            let mut state = state.lock().expect("state lock poisoned");
            write_snapshot_file(&dir, &snapshot)?;
            state.restore(snapshot);
            published.send_replace(state.applied_image());
            Ok(())
        })
        .await
        .map_err(|error| {
            storage_error(|source| StorageIOError::write_snapshot(None, source), error)
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataRaft>>, RaftStorageError> {
        let state = self.state.lock().expect("state lock poisoned");
        Ok(state.snapshot.as_ref().map(SnapshotFile::to_snapshot))
    }
}
