//! Errors of the admin HTTP API.
//!
//! Every failure, including a bad route, a bad method and input axum refuses before a
//! handler runs, is answered with the same JSON shape and the status that fits it:
//!
//! ```text
//! {"error": {"code": "topic_not_found", "message": "topic 'orders' does not exist"}}
//! ```
//!
//! `code` is a stable, machine-readable [`ErrorCode`]; `message` is for people and may
//! change. Internal error types convert here, at the edge, and nowhere else.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::REQUEST_BODY_BYTES_MAX;
use crate::metadata::TopicError;
use crate::metadata::metadata_log::ProposeError;
use crate::storage::StorageError;

/// The stable error codes of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body, a path parameter or the query cannot be read (bad JSON, wrong
    /// types, unknown fields, a value out of range).
    InvalidRequest,
    /// 400: the topic name breaks the naming rules.
    InvalidTopicName,
    /// 400: the partition count is out of range.
    InvalidPartitions,
    /// 400: the replication factor is below 1.
    InvalidReplicationFactor,
    /// 400: an unknown config key or an invalid value.
    InvalidConfig,
    /// 403: the topic belongs to the broker (such as `__consumer_offsets`) and cannot
    /// be deleted.
    TopicProtected,
    /// 404: no such route.
    RouteNotFound,
    /// 404: no such topic.
    TopicNotFound,
    /// 404: the topic has no such partition.
    PartitionNotFound,
    /// 404: the partition's log holds no records at that offset (deleted by retention,
    /// or not written yet).
    OffsetOutOfRange,
    /// 404: this broker coordinates no consumer group of that id.
    GroupNotFound,
    /// 405: the route exists but not with this method (the `Allow` header lists those
    /// it has).
    MethodNotAllowed,
    /// 409: a topic of that name exists.
    TopicAlreadyExists,
    /// 409: the replication factor is larger than the number of brokers.
    NotEnoughBrokers,
    /// 409: the broker holds as many partitions as its budget (`max_partitions`, or
    /// the open-file limit) allows.
    PartitionLimitReached,
    /// 409: each config value is valid, but together with the others and the broker's
    /// defaults and limits they cannot work (e.g. `max.message.bytes` above
    /// `segment.bytes`).
    InconsistentConfig,
    /// 409: recovery was asked for a partition that is online.
    PartitionNotOffline,
    /// 409: the recovery action does not fit what is wrong with the partition
    /// (`accept_loss` needs a lost directory; `truncate` and `skip_gap` need one there).
    RecoveryNotApplicable,
    /// 413: the request body is larger than the API accepts.
    PayloadTooLarge,
    /// 415: the request body is not `application/json`.
    UnsupportedMediaType,
    /// 421: this broker does not lead the partition; ask its leader.
    NotLeader,
    /// 503: the broker is starting, recovering or shutting down.
    NotReady,
    /// 503: the metadata quorum did not apply the change (no leader, or not committed
    /// within its timeout); retry later. A single broker leads its quorum of one, and
    /// sees this only when its metadata storage is slower than that timeout (10 s).
    QuorumUnavailable,
    /// 503: every HTTP connection slot is taken; this connection, kept for the health
    /// probes, is served `/healthz` and `/readyz` only.
    TooManyConnections,
    /// 500: the storage layer failed.
    StorageError,
    /// 500: a bug; the message says what failed.
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest
            | Self::InvalidTopicName
            | Self::InvalidPartitions
            | Self::InvalidReplicationFactor
            | Self::InvalidConfig => StatusCode::BAD_REQUEST,
            Self::RouteNotFound
            | Self::TopicNotFound
            | Self::PartitionNotFound
            | Self::OffsetOutOfRange
            | Self::GroupNotFound => StatusCode::NOT_FOUND,
            Self::TopicProtected => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TopicAlreadyExists
            | Self::NotEnoughBrokers
            | Self::PartitionLimitReached
            | Self::InconsistentConfig
            | Self::PartitionNotOffline
            | Self::RecoveryNotApplicable => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotLeader => StatusCode::MISDIRECTED_REQUEST,
            Self::NotReady | Self::TooManyConnections | Self::QuorumUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::StorageError | Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// A failed request: its code (which decides the status) and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(
            self.code,
            ErrorCode::NotReady | ErrorCode::TooManyConnections
        ) {
            // Expected while starting or stopping (probes poll it), or under load: not
            // an error of the broker.
            tracing::debug!(code = ?self.code, message = %self.message, "HTTP request refused");
        } else if self.code.status().is_server_error() {
            tracing::error!(code = ?self.code, message = %self.message, "HTTP request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.code.status(), Json(body)).into_response()
    }
}

impl From<TopicError> for ApiError {
    fn from(error: TopicError) -> Self {
        let code = match &error {
            TopicError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            TopicError::UnknownTopic(_) => ErrorCode::TopicNotFound,
            TopicError::Protected(_) => ErrorCode::TopicProtected,
            TopicError::InvalidName(_) => ErrorCode::InvalidTopicName,
            TopicError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
            TopicError::NotEnoughBrokers { .. } => ErrorCode::NotEnoughBrokers,
            TopicError::PartitionLimit { .. } => ErrorCode::PartitionLimitReached,
            TopicError::InvalidConfig(_) => ErrorCode::InvalidConfig,
            TopicError::InconsistentConfig(_) => ErrorCode::InconsistentConfig,
            TopicError::Storage(_) => ErrorCode::StorageError,
            // Only partition leaders propose in-sync set changes; no HTTP request does.
            TopicError::PartitionChangeRefused(_) | TopicError::StalePartitionState(_) => {
                ErrorCode::InvalidRequest
            }
            TopicError::Metadata(
                ProposeError::NotLeader { .. } | ProposeError::TimedOut { .. },
            )
            | TopicError::ControllerUnreachable { .. } => ErrorCode::QuorumUnavailable,
            TopicError::Metadata(ProposeError::ShutDown) => ErrorCode::NotReady,
            TopicError::Metadata(ProposeError::Failed(_)) => ErrorCode::StorageError,
        };
        Self::new(code, error.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        let code = match &error {
            StorageError::OffsetOutOfRange { .. } | StorageError::NonContiguous { .. } => {
                ErrorCode::OffsetOutOfRange
            }
            // The log was closed under the request: the topic was just deleted.
            StorageError::Closed(_) => ErrorCode::TopicNotFound,
            StorageError::Io { .. }
            | StorageError::Offline { .. }
            | StorageError::ReadOnly { .. }
            | StorageError::Corrupt { .. }
            | StorageError::NeedsRecovery { .. } => ErrorCode::StorageError,
        };
        Self::new(code, error.to_string())
    }
}

/// axum's rejections say 422 for JSON of the wrong shape; to this API any input it
/// cannot read is a 400, while a too large body and a wrong content type keep their
/// own statuses.
fn from_rejection(status: StatusCode, message: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {REQUEST_BODY_BYTES_MAX} bytes"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(ErrorCode::UnsupportedMediaType, message)
        }
        status if status.is_server_error() => ApiError::new(ErrorCode::InternalError, message),
        _ => ApiError::new(ErrorCode::InvalidRequest, message),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

/// The answer to a path no route matches.
pub async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

/// The answer to a route asked with a method it does not have; axum adds `Allow`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not support {method}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What rendering `error` logs at level ERROR.
    fn errors_logged(error: ApiError) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || drop(error.into_response()));
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    /// A 503 from the readiness probe (expected while starting) is not an error in the
    /// log; a storage failure still is.
    #[test]
    fn not_ready_is_not_logged_as_an_error() {
        let not_ready = ApiError::new(ErrorCode::NotReady, "not ready: recovering partition logs");
        assert_eq!(errors_logged(not_ready), "");
        let failed = ApiError::new(ErrorCode::StorageError, "disk on fire");
        assert!(errors_logged(failed).contains("disk on fire"));
    }

    /// Each way the metadata quorum can fail a change has its HTTP code and wire code,
    /// and keeps the quorum's message.
    #[test]
    fn quorum_failures_have_their_codes() {
        use fjord_protocol::ErrorCode as Wire;
        let timeout = std::time::Duration::from_secs(10);
        let cases = [
            (
                ProposeError::NotLeader {
                    node_id: 1,
                    leader: None,
                },
                ErrorCode::QuorumUnavailable,
                Wire::LeaderNotAvailable,
            ),
            (
                ProposeError::TimedOut { timeout },
                ErrorCode::QuorumUnavailable,
                Wire::RequestTimedOut,
            ),
            (
                ProposeError::ShutDown,
                ErrorCode::NotReady,
                Wire::BrokerShuttingDown,
            ),
            (
                ProposeError::Failed("disk on fire".into()),
                ErrorCode::StorageError,
                Wire::StorageError,
            ),
        ];
        for (error, http, wire) in cases {
            let message = error.to_string();
            let retriable = error.is_retriable();
            let error = TopicError::Metadata(error);
            assert_eq!(error.error_code(), wire, "{message}");
            assert_eq!(
                wire.is_retriable(),
                retriable || wire == Wire::BrokerShuttingDown
            );
            let api = ApiError::from(error);
            assert_eq!((api.code, api.message), (http, message));
        }
        assert_eq!(
            ErrorCode::QuorumUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
