//! Metadata records. Each is one fact the cluster agreed on; replaying them in order
//! rebuilds the metadata image. Stored as JSON so that an operator can read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetadataRecord {
    /// The first record of a cluster: its identity.
    ClusterInitialized {
        cluster_id: String,
    },
    /// A broker joined or changed its address.
    BrokerRegistered {
        node_id: i32,
        host: String,
        port: u16,
    },
    /// A topic was created with its partitions' initial replica assignment.
    TopicCreated {
        name: String,
        topic_id: String,
        config: BTreeMap<String, String>,
        /// Replica node ids per partition; the first is the preferred leader.
        replicas: Vec<Vec<i32>>,
    },
    /// A partition's leadership or in-sync set changed; every leader change bumps the
    /// leader epoch.
    PartitionChanged {
        topic_id: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// A topic's configuration overrides were replaced.
    TopicConfigChanged {
        topic_id: String,
        config: BTreeMap<String, String>,
    },
    TopicDeleted {
        topic_id: String,
    },
}
