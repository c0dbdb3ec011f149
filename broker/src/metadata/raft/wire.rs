//! The metadata quorum's messages as they travel in internal-listener frames: Fjord's
//! own forms of openraft's Vote, AppendEntries and InstallSnapshot requests and their
//! answers, serialized as JSON. Like the stored forms, they do not change when openraft
//! changes how it represents these in memory.
//!
//! Every answer is a [`Reply`]: the response, or a [`Refusal`] when the peer's Raft
//! could not handle the request (it is stopping, or its storage failed) or a snapshot
//! chunk arrived out of order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{SnapshotMeta, SnapshotSegmentId, StoredMembership as RaftMembership};
use serde::{Deserialize, Serialize};

use super::stored::{LogPosition, StoredEntry, StoredMembership, StoredVote};
use super::{
    MetadataRaft, QuorumMember, entry_of, log_id_of, membership_of, position_of, stored_entry,
    stored_membership, stored_vote, vote_of,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteMessage {
    pub vote: StoredVote,
    pub last_log: Option<LogPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteAnswer {
    pub vote: StoredVote,
    pub granted: bool,
    pub last_log: Option<LogPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendEntriesMessage {
    pub vote: StoredVote,
    pub previous: Option<LogPosition>,
    pub entries: Vec<StoredEntry>,
    pub leader_committed: Option<LogPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum AppendEntriesAnswer {
    Success,
    /// Only entries up to `matched` were accepted.
    PartialSuccess {
        matched: Option<LogPosition>,
    },
    /// `previous` is not in the follower's log.
    Conflict,
    /// The follower has seen a newer vote.
    HigherVote {
        vote: StoredVote,
    },
}

/// One chunk of a snapshot; the chunk with `done` installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotChunkMessage {
    pub vote: StoredVote,
    pub snapshot_id: String,
    pub last_applied: Option<LogPosition>,
    pub membership_position: Option<LogPosition>,
    pub membership: StoredMembership,
    pub offset: u64,
    /// The chunk's bytes, base64.
    pub data: String,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotChunkAnswer {
    pub vote: StoredVote,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply<T> {
    Ok(T),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case", deny_unknown_fields)]
pub enum Refusal {
    /// The peer's Raft is stopping or has failed (`message` says how).
    Unavailable { message: String },
    /// A snapshot chunk did not follow the previous one: the leader starts over.
    SnapshotMismatch {
        expected_id: String,
        expected_offset: u64,
        received_id: String,
        received_offset: u64,
    },
}

impl VoteMessage {
    pub fn from_raft(request: &VoteRequest<u64>) -> Self {
        Self {
            vote: stored_vote(&request.vote),
            last_log: request.last_log_id.as_ref().map(position_of),
        }
    }

    pub fn into_raft(self) -> VoteRequest<u64> {
        VoteRequest::new(vote_of(self.vote), self.last_log.map(log_id_of))
    }
}

impl VoteAnswer {
    pub fn from_raft(response: &VoteResponse<u64>) -> Self {
        Self {
            vote: stored_vote(&response.vote),
            granted: response.vote_granted,
            last_log: response.last_log_id.as_ref().map(position_of),
        }
    }

    pub fn into_raft(self) -> VoteResponse<u64> {
        VoteResponse::new(
            vote_of(self.vote),
            self.last_log.map(log_id_of),
            self.granted,
        )
    }
}

impl AppendEntriesMessage {
    pub fn from_raft(request: AppendEntriesRequest<MetadataRaft>) -> Self {
        Self {
            vote: stored_vote(&request.vote),
            previous: request.prev_log_id.as_ref().map(position_of),
            entries: request.entries.into_iter().map(stored_entry).collect(),
            leader_committed: request.leader_commit.as_ref().map(position_of),
        }
    }

    pub fn into_raft(self) -> AppendEntriesRequest<MetadataRaft> {
        AppendEntriesRequest {
            vote: vote_of(self.vote),
            prev_log_id: self.previous.map(log_id_of),
            entries: self.entries.into_iter().map(entry_of).collect(),
            leader_commit: self.leader_committed.map(log_id_of),
        }
    }
}

impl AppendEntriesAnswer {
    pub fn from_raft(response: &AppendEntriesResponse<u64>) -> Self {
        match response {
            AppendEntriesResponse::Success => Self::Success,
            AppendEntriesResponse::PartialSuccess(matched) => Self::PartialSuccess {
                matched: matched.as_ref().map(position_of),
            },
            AppendEntriesResponse::Conflict => Self::Conflict,
            AppendEntriesResponse::HigherVote(vote) => Self::HigherVote {
                vote: stored_vote(vote),
            },
        }
    }

    pub fn into_raft(self) -> AppendEntriesResponse<u64> {
        match self {
            Self::Success => AppendEntriesResponse::Success,
            Self::PartialSuccess { matched } => {
                AppendEntriesResponse::PartialSuccess(matched.map(log_id_of))
            }
            Self::Conflict => AppendEntriesResponse::Conflict,
            Self::HigherVote { vote } => AppendEntriesResponse::HigherVote(vote_of(vote)),
        }
    }
}

impl SnapshotChunkMessage {
    pub fn from_raft(request: &InstallSnapshotRequest<MetadataRaft>) -> Self {
        let meta = &request.meta;
        Self {
            vote: stored_vote(&request.vote),
            snapshot_id: meta.snapshot_id.clone(),
            last_applied: meta.last_log_id.as_ref().map(position_of),
            membership_position: meta.last_membership.log_id().as_ref().map(position_of),
            membership: stored_membership(meta.last_membership.membership()),
            offset: request.offset,
            data: BASE64.encode(&request.data),
            done: request.done,
        }
    }

    /// Fails when `data` is not base64.
    pub fn into_raft(self) -> Result<InstallSnapshotRequest<MetadataRaft>, String> {
        let data = BASE64
            .decode(&self.data)
            .map_err(|error| format!("snapshot chunk data is not base64: {error}"))?;
        let meta: SnapshotMeta<u64, QuorumMember> = SnapshotMeta {
            last_log_id: self.last_applied.map(log_id_of),
            last_membership: RaftMembership::new(
                self.membership_position.map(log_id_of),
                membership_of(&self.membership),
            ),
            snapshot_id: self.snapshot_id,
        };
        Ok(InstallSnapshotRequest {
            vote: vote_of(self.vote),
            meta,
            offset: self.offset,
            data,
            done: self.done,
        })
    }
}

impl SnapshotChunkAnswer {
    pub fn from_raft(response: &InstallSnapshotResponse<u64>) -> Self {
        Self {
            vote: stored_vote(&response.vote),
        }
    }

    pub fn into_raft(self) -> InstallSnapshotResponse<u64> {
        InstallSnapshotResponse {
            vote: vote_of(self.vote),
        }
    }
}

impl Refusal {
    pub fn from_raft<E: std::fmt::Display>(error: &RaftError<u64, E>) -> Self {
        Self::Unavailable {
            message: error.to_string(),
        }
    }

    pub fn from_snapshot_error(error: &RaftError<u64, InstallSnapshotError>) -> Self {
        match error {
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)) => {
                Self::SnapshotMismatch {
                    expected_id: mismatch.expect.id.clone(),
                    expected_offset: mismatch.expect.offset,
                    received_id: mismatch.got.id.clone(),
                    received_offset: mismatch.got.offset,
                }
            }
            RaftError::Fatal(_) => Self::from_raft(error),
        }
    }

    /// The snapshot mismatch this refusal reports, if it is one.
    pub fn snapshot_mismatch(&self) -> Option<SnapshotMismatch> {
        match self {
            Self::SnapshotMismatch {
                expected_id,
                expected_offset,
                received_id,
                received_offset,
            } => Some(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: expected_id.clone(),
                    offset: *expected_offset,
                },
                got: SnapshotSegmentId {
                    id: received_id.clone(),
                    offset: *received_offset,
                },
            }),
            Self::Unavailable { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::metadata::raft::stored::{StoredNode, StoredPayload};
    use crate::metadata::records::MetadataRecord;

    fn position(term: u64, index: u64) -> LogPosition {
        LogPosition {
            term,
            leader: 2,
            index,
        }
    }

    fn vote() -> StoredVote {
        StoredVote {
            term: 3,
            node_id: 2,
            committed: true,
        }
    }

    fn membership() -> StoredMembership {
        StoredMembership {
            voter_sets: vec![BTreeSet::from([1, 2, 3])],
            nodes: (1..=3)
                .map(|node_id| StoredNode {
                    node_id,
                    address: format!("127.0.0.1:9{node_id}94"),
                })
                .collect(),
        }
    }

    /// Through JSON, as the message travels.
    fn travel<M: Serialize + DeserializeOwned>(message: &M) -> M {
        serde_json::from_slice(&serde_json::to_vec(message).unwrap()).unwrap()
    }

    /// Every message comes out of openraft's form as it went in, after the trip.
    #[test]
    fn messages_survive_the_trip_through_openraft_forms() {
        let append = AppendEntriesMessage {
            vote: vote(),
            previous: Some(position(2, 4)),
            entries: vec![
                StoredEntry {
                    position: position(3, 5),
                    payload: StoredPayload::Blank,
                },
                StoredEntry {
                    position: position(3, 6),
                    payload: StoredPayload::Membership {
                        membership: membership(),
                    },
                },
                StoredEntry {
                    position: position(3, 7),
                    payload: StoredPayload::Records {
                        records: vec![MetadataRecord::ClusterInitialized {
                            cluster_id: "c".to_owned(),
                        }],
                    },
                },
            ],
            leader_committed: Some(position(3, 5)),
        };
        assert_eq!(
            AppendEntriesMessage::from_raft(travel(&append).into_raft()),
            append
        );
        for answer in [
            AppendEntriesAnswer::Success,
            AppendEntriesAnswer::PartialSuccess {
                matched: Some(position(3, 6)),
            },
            AppendEntriesAnswer::Conflict,
            AppendEntriesAnswer::HigherVote { vote: vote() },
        ] {
            assert_eq!(
                AppendEntriesAnswer::from_raft(&travel(&answer).into_raft()),
                answer
            );
        }
        let request = VoteMessage {
            vote: StoredVote {
                committed: false,
                ..vote()
            },
            last_log: Some(position(2, 9)),
        };
        assert_eq!(
            VoteMessage::from_raft(&travel(&request).into_raft()),
            request
        );
        let answer = VoteAnswer {
            vote: vote(),
            granted: true,
            last_log: None,
        };
        assert_eq!(VoteAnswer::from_raft(&travel(&answer).into_raft()), answer);
        let chunk = SnapshotChunkMessage {
            vote: vote(),
            snapshot_id: "3-2-7".to_owned(),
            last_applied: Some(position(3, 7)),
            membership_position: Some(position(3, 6)),
            membership: membership(),
            offset: 1024,
            data: BASE64.encode([0u8, 255, 7]),
            done: false,
        };
        let request = travel(&chunk).into_raft().unwrap();
        assert_eq!(request.data, vec![0, 255, 7]);
        assert_eq!(SnapshotChunkMessage::from_raft(&request), chunk);
    }

    /// The bodies of docs/protocol.md's worked example (section 10.3) are what a vote
    /// and its answer serialize to.
    #[test]
    fn the_documented_vote_bodies_are_what_the_node_sends() {
        const DOCUMENT: &str = include_str!("../../../../docs/protocol.md");
        let position = LogPosition {
            term: 1,
            leader: 1,
            index: 3,
        };
        let vote = StoredVote {
            term: 2,
            node_id: 1,
            committed: false,
        };
        let request = VoteMessage {
            vote,
            last_log: Some(position),
        };
        let answer = Reply::<VoteAnswer>::Ok(VoteAnswer {
            vote,
            granted: true,
            last_log: Some(position),
        });
        for body in [
            serde_json::to_string(&request).unwrap(),
            serde_json::to_string(&answer).unwrap(),
        ] {
            assert!(DOCUMENT.contains(&format!("`{body}`")), "{body}");
        }
    }

    /// A chunk whose data is not base64 is a bad request, not a crash.
    #[test]
    fn snapshot_chunks_that_are_not_base64_are_refused() {
        let chunk = SnapshotChunkMessage {
            vote: vote(),
            snapshot_id: "s".to_owned(),
            last_applied: None,
            membership_position: None,
            membership: StoredMembership::default(),
            offset: 0,
            data: "not base64!".to_owned(),
            done: true,
        };
        assert!(chunk.into_raft().is_err());
    }

    /// A mismatch refusal carries both segments back to the leader (which restarts the
    /// transfer on it); other refusals are not mismatches.
    #[test]
    fn a_snapshot_mismatch_keeps_both_segments() {
        let refusal = Refusal::SnapshotMismatch {
            expected_id: "a".to_owned(),
            expected_offset: 10,
            received_id: "a".to_owned(),
            received_offset: 20,
        };
        let mismatch = travel(&refusal).snapshot_mismatch().unwrap();
        assert_eq!(
            (mismatch.expect.id.as_str(), mismatch.expect.offset),
            ("a", 10)
        );
        assert_eq!((mismatch.got.id.as_str(), mismatch.got.offset), ("a", 20));
        let unavailable = Refusal::Unavailable {
            message: "raft stopped".to_owned(),
        };
        assert_eq!(travel(&unavailable).snapshot_mismatch(), None);
    }
}
