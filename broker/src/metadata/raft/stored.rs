//! The forms in which the metadata quorum's log entries, vote and snapshot are stored:
//! Fjord's own types, serialized as JSON (like the metadata log) so that an operator can
//! read them, and independent of how openraft represents them in memory.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use crate::metadata::image::ImageSnapshot;
/// A position in the Raft log (openraft's `LogId`): the metadata log's position type.
pub use crate::metadata::position::LogPosition;
use crate::metadata::records::MetadataRecord;

/// One entry of the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEntry {
    pub position: LogPosition,
    pub payload: StoredPayload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoredPayload {
    /// Written by a new leader to commit its term; changes nothing.
    Blank,
    /// Metadata records applied together, in order.
    Records { records: Vec<MetadataRecord> },
    /// A change of the quorum's voters and learners.
    Membership { membership: StoredMembership },
}

/// The quorum's membership: one voter set, or two during a joint change, and the
/// address of every voter and learner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredMembership {
    pub voter_sets: Vec<BTreeSet<u64>>,
    /// By node id.
    pub nodes: Vec<StoredNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredNode {
    pub node_id: u64,
    pub address: String,
}

/// A vote: the term and the candidate this node voted for (or follows), and whether a
/// quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredVote {
    pub term: u64,
    pub node_id: u64,
    pub committed: bool,
}
