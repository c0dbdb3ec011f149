//! `GET /metrics`: every metric in the Prometheus text exposition format (see
//! [`crate::metrics`] and `docs/metrics.md`). It answers before the broker is ready,
//! so that a slow recovery can be watched.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::state::HttpState;

/// The content type of the Prometheus text format, version 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = OK, description = "Every metric in the Prometheus text format 0.0.4.",
            content_type = "text/plain", body = String),
        (status = INTERNAL_SERVER_ERROR, description = "Rendering failed.", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<HttpState>) -> Result<impl IntoResponse, ApiError> {
    let sampled = match state.handles() {
        Some(api) => Some((
            api.metadata_log.status().await,
            api.partitions.metadata().current(),
        )),
        None => None,
    };
    // Sampling takes each partition log's lock in turn; with many partitions that is
    // work to keep off the runtime's worker threads.
    let text = tokio::task::spawn_blocking(move || {
        let sources = state.handles().zip(sampled.as_ref());
        crate::metrics::render(sources.map(|(api, (quorum, metadata))| {
            crate::metrics::ScrapeSources {
                started_at: api.started_at,
                logs: api.partitions.logs(),
                groups: &api.groups,
                quorum,
                metadata,
                replicas: api.partitions.replicas(),
            }
        }))
    })
    .await
    .map_err(|error| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("rendering metrics failed: {error}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)], text))
}
