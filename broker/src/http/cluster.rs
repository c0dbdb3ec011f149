//! The cluster and its brokers: `GET /v1/cluster` and `GET /v1/brokers`, read from the
//! current metadata image.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Ready;

/// The cluster as this broker sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cluster {
    /// Chosen when the cluster's metadata log was created; stable across restarts.
    pub cluster_id: String,
    /// The node id of the active controller.
    pub controller_id: i32,
    /// Brokers registered in the metadata.
    pub broker_count: usize,
    /// This broker's version.
    pub version: String,
}

/// A registered broker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokerNode {
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub host: String,
    /// The port of the broker's client listener.
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokerList {
    /// By node id.
    pub brokers: Vec<BrokerNode>,
}

/// The cluster's identity, controller, size and this broker's version.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    responses((status = OK, body = Cluster))
)]
pub async fn get_cluster(Ready(api): Ready) -> Json<Cluster> {
    let image = api.partitions.metadata().current();
    Json(Cluster {
        cluster_id: image.cluster_id.clone(),
        controller_id: image.controller_id,
        broker_count: image.brokers.len(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
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
        brokers: image
            .brokers
            .values()
            .map(|broker| BrokerNode {
                node_id: broker.node_id,
                host: broker.host.clone(),
                port: broker.port,
            })
            .collect(),
    })
}
