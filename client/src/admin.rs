//! The admin client: create, delete, list and describe topics; look up offsets.
//!
//! Topic creation and deletion go to the cluster's controller (any broker while the
//! controller is unknown), and are sent once: an administrative request is not
//! retried, because a retry after a timeout could report "already exists" for a
//! topic this very call created. Creation waits until the new topics have a leader
//! for every partition, so that a producer started right after can use them.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_protocol::messages::{
    ConfigEntry, CreateTopic, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, OffsetSpec, TopicMetadata,
};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};
pub use crate::offsets::ListedOffset;
use crate::offsets::list_offsets;
use crate::topic_partition::TopicPartition;

/// How often creation checks whether new topics have leaders.
const CREATE_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Administers topics.
///
/// ```no_run
/// use fjord_client::{Admin, Client, ClientConfig, NewTopic};
///
/// # async fn example() -> fjord_client::Result<()> {
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
/// let admin = Admin::new(&client);
/// admin
///     .create_topics(&[NewTopic::new("orders", 6, 1).with_config("retention.ms", "86400000")])
///     .await?;
/// for topic in admin.list_topics().await? {
///     println!("{} ({} partitions)", topic.name, topic.partitions);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// 1–249 characters of `[a-zA-Z0-9._-]`.
    pub name: String,
    /// Partition count; -1 asks for the broker's default.
    pub partitions: i32,
    /// Replicas per partition; -1 asks for the broker's default.
    pub replication_factor: i16,
    /// Topic config overrides, e.g. `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic without config overrides.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    /// Adds a config override such as `retention.ms`.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// One line of a topic listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// The topic's name.
    pub name: String,
    /// Partition count.
    pub partitions: usize,
    /// Replicas of the first partition (all partitions of a topic have as many).
    pub replication_factor: usize,
    /// Whether the topic belongs to the cluster itself (e.g. committed offsets).
    pub is_internal: bool,
}

/// A topic in detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// The topic's id as a UUID string (`8-4-4-4-12` hex digits).
    pub topic_id: String,
    /// Whether the topic belongs to the cluster itself (e.g. committed offsets).
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionDescription>,
}

/// A partition's leadership and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition index.
    pub partition: i32,
    /// `None` when the partition has no leader right now.
    pub leader: Option<i32>,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Node ids of every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// `NONE`, or why the partition is unavailable (e.g. `LEADER_NOT_AVAILABLE`).
    pub error_code: ErrorCode,
}

/// The cluster as one broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The id every broker of the cluster shares.
    pub cluster_id: String,
    /// The active controller's node id; `None` while no controller is known (during a
    /// metadata quorum election).
    pub controller: Option<i32>,
    /// Every registered broker as `(node id, host:port)`, by node id, at the address
    /// the answering listener gives its clients.
    pub brokers: Vec<(i32, String)>,
}

impl Admin {
    /// An admin client on `client`'s connections.
    pub fn new(client: &Client) -> Admin {
        Admin {
            client: client.clone(),
        }
    }

    /// Creates topics and waits (up to the request timeout) until every partition of
    /// each has a leader. Fails with the first topic that could not be created, e.g.
    /// [`Error::TopicAlreadyExists`]; the others may have been created.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let request = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|topic| CreateTopic {
                    name: topic.name.clone(),
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    configs: topic
                        .configs
                        .iter()
                        .map(|(key, value)| ConfigEntry {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
            timeout_ms: self.timeout_ms(),
            validate_only: false,
        };
        let response: CreateTopicsResponse = self
            .client
            .request_to_controller(ApiKey::CreateTopics, &request)
            .await?;
        for result in response.topics {
            match result.error_code {
                ErrorCode::None => {}
                ErrorCode::TopicAlreadyExists => {
                    return Err(Error::TopicAlreadyExists { topic: result.name });
                }
                code => {
                    return Err(Error::Broker {
                        context: format!("create topic '{}'", result.name),
                        code,
                        message: result.error_message,
                    });
                }
            }
        }
        let names: Vec<String> = topics.iter().map(|topic| topic.name.clone()).collect();
        self.wait_for_leaders(names).await
    }

    /// Deletes topics. Fails with the first topic that could not be deleted, e.g.
    /// [`Error::UnknownTopic`].
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        let request = DeleteTopicsRequest {
            names: names.to_vec(),
            timeout_ms: self.timeout_ms(),
        };
        let response: DeleteTopicsResponse = self
            .client
            .request_to_controller(ApiKey::DeleteTopics, &request)
            .await?;
        // Forget the deleted topics before reporting, so this client stops routing
        // to them whatever the outcome.
        self.client.refresh_metadata_quietly(names.to_vec()).await;
        for result in response.topics {
            match result.error_code {
                ErrorCode::None => {}
                ErrorCode::UnknownTopicOrPartition => {
                    return Err(Error::UnknownTopic { topic: result.name });
                }
                code => {
                    return Err(Error::Broker {
                        context: format!("delete topic '{}'", result.name),
                        code,
                        message: result.error_message,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let response = self.client.fetch_metadata(None).await?;
        let mut topics: Vec<TopicSummary> = response
            .topics
            .into_iter()
            .filter(|topic| topic.error_code.is_ok())
            .map(|topic| TopicSummary {
                partitions: topic.partitions.len(),
                replication_factor: topic
                    .partitions
                    .first()
                    .map_or(0, |partition| partition.replicas.len()),
                is_internal: topic.is_internal,
                name: topic.name,
            })
            .collect();
        topics.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(topics)
    }

    /// The cluster's id, active controller and brokers, as a broker answers now (like
    /// Kafka's `describeCluster`).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let response = self.client.fetch_metadata(Some(Vec::new())).await?;
        let mut brokers: Vec<(i32, String)> = response
            .brokers
            .into_iter()
            .map(|broker| (broker.node_id, format!("{}:{}", broker.host, broker.port)))
            .collect();
        brokers.sort();
        Ok(ClusterDescription {
            cluster_id: response.cluster_id,
            controller: (response.controller_id >= 0).then_some(response.controller_id),
            brokers,
        })
    }

    /// One topic's partitions, leaders, epochs, replicas and in-sync replicas.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let response = self
            .client
            .fetch_metadata(Some(vec![name.to_owned()]))
            .await?;
        let topic = response
            .topics
            .into_iter()
            .find(|topic| topic.name == name)
            .ok_or_else(|| Error::UnknownTopic {
                topic: name.to_owned(),
            })?;
        match topic.error_code {
            ErrorCode::None => Ok(describe(topic)),
            ErrorCode::UnknownTopicOrPartition => Err(Error::UnknownTopic {
                topic: name.to_owned(),
            }),
            code => Err(Error::broker(format!("describe topic '{name}'"), code)),
        }
    }

    /// Looks up the earliest, latest or by-timestamp offset of each partition.
    pub async fn list_offsets(
        &self,
        queries: &[(TopicPartition, OffsetSpec)],
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>> {
        list_offsets(&self.client, queries).await
    }

    /// The client this admin client sends through (for the group operations).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn timeout_ms(&self) -> i32 {
        self.client.config().request_timeout_ms.min(i32::MAX as u64) as i32
    }

    async fn wait_for_leaders(&self, names: Vec<String>) -> Result<()> {
        let deadline = Instant::now() + self.client.config().request_timeout();
        loop {
            let response = self.client.fetch_metadata(Some(names.clone())).await?;
            let ready = names.iter().all(|name| {
                response.topics.iter().any(|topic| {
                    topic.name == *name
                        && topic.error_code.is_ok()
                        && !topic.partitions.is_empty()
                        && topic
                            .partitions
                            .iter()
                            .all(|partition| partition.leader >= 0)
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() + CREATE_POLL_INTERVAL >= deadline {
                // Created but not yet led: producers retry until leaders appear.
                tracing::warn!(
                    ?names,
                    "topics created but not all partitions have a leader yet"
                );
                return Ok(());
            }
            tokio::time::sleep(CREATE_POLL_INTERVAL).await;
        }
    }
}

fn describe(topic: TopicMetadata) -> TopicDescription {
    let mut partitions: Vec<PartitionDescription> = topic
        .partitions
        .into_iter()
        .map(|partition| PartitionDescription {
            partition: partition.partition,
            leader: (partition.leader >= 0).then_some(partition.leader),
            leader_epoch: partition.leader_epoch,
            replicas: partition.replicas,
            isr: partition.isr,
            error_code: partition.error_code,
        })
        .collect();
    partitions.sort_by_key(|partition| partition.partition);
    TopicDescription {
        name: topic.name,
        topic_id: format_uuid(&topic.topic_id),
        is_internal: topic.is_internal,
        partitions,
    }
}

/// `00112233-4455-6677-8899-aabbccddeeff`.
fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Topic ids print in the usual UUID grouping.
    #[test]
    fn uuid_format() {
        let bytes = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(format_uuid(&bytes), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
