//! The cluster and its brokers (alive or fenced): `GET /v1/cluster` and
//! `GET /v1/brokers`, read from the current metadata image and, for the metadata quorum, from this broker's member.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Ready;
use crate::metadata::image::BrokerInfo;
use crate::metadata::metadata_log::{QuorumStatus, Role};

/// The cluster as this broker sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cluster {
    /// Chosen when the cluster's metadata log was created; stable across restarts.
    pub cluster_id: String,
    /// The node id of the active controller.
    pub controller_id: i32,
    /// Brokers registered in the metadata.
    pub broker_count: usize,
    /// Every registered broker, by node id, and whether it is fenced.
    pub brokers: Vec<BrokerNode>,
    /// This broker's version.
    pub version: String,
    /// The metadata quorum as this broker's member sees it.
    pub quorum: Quorum,
}

/// The metadata quorum, seen from this broker. Indexes are positions in the metadata
/// log; `null` is "none yet" (or, for a voter's match and lag, "known on the leader
/// only").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quorum {
    /// This broker's role: `leader`, `follower`, `candidate`, `learner` or `shut_down`.
    pub role: String,
    /// The node id of the leader, when one is known.
    pub leader: Option<i32>,
    /// The current term: it grows with every election.
    pub term: u64,
    /// The last entry in this member's log.
    pub last_log_index: Option<u64>,
    /// The last entry known to be on a majority of voters.
    pub committed_index: Option<u64>,
    /// The last entry applied to this broker's metadata image.
    pub applied_index: Option<u64>,
    /// The last entry the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// By node id.
    pub voters: Vec<Voter>,
    /// Broker-only nodes that follow the metadata without voting, by node id.
    pub learners: Vec<Voter>,
}

/// A voter of the metadata quorum.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Voter {
    pub node_id: i32,
    /// Its internal listener.
    pub address: String,
    /// The last entry known to be in its log.
    pub matched_index: Option<u64>,
    /// Entries of the leader's log it lacks.
    pub lag: Option<u64>,
}

impl From<QuorumStatus> for Quorum {
    fn from(status: QuorumStatus) -> Self {
        let role = match status.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::ShutDown => "shut_down",
        };
        Self {
            role: role.to_owned(),
            leader: status.leader,
            term: status.term,
            last_log_index: status.last_log_index,
            committed_index: status.committed_index,
            applied_index: status.applied_index,
            snapshot_index: status.snapshot_index,
            voters: members(&status, &status.voters),
            learners: members(&status, &status.learners),
        }
    }
}

fn members(status: &QuorumStatus, members: &[crate::metadata::raft::VoterStatus]) -> Vec<Voter> {
    members
        .iter()
        .map(|member| Voter {
            node_id: member.node_id,
            address: member.address.clone(),
            matched_index: member.matched_index,
            lag: status.lag(member),
        })
        .collect()
}

/// A registered broker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokerNode {
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub host: String,
    /// The port of the broker's client listener.
    pub port: u16,
    /// `host:port` given to clients of its external listener (`external_advertised`),
    /// if it has one.
    pub external_address: Option<String>,
    /// The rack it set, if any.
    pub rack: Option<String>,
    /// A fenced broker (its session expired, it has not caught up since it
    /// registered, or it shut down) leads nothing and takes no new replicas; `false`
    /// is alive.
    pub fenced: bool,
    /// The epoch of its current registration: one more with every process's
    /// registration (0 for a registration from before incarnations).
    pub broker_epoch: u64,
    /// The id the registered process drew at its start (the nil id for a
    /// registration from before incarnations).
    pub incarnation_id: String,
}

impl From<&BrokerInfo> for BrokerNode {
    fn from(broker: &BrokerInfo) -> Self {
        Self {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port: broker.port,
            external_address: broker.external.as_ref().map(ToString::to_string),
            rack: broker.rack.clone(),
            fenced: broker.fenced,
            broker_epoch: broker.broker_epoch,
            incarnation_id: broker.incarnation_id.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokerList {
    /// By node id.
    pub brokers: Vec<BrokerNode>,
}

/// The cluster's identity, controller, size, this broker's version and the metadata
/// quorum.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses((status = OK, body = Cluster))
)]
pub async fn get_cluster(Ready(api): Ready) -> Json<Cluster> {
    let image = api.partitions.metadata().current();
    let quorum = api.metadata_log.status().await;
    Json(Cluster {
        cluster_id: image.cluster_id.clone(),
        controller_id: image.controller_id,
        broker_count: image.brokers.len(),
        brokers: image.brokers.values().map(BrokerNode::from).collect(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        quorum: quorum.into(),
    })
}

/// Every registered broker.
#[utoipa::path(
    get,
    path = "/v1/brokers",
    tag = "cluster",
    responses((status = OK, body = BrokerList))
)]
pub async fn list_brokers(Ready(api): Ready) -> Json<BrokerList> {
    let image = api.partitions.metadata().current();
    Json(BrokerList {
        brokers: image.brokers.values().map(BrokerNode::from).collect(),
    })
}
