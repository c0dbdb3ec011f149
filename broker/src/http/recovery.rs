//! Operator recovery of an offline partition:
//! `POST /v1/topics/{name}/partitions/{partition}/recover`.
//!
//! A partition goes offline at start-up when data below its recovery point is missing
//! or damaged, or when its directory is gone although it held data; the broker deletes
//! nothing on its own. The body says what to do (see docs/architecture.md, Recovery):
//! `truncate` keeps the data before the first lost offset and drops the rest,
//! `skip_gap` keeps every intact batch and leaves a hole of offsets, `accept_loss`
//! recreates a lost directory empty from where its log ended.

use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{JsonBody, PathParameters, Ready};
use super::records::PartitionPath;
use super::topics::{Topic, describe};
use crate::metadata::TopicError;
use crate::storage::{RecoverError, RecoveryAction};

/// What to do with an offline partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the data before the first missing or damaged offset; delete everything
    /// after it. The log end moves back, and later records reuse those offsets.
    Truncate,
    /// Keep every intact batch. Missing or damaged offsets become a hole that reads
    /// skip (empty batches); the log end stays. A hole at the start moves the log start.
    SkipGap,
    /// Only for a partition whose directory is gone: recreate it empty, with its log
    /// start and end at the offset where the lost log ended, and bump the leader epoch.
    AcceptLoss,
}

/// The operator's decision.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverPartition {
    pub action: Action,
}

/// Recovers an offline partition as the body says.
///
/// Answers with the topic, the partition now online. Nothing is changed when the
/// action does not apply.
#[utoipa::path(
    post,
    path = "/v1/topics/{name}/partitions/{partition}/recover",
    tag = "topics",
    params(PartitionPath),
    request_body = RecoverPartition,
    responses(
        (status = OK, description = "Recovered; the partition is online.", body = Topic),
        (status = NOT_FOUND, description = "No such topic or partition.", body = ErrorBody),
        (status = CONFLICT, description = "The partition is not offline, or the action \
            does not apply to what is wrong with it.", body = ErrorBody),
    )
)]
pub async fn recover_partition(
    Ready(api): Ready,
    PathParameters(path): PathParameters<PartitionPath>,
    JsonBody(body): JsonBody<RecoverPartition>,
) -> Result<Json<Topic>, ApiError> {
    let image = api.partitions.metadata().current();
    let topic = image
        .topic(&path.name)
        .ok_or_else(|| TopicError::UnknownTopic(path.name.clone()))?;
    if topic.partition(path.partition).is_none() {
        return Err(ApiError::new(
            ErrorCode::PartitionNotFound,
            format!("topic '{}' has no partition {}", path.name, path.partition),
        ));
    }
    let action = match body.action {
        Action::Truncate => RecoveryAction::Truncate,
        Action::SkipGap => RecoveryAction::SkipGap,
        Action::AcceptLoss => RecoveryAction::AcceptLoss,
    };
    api.admin
        .recover_partition(&path.name, path.partition, action)
        .await
        .map_err(|error| {
            let code = match &error {
                RecoverError::NotOffline(_) => ErrorCode::PartitionNotOffline,
                RecoverError::NotApplicable { .. } => ErrorCode::RecoveryNotApplicable,
                RecoverError::Storage(_) => ErrorCode::StorageError,
            };
            ApiError::new(code, error.to_string())
        })?;
    let image = api.partitions.metadata().current();
    let topic = image
        .topic(&path.name)
        .ok_or_else(|| TopicError::UnknownTopic(path.name.clone()))?;
    Ok(Json(describe(&api.partitions, topic)))
}
