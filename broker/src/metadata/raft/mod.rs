//! The metadata quorum: Raft over Fjord's own files and the internal listener, behind
//! openraft (the only module that names openraft types; the rest of the broker sees
//! Fjord types).
//!
//! The broker reaches it through [`MetadataLog`](crate::metadata::MetadataLog); a single
//! broker is a quorum of one. What is here:
//! - [`node`]: [`QuorumNode`], a running member: start, propose, status, image watch,
//!   shutdown.
//! - [`network`]: openraft's network over the internal listener (client and server).
//! - [`wire`]: the quorum's messages as they travel.
//! - [`log_file`]: the Raft log, Fjord's own file (`raft.log`): framed entries with
//!   CRC-32C, fsynced before an append is acknowledged, torn tail cut on open,
//!   crash-safe truncation and purge.
//! - [`vote_file`]: the vote and the committed position (`raft.vote`), a state file
//!   replaced atomically.
//! - [`log_store`]: openraft's `RaftLogStorage` over those two files.
//! - [`state_machine`]: openraft's `RaftStateMachine` over the [`MetadataImage`], which
//!   keeps the last applied position itself; its snapshot (`raft.snapshot`) is the
//!   image's own snapshot (the records that rebuild it, and its position).
//! - [`stored`]: the on-disk forms of entries, votes, memberships and snapshots.
//!
//! Each log entry carries a batch of [`MetadataRecord`]s applied together, so a change
//! made of several records (a cluster's first records, a topic and its partitions) is
//! atomic. Node ids are `u64` here, as openraft's test suite requires; Fjord's are
//! `i32`s, 0 or more.
//!
//! [`MetadataImage`]: crate::metadata::MetadataImage

pub mod error;
pub mod log_file;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod stored;
pub mod vote_file;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StorageIOError, Vote,
};

pub use error::RaftStoreError;
pub use log_store::{LogReader, LogStore};
pub use node::{
    LeaderHint, Leadership, ProposeError, QuorumConfig, QuorumError, QuorumNode, QuorumStatus,
    QuorumTiming, Role, VoterStatus,
};
pub use state_machine::{AppliedImage, ImageStateMachine, SnapshotBuilder};

use crate::metadata::records::MetadataRecord;
use stored::{LogPosition, StoredEntry, StoredMembership, StoredNode, StoredPayload, StoredVote};

/// A member of the quorum as openraft knows it: its internal listener's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumMember {
    pub address: String,
}

/// What applying one entry produced: its index and the image's record count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub records_applied: u64,
}

openraft::declare_raft_types!(
    /// The types of the metadata quorum.
    pub MetadataRaft:
        D = Vec<MetadataRecord>,
        R = Applied,
        NodeId = u64,
        Node = QuorumMember,
        Entry = openraft::Entry<MetadataRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's storage error, as its traits return it.
pub type RaftStorageError = openraft::StorageError<u64>;

/// Converts a Fjord storage error into openraft's, with `kind` saying what failed.
fn storage_error(
    kind: fn(AnyError) -> StorageIOError<u64>,
    error: RaftStoreError,
) -> RaftStorageError {
    kind(AnyError::new(&error)).into()
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RaftStoreError> + Send + 'static,
) -> Result<T, RaftStoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(RaftStoreError::TaskFailed(error.to_string())))
}

fn position_of(log_id: &LogId<u64>) -> LogPosition {
    LogPosition {
        term: log_id.leader_id.term,
        leader: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

fn log_id_of(position: LogPosition) -> LogId<u64> {
    LogId::new(
        CommittedLeaderId::new(position.term, position.leader),
        position.index,
    )
}

fn stored_vote(vote: &Vote<u64>) -> StoredVote {
    StoredVote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

fn vote_of(vote: StoredVote) -> Vote<u64> {
    if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    }
}

fn stored_membership(membership: &Membership<u64, QuorumMember>) -> StoredMembership {
    StoredMembership {
        voter_sets: membership.get_joint_config().clone(),
        nodes: membership
            .nodes()
            .map(|(node_id, node)| StoredNode {
                node_id: *node_id,
                address: node.address.clone(),
            })
            .collect(),
    }
}

fn membership_of(membership: &StoredMembership) -> Membership<u64, QuorumMember> {
    let nodes: BTreeMap<u64, QuorumMember> = membership
        .nodes
        .iter()
        .map(|node| {
            let address = node.address.clone();
            (node.node_id, QuorumMember { address })
        })
        .collect();
    Membership::new(membership.voter_sets.clone(), nodes)
}

fn stored_entry(entry: Entry<MetadataRaft>) -> StoredEntry {
    let payload = match entry.payload {
        EntryPayload::Blank => StoredPayload::Blank,
        EntryPayload::Normal(records) => StoredPayload::Records { records },
        EntryPayload::Membership(membership) => StoredPayload::Membership {
            membership: stored_membership(&membership),
        },
    };
    StoredEntry {
        position: position_of(&entry.log_id),
        payload,
    }
}

fn entry_of(stored: StoredEntry) -> Entry<MetadataRaft> {
    let payload = match stored.payload {
        StoredPayload::Blank => EntryPayload::Blank,
        StoredPayload::Records { records } => EntryPayload::Normal(records),
        StoredPayload::Membership { membership } => {
            EntryPayload::Membership(membership_of(&membership))
        }
    };
    Entry {
        log_id: log_id_of(stored.position),
        payload,
    }
}
