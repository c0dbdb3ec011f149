//! Topics: list, create, describe (with each partition's leadership and log offsets),
//! change config and delete.

use axum::Json;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::extract::{JsonBody, PathParameters, Ready};
use super::json::optional_integer;
use super::topic_config::{TopicConfigChanges, TopicConfigOverrides};
use crate::metadata::{CreateTopic, TopicError, TopicImage};
use crate::storage::TopicPartition;
use crate::topics::Partitions;

/// A topic in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    /// Stable across restarts; a topic deleted and created again gets a new one.
    pub topic_id: String,
    /// Internal topics (names starting with `__`) belong to the broker.
    pub internal: bool,
    pub partition_count: usize,
    pub replication_factor: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicList {
    /// By name.
    pub topics: Vec<TopicSummary>,
}

/// A topic with its config overrides and partitions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Topic {
    pub name: String,
    pub topic_id: String,
    pub internal: bool,
    pub replication_factor: usize,
    /// The topic's config overrides. Keys it does not set take the broker's defaults
    /// (see docs/configuration.md).
    pub config: TopicConfigOverrides,
    pub partitions: Vec<Partition>,
}

/// A partition: leadership from the metadata, offsets and size from this broker's log.
/// The log fields are null when this broker holds no replica of the partition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Partition {
    pub partition: i32,
    /// Node id of the leader; -1 when there is none.
    pub leader: i32,
    /// Bumped at every leader change.
    pub leader_epoch: i32,
    /// Node ids of the replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Node ids of the eligible leader replicas: outside the in-sync set, yet holding
    /// every record acknowledged with acks=all, so that they may lead when no in-sync
    /// replica can. Empty unless the in-sync set is below `min.insync.replicas`.
    pub eligible_leaders: Vec<i32>,
    /// First offset still stored.
    pub log_start_offset: Option<i64>,
    /// Offset the next record appended gets.
    pub log_end_offset: Option<i64>,
    /// Records below it are committed and readable.
    pub high_watermark: Option<i64>,
    /// Bytes of the partition's segment files.
    pub size_bytes: Option<u64>,
    /// Whether this broker can serve the partition; null when it holds no replica.
    pub state: Option<PartitionState>,
    /// Why the partition is offline (a damaged or lost log, a failed write or fsync);
    /// `POST .../recover` decides about a log that could not be opened.
    pub offline_reason: Option<String>,
    /// On the leader's broker, each follower's replication state, by node id; null on
    /// other brokers, which do not know it.
    pub followers: Option<Vec<Follower>>,
}

/// A follower of a partition, as its leader sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Follower {
    /// The follower's node id.
    pub replica: i32,
    /// Where it fetched last in the current leader epoch (its log end then); null
    /// before its first fetch in the epoch.
    pub fetch_offset: Option<i64>,
    /// Offsets between its last fetch and the leader's log end.
    pub lag: i64,
    /// Milliseconds since it was last caught up with the leader's log end; past
    /// `replica_lag_ms` it leaves the in-sync set.
    pub caught_up_ms_ago: i64,
    /// Whether acks=all writes and the high watermark wait for it.
    pub in_sync: bool,
}

/// Whether a partition's log on this broker can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartitionState {
    Online,
    Offline,
}

/// A topic to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTopic {
    /// 1 to 249 characters of letters, digits, `.`, `_` and `-`; not `.` or `..`.
    // The pattern says "not `.` or `..`" by its first one to three characters rather
    // than with a look-ahead, which not every JSON Schema tool supports.
    #[schema(
        min_length = 1,
        max_length = 249,
        pattern = r"^([a-zA-Z0-9_-]|\.[a-zA-Z0-9_-]|\.\.[a-zA-Z0-9._-])[a-zA-Z0-9._-]*$"
    )]
    pub name: String,
    /// Default: the broker's `default_partitions`.
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub partitions: Option<i32>,
    /// At most the number of brokers. Default: the broker's
    /// `default_replication_factor`.
    #[schema(minimum = 1, maximum = 32767)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub replication_factor: Option<i16>,
    /// Config overrides, e.g. `{"retention.ms": 86400000}`. Read key by key (see
    /// [`TopicConfigOverrides::from_json`]) so that errors name the setting.
    #[serde(default)]
    #[schema(value_type = TopicConfigOverrides)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPath {
    /// The topic's name.
    pub name: String,
}

fn summary(topic: &TopicImage) -> TopicSummary {
    TopicSummary {
        name: topic.name.clone(),
        topic_id: topic.topic_id.to_string(),
        internal: topic.is_internal(),
        partition_count: topic.partitions.len(),
        replication_factor: replication_factor(topic),
    }
}

fn replication_factor(topic: &TopicImage) -> usize {
    topic
        .partitions
        .first()
        .map_or(0, |partition| partition.replicas.len())
}

/// The topic with its partitions' log state as this broker has it now.
pub fn describe(partitions: &Partitions, topic: &TopicImage) -> Topic {
    let logs = partitions.logs();
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let id = TopicPartition::new(topic.name.clone(), partition.partition);
            let log = logs.get_of(&id, topic.topic_id);
            let offline_reason = logs.offline_reason(&id);
            let hosted = partition.replicas.contains(&partitions.node_id());
            let state = hosted.then_some(if offline_reason.is_some() {
                PartitionState::Offline
            } else {
                PartitionState::Online
            });
            Partition {
                partition: partition.partition,
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
                replicas: partition.replicas.clone(),
                isr: partition.isr.clone(),
                eligible_leaders: partition.elr.clone(),
                log_start_offset: log.as_ref().map(|log| log.log_start_offset()),
                log_end_offset: log.as_ref().map(|log| log.log_end_offset()),
                high_watermark: log.as_ref().map(|log| log.high_watermark()),
                size_bytes: log.as_ref().map(|log| log.size_bytes()),
                state,
                offline_reason,
                followers: partitions.replicas().leader(&id).map(|leader| {
                    leader
                        .followers()
                        .into_iter()
                        .map(|follower| Follower {
                            replica: follower.replica,
                            fetch_offset: follower.fetch_offset,
                            lag: follower.lag_offsets,
                            caught_up_ms_ago: follower.since_caught_up_ms,
                            in_sync: follower.in_sync,
                        })
                        .collect()
                }),
            }
        })
        .collect();
    Topic {
        name: topic.name.clone(),
        topic_id: topic.topic_id.to_string(),
        internal: topic.is_internal(),
        replication_factor: replication_factor(topic),
        config: TopicConfigOverrides::from_map(&topic.config),
        partitions,
    }
}

/// Every topic, by name.
#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    responses((status = OK, body = TopicList))
)]
pub async fn list_topics(Ready(api): Ready) -> Json<TopicList> {
    let image = api.partitions.metadata().current();
    Json(TopicList {
        topics: image.topics.values().map(|topic| summary(topic)).collect(),
    })
}

/// Creates a topic and its partition logs.
#[utoipa::path(
    post,
    path = "/v1/topics",
    tag = "topics",
    request_body = NewTopic,
    responses(
        (status = CREATED, description = "Created; `Location` names the topic.", body = Topic,
            headers(("Location" = String, description = "The topic's path"))),
        (status = CONFLICT, description = "A topic of that name exists, there are fewer \
            brokers than replicas, or the config does not work with the broker's defaults \
            and limits.", body = ErrorBody),
    )
)]
pub async fn create_topic(
    Ready(api): Ready,
    JsonBody(new_topic): JsonBody<NewTopic>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Topic>), ApiError> {
    let config = TopicConfigOverrides::from_json(new_topic.config)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    let topic = api
        .admin
        .create_topic(
            CreateTopic {
                name: new_topic.name,
                partitions: new_topic.partitions,
                replication_factor: new_topic.replication_factor,
                config: config.into_map(),
            },
            false,
        )
        .await?;
    let location = format!("/v1/topics/{}", topic.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(describe(&api.partitions, &topic)),
    ))
}

/// A topic's config overrides and partitions.
#[utoipa::path(
    get,
    path = "/v1/topics/{name}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = OK, body = Topic),
        (status = NOT_FOUND, description = "No such topic.", body = ErrorBody),
    )
)]
pub async fn get_topic(
    Ready(api): Ready,
    PathParameters(path): PathParameters<TopicPath>,
) -> Result<Json<Topic>, ApiError> {
    let image = api.partitions.metadata().current();
    let topic = image
        .topic(&path.name)
        .ok_or(TopicError::UnknownTopic(path.name))?;
    Ok(Json(describe(&api.partitions, topic)))
}

/// Deletes a topic and its data.
#[utoipa::path(
    delete,
    path = "/v1/topics/{name}",
    tag = "topics",
    params(TopicPath),
    responses(
        (status = NO_CONTENT, description = "Deleted."),
        (status = FORBIDDEN, description = "The topic is internal to the broker.", body = ErrorBody),
        (status = NOT_FOUND, description = "No such topic.", body = ErrorBody),
    )
)]
pub async fn delete_topic(
    Ready(api): Ready,
    PathParameters(path): PathParameters<TopicPath>,
) -> Result<StatusCode, ApiError> {
    api.admin.delete_topic(&path.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a topic's config overrides.
///
/// The body is merged into the overrides (a JSON Merge Patch): a string sets a key,
/// `null` removes its override, keys not named are kept.
#[utoipa::path(
    patch,
    path = "/v1/topics/{name}/config",
    tag = "topics",
    params(TopicPath),
    request_body = TopicConfigChanges,
    responses(
        (status = OK, description = "The topic with its new overrides.", body = Topic),
        (status = NOT_FOUND, description = "No such topic.", body = ErrorBody),
        (status = CONFLICT, description = "The merged config does not work with the \
            broker's defaults and limits; nothing changed.", body = ErrorBody),
    )
)]
pub async fn alter_topic_config(
    Ready(api): Ready,
    PathParameters(path): PathParameters<TopicPath>,
    JsonBody(changes): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<Topic>, ApiError> {
    let changes = TopicConfigChanges::from_json(changes)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    let topic = api
        .admin
        .alter_topic_config(&path.name, changes.into_map())
        .await?;
    Ok(Json(describe(&api.partitions, &topic)))
}
