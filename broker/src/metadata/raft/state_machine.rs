//! openraft's state machine (`RaftStateMachine`) over the metadata image.
//!
//! Applying an entry applies its records to the image in memory; what is durable is the
//! log and the snapshot. A snapshot (`raft.snapshot`, a state file replaced atomically)
//! holds the image as the records that rebuild it ([`MetadataImage::to_records`]), the
//! last applied position and the quorum membership. On open the image is restored from
//! it, and openraft re-applies the committed entries that follow from the log.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
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
    last_applied: Option<LogPosition>,
    membership_position: Option<LogPosition>,
    membership: StoredQuorum,
    image: ImageSnapshot,
}

impl SnapshotFile {
    fn meta(&self) -> SnapshotMeta<u64, QuorumMember> {
        SnapshotMeta {
            last_log_id: self.last_applied.map(log_id_of),
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
    image: MetadataImage,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, QuorumMember>,
    snapshot: Option<SnapshotFile>,
}

impl MachineState {
    fn applied_image(&self) -> AppliedImage {
        AppliedImage {
            applied_index: self.last_applied.as_ref().map(|log_id| log_id.index),
            image: Arc::new(self.image.clone()),
        }
    }

    /// Replaces the state with a snapshot's, keeping this node's own controller id.
    fn restore(&mut self, snapshot: SnapshotFile) {
        let mut image = MetadataImage {
            controller_id: self.image.controller_id,
            ..MetadataImage::default()
        };
        for record in &snapshot.image.records {
            image.apply(record);
        }
        image.records_applied = snapshot.image.records_applied;
        let meta = snapshot.meta();
        self.image = image;
        self.last_applied = meta.last_log_id;
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
            last_applied: None,
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
        state.last_applied.as_ref().map(position_of)
    }
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
            let last_applied = state.last_applied.as_ref().map(position_of);
            let snapshot = SnapshotFile {
                snapshot_id: last_applied.map_or_else(
                    || "empty".to_owned(),
                    |position| format!("{}-{}-{}", position.term, position.leader, position.index),
                ),
                last_applied,
                membership_position: state.membership.log_id().as_ref().map(position_of),
                membership: stored_membership(state.membership.membership()),
                image: ImageSnapshot {
                    records_applied: state.image.records_applied,
                    records: state.image.to_records(),
                },
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
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Entries>(&mut self, entries: Entries) -> Result<Vec<Applied>, RaftStorageError>
    where
        Entries: IntoIterator<Item = openraft::Entry<MetadataRaft>> + Send,
        Entries::IntoIter: Send,
    {
        let mut state = self.state.lock().expect("state lock poisoned");
        let mut applied = Vec::new();
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(records) => {
                    for record in &records {
                        state.image.apply(record);
                    }
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            state.last_applied = Some(entry.log_id);
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
        let snapshot = SnapshotFile {
            snapshot_id: meta.snapshot_id.clone(),
            last_applied: meta.last_log_id.as_ref().map(position_of),
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
