//! Health probes: `GET /healthz` (the process is alive and serving HTTP) and
//! `GET /readyz` (the broker can serve clients: storage recovered, metadata loaded,
//! listeners bound). Orchestrators restart on the first and route traffic on the
//! second, so the first must not depend on anything the second waits for.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::state::HttpState;

/// The answer of a probe that passed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `alive` for `/healthz`, `ready` for `/readyz`.
    pub status: HealthStatus,
    /// `/readyz` only, and only when some are: partitions this broker cannot serve.
    /// The broker stays ready, because it serves every other partition; monitoring
    /// should alert on this list (or the `fjord_storage_offline_partitions` gauge).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offline_partitions: Vec<OfflinePartition>,
}

/// A partition this broker cannot serve, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfflinePartition {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Alive,
    Ready,
}

/// Liveness probe.
///
/// 200 whenever the process serves HTTP; it depends on nothing else.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = OK, description = "The process is alive.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Alive,
        offline_partitions: Vec::new(),
    })
}

/// Readiness probe.
///
/// 200 once storage is recovered, metadata loaded and every listener bound; 503 with
/// the reason before that and during shutdown. Offline partitions do not make the
/// broker unready (it serves all the others); they are listed in the answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = OK, description = "The broker is ready to serve clients.", body = Health),
        (status = SERVICE_UNAVAILABLE, description = "Not ready; the message says why.", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<HttpState>) -> Result<Json<Health>, ApiError> {
    match state.ready() {
        Ok(api) => Ok(Json(Health {
            status: HealthStatus::Ready,
            offline_partitions: api
                .partitions
                .logs()
                .offline_partitions()
                .into_iter()
                .map(|(partition, reason)| OfflinePartition {
                    topic: partition.topic,
                    partition: partition.partition,
                    reason,
                })
                .collect(),
        })),
        Err(reason) => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("not ready: {reason}"),
        )),
    }
}
