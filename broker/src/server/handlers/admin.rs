//! ApiVersions, Metadata, CreateTopics and DeleteTopics.

use std::collections::BTreeMap;

use fjord_protocol::ErrorCode;
use fjord_protocol::messages::{
    ApiVersionsResponse, BrokerMetadata, CreateTopicResult, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
    MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};

use crate::metadata::{CreateTopic, Listener, MetadataImage, TopicImage};
use crate::server::handlers::RequestContext;
use crate::server::handles::Handles;
use crate::server::response::ResponseFrame;
use crate::storage::{LogManager, TopicPartition};

pub fn api_versions(correlation_id: i32) -> ResponseFrame {
    ResponseFrame::message(correlation_id, &ApiVersionsResponse::current())
}

pub fn topic_metadata(topic: &TopicImage) -> TopicMetadata {
    TopicMetadata {
        error_code: ErrorCode::None,
        name: topic.name.clone(),
        topic_id: *topic.topic_id.as_bytes(),
        is_internal: topic.is_internal(),
        partitions: topic
            .partitions
            .iter()
            .map(|partition| PartitionMetadata {
                // As Kafka answers: a partition without a leader cannot be served now
                // (its replicas are fenced or down); clients retry once it has one.
                error_code: if partition.leader < 0 {
                    ErrorCode::LeaderNotAvailable
                } else {
                    ErrorCode::None
                },
                partition: partition.partition,
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
                replicas: partition.replicas.clone(),
                isr: partition.isr.clone(),
            })
            .collect(),
    }
}

/// Partitions whose log on this broker is offline get `KAFKA_STORAGE_ERROR`, as Kafka
/// answers for a replica on an offline log directory.
fn mark_offline_partitions(logs: &LogManager, topics: &mut [TopicMetadata]) {
    for topic in topics.iter_mut() {
        for partition in topic.partitions.iter_mut() {
            let id = TopicPartition::new(topic.name.clone(), partition.partition);
            if partition.error_code == ErrorCode::None && logs.offline_reason(&id).is_some() {
                partition.error_code = ErrorCode::StorageError;
            }
        }
    }
}

fn unknown_topic(name: &str, error_code: ErrorCode) -> TopicMetadata {
    TopicMetadata {
        error_code,
        name: name.to_owned(),
        topic_id: [0; 16],
        is_internal: false,
        partitions: Vec::new(),
    }
}

/// Every broker, at its address for clients of `listener`.
fn brokers(image: &MetadataImage, listener: Listener) -> Vec<BrokerMetadata> {
    image
        .brokers
        .values()
        .map(|broker| {
            let (host, port) = broker.address_for(listener);
            BrokerMetadata {
                node_id: broker.node_id,
                host: host.to_owned(),
                port: i32::from(port),
            }
        })
        .collect()
}

pub async fn metadata(
    handles: &Handles,
    context: &RequestContext,
    request: MetadataRequest,
) -> ResponseFrame {
    let correlation_id = context.correlation_id;
    let image = handles.partitions.metadata().current();
    let topics = match request.topics {
        None => image
            .topics
            .values()
            .map(|topic| topic_metadata(topic))
            .collect(),
        Some(names) => {
            let mut topics = Vec::with_capacity(names.len());
            for name in names {
                match handles.admin.topic_or_auto_create(&name).await {
                    Ok(topic) => topics.push(topic_metadata(&topic)),
                    Err(error_code) => topics.push(unknown_topic(&name, error_code)),
                }
            }
            topics
        }
    };
    let mut topics = topics;
    mark_offline_partitions(handles.partitions.logs(), &mut topics);
    let image = handles.partitions.metadata().current();
    let response = MetadataResponse {
        cluster_id: image.cluster_id.clone(),
        controller_id: image.controller_id,
        brokers: brokers(&image, context.listener),
        topics,
    };
    ResponseFrame::message(correlation_id, &response)
}

pub async fn create_topics(
    handles: &Handles,
    correlation_id: i32,
    request: CreateTopicsRequest,
) -> ResponseFrame {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let create = CreateTopic {
            name: topic.name.clone(),
            partitions: (topic.partitions != -1).then_some(topic.partitions),
            replication_factor: (topic.replication_factor != -1)
                .then_some(topic.replication_factor),
            config: topic
                .configs
                .into_iter()
                .map(|entry| (entry.key, entry.value))
                .collect::<BTreeMap<_, _>>(),
        };
        let result = match handles
            .admin
            .create_topic(create, request.validate_only)
            .await
        {
            Ok(created) => CreateTopicResult {
                name: topic.name,
                topic_id: *created.topic_id.as_bytes(),
                error_code: ErrorCode::None,
                error_message: None,
            },
            Err(error) => CreateTopicResult {
                name: topic.name,
                topic_id: [0; 16],
                error_code: error.error_code(),
                error_message: Some(error.to_string()),
            },
        };
        results.push(result);
    }
    ResponseFrame::message(correlation_id, &CreateTopicsResponse { topics: results })
}

pub async fn delete_topics(
    handles: &Handles,
    correlation_id: i32,
    request: DeleteTopicsRequest,
) -> ResponseFrame {
    let mut results = Vec::with_capacity(request.names.len());
    for name in request.names {
        let result = match handles.admin.delete_topic(&name).await {
            Ok(()) => DeleteTopicResult {
                name,
                error_code: ErrorCode::None,
                error_message: None,
            },
            Err(error) => DeleteTopicResult {
                name,
                error_code: error.error_code(),
                error_message: Some(error.to_string()),
            },
        };
        results.push(result);
    }
    ResponseFrame::message(correlation_id, &DeleteTopicsResponse { topics: results })
}
