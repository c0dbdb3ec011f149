//! A running member of the metadata quorum, in Fjord's terms: open it on a data
//! directory with its voters, propose batches of metadata records, read its status,
//! watch the applied image, shut it down.
//!
//! Behind it: openraft's Raft over the [`LogStore`] and [`ImageStateMachine`] files of
//! the directory, talking to the other voters through the internal listener
//! ([`network`](super::network)).
//!
//! - **Bootstrap.** Every voter of a new cluster initializes the quorum with the same
//!   voters; the first initialization that reaches a node wins, the others find it
//!   already initialized, which is fine. A directory that already holds a quorum is
//!   checked against the configured voters.
//! - **Proposals** go to the leader only (this step does not forward): elsewhere they
//!   fail at once with [`ProposeError::NotLeader`], naming the leader when known. A
//!   proposal returns when its entry is committed and applied here; without a majority
//!   it fails with [`ProposeError::TimedOut`] after the propose timeout.
//! - **Snapshots** are taken every `snapshot_every_entries` entries, and the log behind
//!   a snapshot is purged, so a voter that was away for longer installs the snapshot.
//! - **A quorum of one** (a single broker) does not wait an election timeout: it is
//!   made leader as it starts, and [`QuorumNode::start`] returns once it leads and has
//!   applied its whole log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::metrics::RaftServerMetrics;
use openraft::{ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::network::{Network, RaftService};
use super::state_machine::AppliedImage;
use super::{Applied, ImageStateMachine, LogStore, MetadataRaft, QuorumMember, RaftStoreError};
use crate::internal::{Dispatch, InternalListener, InternalService, RunningListener};
use crate::metadata::records::MetadataRecord;

/// The timing of the quorum. The defaults leave room for a loaded machine with slow
/// fsyncs: a follower waits several heartbeats before it calls an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumTiming {
    /// How often the leader sends heartbeats; also the time an AppendEntries call may take.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range calls an election.
    /// Voters also refuse votes for `election_timeout_max` after the last heartbeat (so a
    /// live leader is not deposed), so a leader that stops is replaced after
    /// `election_timeout_max` plus about one election timeout.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Connecting to a peer, at most (a call's own time to live may be shorter).
    pub connect_timeout: Duration,
    /// How long a proposal waits to be committed and applied.
    pub propose_timeout: Duration,
    /// How long sending and installing one snapshot chunk may take.
    pub snapshot_chunk_timeout: Duration,
}

impl Default for QuorumTiming {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(300),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(1000),
            propose_timeout: Duration::from_secs(10),
            snapshot_chunk_timeout: Duration::from_secs(10),
        }
    }
}

/// Entries between two snapshots, by default.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 1000;

/// What a quorum member needs to start.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id: 0 or more; one of the voters exactly when `voter`.
    pub node_id: i32,
    /// A voter, or a learner that follows the committed log without voting once the
    /// leader has added it ([`QuorumNode::add_learner`]).
    pub voter: bool,
    /// Where the Raft log, vote and snapshot files live.
    pub data_dir: PathBuf,
    /// Every voter's id and internal listener address (`host:port`).
    pub voters: BTreeMap<i32, String>,
    pub timing: QuorumTiming,
    pub snapshot_every_entries: u64,
}

/// Why a quorum member did not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] RaftStoreError),
    #[error(
        "the data directory {dir} holds a quorum of voters {stored:?}, not the configured {configured:?}"
    )]
    VotersDiffer {
        dir: PathBuf,
        stored: BTreeSet<i32>,
        configured: BTreeSet<i32>,
    },
    #[error("the internal listener cannot serve: {0}")]
    Listener(std::io::Error),
    #[error("Raft failed: {0}")]
    Raft(String),
}

/// The quorum's leader, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderHint {
    pub node_id: i32,
    pub address: String,
}

/// Why a proposal was not applied. [`ProposeError::is_retriable`] says whether trying
/// again (on the leader) may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// Proposals go to the leader; retry there (or later, when no leader is known).
    #[error("node {node_id} is not the metadata quorum's leader; {}", describe_leader(.leader))]
    NotLeader {
        node_id: i32,
        leader: Option<LeaderHint>,
    },
    /// Not committed within the timeout: a majority of voters is not reachable, or the
    /// leader is changing. The entry may still be committed later, so check the image
    /// before retrying a change that must not happen twice.
    #[error(
        "the metadata change was not committed within {timeout:?} (no majority of voters reachable?); it may still be applied later"
    )]
    TimedOut { timeout: Duration },
    #[error("the metadata quorum node is shut down")]
    ShutDown,
    /// The node's storage failed or Raft stopped with an error; not retriable here.
    #[error("the metadata quorum node failed: {0}")]
    Failed(String),
}

fn describe_leader(leader: &Option<LeaderHint>) -> String {
    match leader {
        Some(leader) => format!(
            "the leader is node {} at {}",
            leader.node_id, leader.address
        ),
        None => "no leader is known now (a majority of controller_quorum_voters must be running)"
            .to_owned(),
    }
}

impl ProposeError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::NotLeader { .. } | Self::TimedOut { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    ShutDown,
}

/// One voter, as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStatus {
    pub node_id: i32,
    pub address: String,
    /// The last log index known to be on the voter: known on the leader only.
    pub matched_index: Option<u64>,
}

/// The node's view of the quorum. Indexes are Raft log indexes; `None` is "none yet".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: i32,
    pub role: Role,
    pub leader: Option<i32>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The last entry the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The last entry removed from the log (it is in the snapshot).
    pub purged_index: Option<u64>,
    pub voters: Vec<VoterStatus>,
    /// Broker-only nodes that follow the log without voting.
    pub learners: Vec<VoterStatus>,
}

impl QuorumStatus {
    /// How many entries of the leader's log `voter` lacks; known on the leader only.
    pub fn lag(&self, voter: &VoterStatus) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        let last = self.last_log_index?;
        Some(last.saturating_sub(voter.matched_index.unwrap_or(0)))
    }
}

/// A running member of the metadata quorum.
pub struct QuorumNode {
    node_id: i32,
    raft: Raft<MetadataRaft>,
    /// Taken by the first [`QuorumNode::shutdown`].
    listener: Mutex<Option<RunningListener>>,
    image: watch::Receiver<AppliedImage>,
    propose_timeout: Duration,
    connect_timeout: Duration,
    /// Every voter's internal listener address.
    voters: BTreeMap<i32, String>,
}

impl std::fmt::Debug for QuorumNode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QuorumNode")
            .field("node_id", &self.node_id)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

fn raft_id(node_id: i32) -> u64 {
    u64::try_from(node_id).expect("node ids are validated not negative")
}

fn fjord_id(raft_id: u64) -> i32 {
    i32::try_from(raft_id).expect("quorum members have Fjord node ids")
}

impl QuorumConfig {
    fn validate(&self) -> Result<(), QuorumError> {
        let invalid = |reason: String| Err(QuorumError::Config(reason));
        if self.node_id < 0 {
            return invalid(format!("node id {} must be 0 or more", self.node_id));
        }
        if let Some(id) = self.voters.keys().find(|id| **id < 0) {
            return invalid(format!("voter id {id} must be 0 or more"));
        }
        if self.voters.contains_key(&self.node_id) != self.voter {
            return invalid(format!(
                "node {} is {}among the voters {:?}",
                self.node_id,
                if self.voter {
                    "not "
                } else {
                    "a learner, but "
                },
                self.voters.keys().collect::<Vec<_>>()
            ));
        }
        let timing = &self.timing;
        if timing.election_timeout_min >= timing.election_timeout_max {
            return invalid("election_timeout_min must be below election_timeout_max".into());
        }
        if timing.heartbeat_interval.is_zero()
            || timing.heartbeat_interval >= timing.election_timeout_min
        {
            return invalid(
                "heartbeat_interval must be above 0 and below election_timeout_min".into(),
            );
        }
        if self.snapshot_every_entries == 0 {
            return invalid("snapshot_every_entries must be at least 1".into());
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<Config, QuorumError> {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "fjord-metadata".to_owned(),
            heartbeat_interval: millis(self.timing.heartbeat_interval),
            election_timeout_min: millis(self.timing.election_timeout_min),
            election_timeout_max: millis(self.timing.election_timeout_max),
            install_snapshot_timeout: millis(self.timing.snapshot_chunk_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            // Purge everything a snapshot covers: metadata snapshots are small, and a
            // voter that missed those entries installs the snapshot instead.
            max_in_snapshot_log_to_keep: 0,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|error| QuorumError::Config(error.to_string()))
    }

    fn members(&self) -> BTreeMap<u64, QuorumMember> {
        self.voters
            .iter()
            .map(|(id, address)| {
                let address = address.clone();
                (raft_id(*id), QuorumMember { address })
            })
            .collect()
    }
}

impl QuorumNode {
    /// Opens the node's files, serves the quorum on `listener` (and the calls to the
    /// active controller, with `controller`) and joins the quorum, initializing it when
    /// this directory (and so the cluster) is new.
    pub async fn start<C: InternalService>(
        config: QuorumConfig,
        listener: InternalListener,
        controller: Arc<C>,
    ) -> Result<Self, QuorumError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.data_dir.clone();
        let (log_store, state_machine) =
            super::blocking(move || Ok((LogStore::open(&dir)?, ImageStateMachine::open(&dir)?)))
                .await?;
        let image = state_machine.subscribe();
        let id = raft_id(config.node_id);
        let network = Network::new(id, config.timing.connect_timeout);
        let raft = Raft::new(id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|error| QuorumError::Raft(error.to_string()))?;
        let service = Dispatch::new(Arc::new(RaftService::new(raft.clone())), controller);
        let listener = match listener.serve(Arc::new(service)) {
            Ok(listener) => listener,
            Err(error) => {
                stop_raft(&raft).await;
                return Err(QuorumError::Listener(error));
            }
        };
        let node = Self {
            node_id: config.node_id,
            raft,
            listener: Mutex::new(Some(listener)),
            image,
            propose_timeout: config.timing.propose_timeout,
            connect_timeout: config.timing.connect_timeout,
            voters: config.voters.clone(),
        };
        // A learner waits to be added by the leader; its membership comes in the log.
        let mut joined = if config.voter {
            node.join(&config).await
        } else {
            Ok(())
        };
        if joined.is_ok() && config.voter && config.voters.len() == 1 {
            joined = node.lead_alone().await;
        }
        if let Err(error) = joined {
            node.shutdown().await;
            return Err(error);
        }
        Ok(node)
    }

    /// Makes the only voter leader at once, rather than after an election timeout, and
    /// waits until it has applied its whole log, so that the image is complete when
    /// start-up reads it. A new quorum of one elects itself when initialized, and one
    /// whose vote was committed resumes as leader; only a node that stopped in the
    /// middle of its own election starts as a follower.
    async fn lead_alone(&self) -> Result<(), QuorumError> {
        let raft_failed = |error: String| QuorumError::Raft(error);
        let state = self
            .raft
            .with_raft_state(|state| state.server_state)
            .await
            .map_err(|error| raft_failed(error.to_string()))?;
        if matches!(state, ServerState::Follower | ServerState::Learner) {
            self.raft
                .trigger()
                .elect()
                .await
                .map_err(|error| raft_failed(error.to_string()))?;
        }
        self.raft
            .wait(Some(self.propose_timeout))
            .metrics(
                |metrics| {
                    metrics.state == ServerState::Leader
                        && metrics.last_applied.map(|applied| applied.index)
                            >= metrics.last_log_index
                },
                "a quorum of one leads and has applied its log",
            )
            .await
            .map_err(|error| {
                raft_failed(format!(
                    "the only voter did not become leader with its log applied: {error}"
                ))
            })?;
        Ok(())
    }

    /// Initializes the quorum if this node has never been part of one; otherwise checks
    /// that its voters are the configured ones.
    async fn join(&self, config: &QuorumConfig) -> Result<(), QuorumError> {
        let raft_failed = |error: String| QuorumError::Raft(error);
        match self.raft.initialize(config.members()).await {
            Ok(()) => {
                tracing::info!(node_id = self.node_id, "metadata quorum initialized");
                return Ok(());
            }
            // This node has voted or holds entries: it was initialized before, or
            // another voter reached it first.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(raft_failed(error.to_string())),
        }
        let stored: BTreeSet<i32> = self
            .raft
            .with_raft_state(|state| {
                let membership = state.membership_state.effective();
                membership.voter_ids().map(fjord_id).collect()
            })
            .await
            .map_err(|error| raft_failed(error.to_string()))?;
        let configured: BTreeSet<i32> = config.voters.keys().copied().collect();
        // No voters yet: a peer's vote request came first; the membership follows from
        // the leader.
        if !stored.is_empty() && stored != configured {
            return Err(QuorumError::VotersDiffer {
                dir: config.data_dir.clone(),
                stored,
                configured,
            });
        }
        Ok(())
    }

    /// The ids of the voters, in order.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.voters.keys().copied().collect()
    }

    /// The internal listener address of voter `node_id`.
    pub fn voter_address(&self, node_id: i32) -> Option<&str> {
        self.voters.get(&node_id).map(String::as_str)
    }

    /// How long a proposal may wait to be committed.
    pub fn propose_timeout(&self) -> Duration {
        self.propose_timeout
    }

    /// How long connecting to another voter may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Appends `records` as one entry and waits until it is committed and applied on
    /// this node (the leader), so that the returned position is in [`Self::image`].
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<Applied, ProposeError> {
        let write = self.raft.client_write(records);
        let result = match tokio::time::timeout(self.propose_timeout, write).await {
            Ok(result) => result,
            Err(_) => {
                return Err(ProposeError::TimedOut {
                    timeout: self.propose_timeout,
                });
            }
        };
        result
            .map(|response| response.data)
            .map_err(|error| self.write_error(error))
    }

    /// Makes `node_id`, a node that is not a voter, a learner at `address`: the leader
    /// replicates the log to it from then on. Nothing to do when it is one at that
    /// address already; its address is replaced when it moved. Works on the leader
    /// only (else `NotLeader`), and waits at most the propose timeout.
    pub async fn add_learner(&self, node_id: i32, address: String) -> Result<(), ProposeError> {
        if node_id < 0 || self.voters.contains_key(&node_id) {
            return Err(ProposeError::Failed(format!(
                "node {node_id} cannot be added as a learner: it is a voter, or not a node id"
            )));
        }
        let id = raft_id(node_id);
        let member = QuorumMember { address };
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        let changes = match known {
            Some(known) if known == member => return Ok(()),
            // Replacing the address of a learner is safe: it does not vote.
            Some(_) => ChangeMembers::SetNodes(BTreeMap::from([(id, member)])),
            None => ChangeMembers::AddNodes(BTreeMap::from([(id, member)])),
        };
        let change = self.raft.change_membership(changes, true);
        match tokio::time::timeout(self.propose_timeout, change).await {
            Ok(result) => result.map(|_| ()).map_err(|error| self.write_error(error)),
            Err(_) => Err(ProposeError::TimedOut {
                timeout: self.propose_timeout,
            }),
        }
    }

    /// A failed write (a proposal or a membership change) as the error callers see.
    fn write_error(
        &self,
        error: RaftError<u64, ClientWriteError<u64, QuorumMember>>,
    ) -> ProposeError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                let leader = forward.leader_id.map(|leader_id| LeaderHint {
                    node_id: fjord_id(leader_id),
                    address: forward
                        .leader_node
                        .map(|node| node.address)
                        .unwrap_or_default(),
                });
                ProposeError::NotLeader {
                    node_id: self.node_id,
                    leader,
                }
            }
            RaftError::APIError(error @ ClientWriteError::ChangeMembershipError(_)) => {
                ProposeError::Failed(error.to_string())
            }
            RaftError::Fatal(openraft::error::Fatal::Stopped) => ProposeError::ShutDown,
            RaftError::Fatal(error) => ProposeError::Failed(error.to_string()),
        }
    }

    /// The image as of the last applied entry, and every later one.
    pub fn image(&self) -> watch::Receiver<AppliedImage> {
        self.image.clone()
    }

    /// The node's view of the quorum now. Role, leader, term, log and snapshot positions
    /// come from openraft's metrics, which trail events by a moment; the committed and
    /// applied indexes are read from Raft and the state machine directly.
    pub async fn status(&self) -> QuorumStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let committed_index = self
            .raft
            .with_raft_state(|state| state.committed.as_ref().map(|log_id| log_id.index))
            .await
            .unwrap_or(None);
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::ShutDown,
        };
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<u64> = membership.voter_ids().collect();
        let (voters, learners): (Vec<_>, Vec<_>) = membership
            .nodes()
            .map(|(id, member)| VoterStatus {
                node_id: fjord_id(*id),
                address: member.address.clone(),
                matched_index: metrics.replication.as_ref().and_then(
                    |replication| match replication.get(id) {
                        Some(matched) => matched.as_ref().map(|log_id| log_id.index),
                        // The leader does not replicate to itself: it has its whole log.
                        None if *id == metrics.id => metrics.last_log_index,
                        None => None,
                    },
                ),
            })
            .partition(|member| voter_ids.contains(&raft_id(member.node_id)));
        QuorumStatus {
            node_id: self.node_id,
            role,
            leader: metrics.current_leader.map(fjord_id),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            committed_index,
            // From the state machine itself: openraft's metrics report an apply a moment
            // after it happened, later than a proposal's caller learns of it.
            applied_index: self.image.borrow().applied_index,
            snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
            purged_index: metrics.purged.map(|log_id| log_id.index),
            voters,
            learners,
        }
    }

    /// The leader as this node knows it, and its changes.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            metrics: self.raft.server_metrics(),
        }
    }

    /// Stops serving peers, then stops Raft (its files are closed when it ends). Later
    /// calls, and proposals, find it stopped.
    pub async fn shutdown(&self) {
        let listener = self.listener.lock().expect("listener lock poisoned").take();
        if let Some(listener) = listener {
            listener.shutdown().await;
            stop_raft(&self.raft).await;
        }
    }
}

/// Who leads the quorum, as one node sees it, and a way to wait for a change.
#[derive(Debug, Clone)]
pub struct Leadership {
    metrics: watch::Receiver<RaftServerMetrics<u64, QuorumMember>>,
}

impl Leadership {
    /// The leader now (`None` while there is none, or none is known).
    pub fn leader(&mut self) -> Option<i32> {
        self.metrics
            .borrow_and_update()
            .current_leader
            .map(fjord_id)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.metrics.borrow().vote.leader_id.term
    }

    /// Waits until the leader, the term or this node's role may have changed; `false`
    /// once the node has stopped.
    pub async fn changed(&mut self) -> bool {
        self.metrics.changed().await.is_ok()
    }
}

async fn stop_raft(raft: &Raft<MetadataRaft>) {
    if let Err(error) = raft.shutdown().await {
        tracing::warn!(%error, "metadata quorum Raft did not stop cleanly");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QuorumConfig {
        QuorumConfig {
            node_id: 2,
            voter: true,
            data_dir: PathBuf::from("unused"),
            voters: (1..=3)
                .map(|id| (id, format!("127.0.0.1:9{id}94")))
                .collect(),
            timing: QuorumTiming::default(),
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        }
    }

    fn refusal(config: QuorumConfig) -> String {
        match config.validate() {
            Err(QuorumError::Config(reason)) => reason,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    /// The default timing passes openraft's own checks, and snapshots purge the log.
    #[test]
    fn the_defaults_are_valid_for_openraft() {
        config().validate().unwrap();
        let raft = config().raft_config().unwrap();
        assert_eq!(raft.heartbeat_interval, 300);
        assert_eq!(raft.max_in_snapshot_log_to_keep, 0);
    }

    /// Each configuration mistake is refused with a message that names it.
    #[test]
    fn nonsense_is_refused_with_the_reason() {
        let mut not_a_voter = config();
        not_a_voter.node_id = 4;
        assert_eq!(
            refusal(not_a_voter),
            "node 4 is not among the voters [1, 2, 3]"
        );
        let mut negative = config();
        negative.node_id = -1;
        assert_eq!(refusal(negative), "node id -1 must be 0 or more");
        let mut negative_voter = config();
        negative_voter.voters.insert(-3, "127.0.0.1:1".to_owned());
        assert_eq!(refusal(negative_voter), "voter id -3 must be 0 or more");
        let mut elections = config();
        elections.timing.election_timeout_max = elections.timing.election_timeout_min;
        assert_eq!(
            refusal(elections),
            "election_timeout_min must be below election_timeout_max"
        );
        let mut heartbeat = config();
        heartbeat.timing.heartbeat_interval = heartbeat.timing.election_timeout_min;
        assert_eq!(
            refusal(heartbeat),
            "heartbeat_interval must be above 0 and below election_timeout_min"
        );
        let mut snapshots = config();
        snapshots.snapshot_every_entries = 0;
        assert_eq!(
            refusal(snapshots),
            "snapshot_every_entries must be at least 1"
        );
    }

    /// Proposal errors name the leader to go to, and say which are worth retrying.
    #[test]
    fn errors_say_what_to_do() {
        let hint = LeaderHint {
            node_id: 3,
            address: "127.0.0.1:9394".to_owned(),
        };
        let not_leader = ProposeError::NotLeader {
            node_id: 2,
            leader: Some(hint),
        };
        assert_eq!(
            not_leader.to_string(),
            "node 2 is not the metadata quorum's leader; the leader is node 3 at 127.0.0.1:9394"
        );
        assert!(not_leader.is_retriable());
        assert!(!ProposeError::ShutDown.is_retriable());
        assert!(
            ProposeError::TimedOut {
                timeout: Duration::from_secs(1)
            }
            .is_retriable()
        );
    }
}
