//! The admin HTTP API: JSON resources under `/v1`, health probes, Prometheus metrics
//! and the OpenAPI document that describes all of them.
//!
//! | route | module |
//! |---|---|
//! | `GET /v1/cluster`, `GET /v1/brokers` | [`cluster`] |
//! | `GET/POST /v1/topics`, `GET/DELETE /v1/topics/{name}`, `PATCH /v1/topics/{name}/config` | [`topics`] |
//! | `GET /v1/topics/{name}/partitions/{partition}/records` | [`records`] |
//! | `POST /v1/topics/{name}/partitions/{partition}/recover` | [`recovery`] |
//! | `GET /v1/groups`, `GET /v1/groups/{id}` | [`groups`] |
//! | `GET /healthz`, `GET /readyz` | [`health`] |
//! | `GET /metrics` | [`prometheus`] |
//! | `GET /openapi.json` | [`openapi`] |
//!
//! Supporting modules: [`error`] (the one error shape), [`extract`] (extractors that
//! use it), [`json`] (JSON read the way the schema describes it), [`state`] (the
//! handles of the broker's services, once they exist), [`listener`] (connection limits), [`topic_config`] (topic
//! config as typed JSON).
//!
//! The server starts before the broker has opened its storage and stops on the broker's
//! shutdown signal: it stops accepting, lets requests in flight finish (up to the
//! shutdown timeout) and closes idle connections.

pub mod cluster;
pub mod error;
pub mod extract;
pub mod groups;
pub mod health;
pub mod json;
pub mod listener;
pub mod openapi;
pub mod prometheus;
pub mod records;
pub mod recovery;
pub mod state;
pub mod topic_config;
pub mod topics;

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use state::HttpState;

/// Largest request body accepted; larger ones get 413. Admin bodies are a topic
/// definition or a few config keys, far below this.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 << 10;

/// Every documented route. The `#[utoipa::path]` attribute of each handler gives both
/// its route here and its entry in the OpenAPI document.
fn api_router() -> OpenApiRouter<HttpState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(cluster::get_cluster))
        .routes(routes!(cluster::list_brokers))
        .routes(routes!(topics::list_topics, topics::create_topic))
        .routes(routes!(topics::get_topic, topics::delete_topic))
        .routes(routes!(topics::alter_topic_config))
        .routes(routes!(records::peek_records))
        .routes(routes!(recovery::recover_partition))
        .routes(routes!(groups::list_groups))
        .routes(routes!(groups::get_group))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(prometheus::metrics))
        .routes(routes!(openapi::openapi_json))
}

/// The API's router, with JSON errors for unknown routes and methods.
pub fn router(state: HttpState) -> Router {
    let (router, _) = api_router().split_for_parts();
    router
        // Applies to the routes above, so it must come after them.
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::route_not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(probes_only))
        .with_state(state)
}

/// The health probes, the only routes served on a connection kept for them.
const PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// On a connection accepted beyond the connection limit (see [`listener`]), refuses
/// every route but the health probes.
async fn probes_only(request: Request, next: Next) -> Response {
    let kind = request
        .extensions()
        .get::<ConnectInfo<listener::ConnectionKind>>()
        .map(|ConnectInfo(kind)| *kind);
    if kind == Some(listener::ConnectionKind::ProbesOnly)
        && !PROBE_PATHS.contains(&request.uri().path())
    {
        return error::ApiError::new(
            error::ErrorCode::TooManyConnections,
            format!(
                "{} HTTP connections are open; this one is served the health probes only",
                listener::HTTP_CONNECTIONS_MAX
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves the API on `listener` until `shutdown` turns true (or its sender is dropped),
/// then waits up to `shutdown_timeout` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: watch::Receiver<bool>,
    shutdown_timeout: Duration,
) {
    let listener = listener::LimitedListener::new(
        listener,
        listener::HTTP_CONNECTIONS_MAX,
        listener::HTTP_PROBE_CONNECTIONS_MAX,
        listener::Timeouts::default(),
    );
    let mut stop = shutdown.clone();
    let service = router(state).into_make_service_with_connect_info::<listener::ConnectionKind>();
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _stopped = stop.wait_for(|stop| *stop).await;
        })
        .into_future();
    let mut stop = shutdown;
    let deadline = async move {
        // The borrow `wait_for` returns must not be held across the sleep.
        drop(stop.wait_for(|stop| *stop).await);
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        result = server => if let Err(error) = result {
            tracing::error!(%error, "the HTTP server failed");
        },
        () = deadline => {
            tracing::warn!("shutdown timeout: leaving HTTP requests in flight to finish on their own");
        }
    }
}
