//! openraft's network over the internal listener: the client side
//! ([`RaftNetworkFactory`], [`RaftNetwork`]) sends Vote, AppendEntries and
//! InstallSnapshot requests to peers through [`PeerClient`]s, one per peer shared by
//! every replication stream and election; the server side ([`RaftService`]) answers
//! them from the local Raft.
//!
//! Snapshots travel in chunks (openraft's default `full_snapshot`, over
//! `install_snapshot`), as the snapshot data is an in-memory cursor.
//!
//! How failures reach openraft: a peer that cannot be connected to, or whose Raft is
//! stopping, is `Unreachable` (openraft backs off before trying again); a connection
//! lost during a call is a `Network` error (tried again at once); no answer within the
//! call's time to live is a `Timeout`; an AppendEntries too large for one frame is
//! `PayloadTooLarge`, so that openraft sends fewer entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    AppendEntriesAnswer, AppendEntriesMessage, Refusal, Reply, SnapshotChunkAnswer,
    SnapshotChunkMessage, VoteAnswer, VoteMessage,
};
use super::{MetadataRaft, QuorumMember};
use crate::internal::frame::{Frame, RESPONSE_BIT, kind};
use crate::internal::{CallError, InternalService, PeerClient, ServiceError};

/// Makes the network of each replication stream and election; peers' clients (and
/// their connections) are kept here and shared.
#[derive(Debug, Clone)]
pub struct Network {
    node_id: u64,
    connect_timeout: Duration,
    peers: Arc<Mutex<HashMap<u64, Arc<PeerClient>>>>,
}

impl Network {
    pub fn new(node_id: u64, connect_timeout: Duration) -> Self {
        Self {
            node_id,
            connect_timeout,
            peers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn peer(&self, target: u64, address: &str) -> Arc<PeerClient> {
        let mut peers = self.peers.lock().expect("peers lock poisoned");
        match peers.get(&target) {
            Some(peer) if peer.address() == address => peer.clone(),
            _ => {
                let peer = Arc::new(PeerClient::new(address.to_owned(), self.connect_timeout));
                peers.insert(target, peer.clone());
                peer
            }
        }
    }
}

impl RaftNetworkFactory<MetadataRaft> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &QuorumMember) -> PeerNetwork {
        PeerNetwork {
            node_id: self.node_id,
            target,
            peer: self.peer(target, &node.address),
        }
    }
}

/// Calls from this node to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    node_id: u64,
    target: u64,
    peer: Arc<PeerClient>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, QuorumMember, RaftError<u64, E>>>;

/// A call that got no usable answer.
#[derive(Debug)]
enum Failure {
    Call(CallError),
    Unreadable(String),
}

impl PeerNetwork {
    /// Sends `message` as a request of `kind` within the call's time to live and reads
    /// the answer.
    async fn exchange<M: Serialize, A: DeserializeOwned>(
        &self,
        kind: u8,
        message: &M,
        option: &RPCOption,
    ) -> Result<A, Failure> {
        let body = serde_json::to_vec(message).expect("quorum messages serialize");
        let answer = self
            .peer
            .call(kind, body, option.hard_ttl())
            .await
            .map_err(Failure::Call)?;
        serde_json::from_slice(&answer).map_err(|error| Failure::Unreadable(error.to_string()))
    }

    /// The openraft error that makes openraft retry a failed call in the right way.
    fn rpc_error<E: std::error::Error>(
        &self,
        failure: Failure,
        action: RPCTypes,
        option: &RPCOption,
    ) -> RPCError<u64, QuorumMember, RaftError<u64, E>> {
        match failure {
            Failure::Call(CallError::TimedOut { .. }) => RPCError::Timeout(Timeout {
                action,
                id: self.node_id,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            Failure::Call(error @ CallError::Unreachable { .. }) => {
                RPCError::Unreachable(Unreachable::new(&error))
            }
            Failure::Call(error @ (CallError::Disconnected { .. } | CallError::TooLarge(_))) => {
                RPCError::Network(NetworkError::new(&error))
            }
            Failure::Unreadable(reason) => {
                let error = AnyError::error(format!(
                    "peer {} at {} sent an unreadable answer: {reason}",
                    self.target,
                    self.peer.address()
                ));
                RPCError::Network(NetworkError::new(&error))
            }
        }
    }

    /// A refusal by the peer's Raft: it cannot serve now, so openraft backs off.
    fn unavailable<E: std::error::Error>(
        &self,
        refusal: &Refusal,
    ) -> RPCError<u64, QuorumMember, RaftError<u64, E>> {
        let error = AnyError::error(format!(
            "peer {} at {} refused: {refusal:?}",
            self.target,
            self.peer.address()
        ));
        RPCError::Unreachable(Unreachable::new(&error))
    }
}

impl RaftNetwork<MetadataRaft> for PeerNetwork {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let entry_count = request.entries.len() as u64;
        let message = AppendEntriesMessage::from_raft(request);
        let reply: Reply<AppendEntriesAnswer> = self
            .exchange(kind::RAFT_APPEND_ENTRIES, &message, &option)
            .await
            .map_err(|failure| match failure {
                // More entries than one frame holds: ask openraft for fewer.
                Failure::Call(CallError::TooLarge(_)) if entry_count > 1 => {
                    RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entry_count / 2))
                }
                failure => self.rpc_error(failure, RPCTypes::AppendEntries, &option),
            })?;
        match reply {
            Reply::Ok(answer) => Ok(answer.into_raft()),
            Reply::Refused(refusal) => Err(self.unavailable(&refusal)),
        }
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let message = SnapshotChunkMessage::from_raft(&request);
        let reply: Reply<SnapshotChunkAnswer> = self
            .exchange(kind::RAFT_INSTALL_SNAPSHOT, &message, &option)
            .await
            .map_err(|failure| self.rpc_error(failure, RPCTypes::InstallSnapshot, &option))?;
        match reply {
            Reply::Ok(answer) => Ok(answer.into_raft()),
            Reply::Refused(refusal) => match refusal.snapshot_mismatch() {
                Some(mismatch) => Err(RPCError::RemoteError(RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
                ))),
                None => Err(self.unavailable(&refusal)),
            },
        }
    }

    async fn vote(
        &mut self,
        request: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        let message = VoteMessage::from_raft(&request);
        let reply: Reply<VoteAnswer> = self
            .exchange(kind::RAFT_VOTE, &message, &option)
            .await
            .map_err(|failure| self.rpc_error(failure, RPCTypes::Vote, &option))?;
        match reply {
            Reply::Ok(answer) => Ok(answer.into_raft()),
            Reply::Refused(refusal) => Err(self.unavailable(&refusal)),
        }
    }
}

/// Answers the quorum's requests from the local Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<MetadataRaft>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RaftService")
            .finish_non_exhaustive()
    }
}

impl RaftService {
    pub fn new(raft: Raft<MetadataRaft>) -> Self {
        Self { raft }
    }

    async fn answer(&self, kind: u8, body: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let encoded = match kind {
            kind::RAFT_VOTE => {
                let message: VoteMessage = parse(kind, body)?;
                let reply = match self.raft.vote(message.into_raft()).await {
                    Ok(response) => Reply::Ok(VoteAnswer::from_raft(&response)),
                    Err(error) => Reply::Refused(Refusal::from_raft(&error)),
                };
                serde_json::to_vec(&reply)
            }
            kind::RAFT_APPEND_ENTRIES => {
                let message: AppendEntriesMessage = parse(kind, body)?;
                let reply = match self.raft.append_entries(message.into_raft()).await {
                    Ok(response) => Reply::Ok(AppendEntriesAnswer::from_raft(&response)),
                    Err(error) => Reply::Refused(Refusal::from_raft(&error)),
                };
                serde_json::to_vec(&reply)
            }
            kind::RAFT_INSTALL_SNAPSHOT => {
                let message: SnapshotChunkMessage = parse(kind, body)?;
                let request = message
                    .into_raft()
                    .map_err(|reason| ServiceError::BadBody { kind, reason })?;
                let reply = match self.raft.install_snapshot(request).await {
                    Ok(response) => Reply::Ok(SnapshotChunkAnswer::from_raft(&response)),
                    Err(error) => Reply::Refused(Refusal::from_snapshot_error(&error)),
                };
                serde_json::to_vec(&reply)
            }
            kind => return Err(ServiceError::UnknownKind { kind }),
        };
        Ok(encoded.expect("quorum messages serialize"))
    }
}

fn parse<M: DeserializeOwned>(kind: u8, body: &[u8]) -> Result<M, ServiceError> {
    serde_json::from_slice(body).map_err(|error| ServiceError::BadBody {
        kind,
        reason: error.to_string(),
    })
}

impl InternalService for RaftService {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        let body = self.answer(request.kind, &request.body).await?;
        Ok(Frame {
            kind: request.kind | RESPONSE_BIT,
            request_id: request.request_id,
            body,
        })
    }
}
