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
    })
}

/// Readiness probe.
///
/// 200 once storage is recovered, metadata loaded and every listener bound; 503 with
/// the reason before that and during shutdown.
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
    match state.ready_broker() {
        Ok(_) => Ok(Json(Health {
            status: HealthStatus::Ready,
        })),
        Err(reason) => Err(ApiError::new(
            ErrorCode::NotReady,
            format!("not ready: {reason}"),
        )),
    }
}
