//! Positions in the metadata log. The image records the position of the last entry it
//! applied, so that two brokers can tell whether they hold the same metadata, and so
//! that a snapshot says where the log continues after it.
//!
//! The shape is the Raft log's (the metadata quorum's adapter converts it to and from
//! openraft's `LogId`), but nothing here depends on Raft: the local metadata log of a
//! single broker has no terms and uses term 0.

use serde::{Deserialize, Serialize};

/// A position in the metadata log: the entry's index and the term and node of the
/// leader that proposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPosition {
    pub term: u64,
    pub leader: u64,
    pub index: u64,
}

impl LogPosition {
    /// Whether an entry at this position may be applied after one at `previous`: a
    /// log's indexes only grow and its terms never go back.
    pub fn follows(&self, previous: &LogPosition) -> bool {
        self.index > previous.index && self.term >= previous.term
    }
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "index {} (term {}, leader {})",
            self.index, self.term, self.leader
        )
    }
}
