//! Metadata records. Each is one fact the cluster agreed on; replaying them in order
//! rebuilds the metadata image. Stored as JSON so that an operator can read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A `host:port` that clients connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetadataRecord {
    /// The first record of a cluster: its identity.
    ClusterInitialized {
        cluster_id: String,
    },
    /// A broker process joined (or the broker changed its address): a new registration
    /// of `node_id`, which replaces the one before. Records written before brokers had
    /// incarnations lack the last four fields: they read as the nil incarnation, no
    /// rack, epoch 0 and unfenced, which is what such a registration meant.
    BrokerRegistered {
        node_id: i32,
        host: String,
        port: u16,
        /// `host:port` of its internal listener, where followers fetch from it; empty
        /// in records written before replication.
        #[serde(default)]
        internal_address: String,
        /// The id the broker process drew when it started (a UUID): a restarted broker
        /// is a new incarnation, so the controller can tell it from its predecessor.
        #[serde(default)]
        incarnation_id: String,
        #[serde(default)]
        rack: Option<String>,
        /// The broker epoch: one more than the epoch of the node's registration before
        /// (1 for its first). Heartbeats carry it, so one from an older registration
        /// is refused. A counter rather than the record's log offset (Kafka's choice)
        /// because the front end decides records before the log gives them a position,
        /// and a snapshot's records must rebuild the same epochs.
        #[serde(default)]
        broker_epoch: u64,
        /// Whether the broker starts fenced: brokers registering with the active
        /// controller do, until they heartbeat caught up; the single-node broker,
        /// which is its own controller, does not.
        #[serde(default)]
        fenced: bool,
        /// The address clients of its external listener reach it at, if it has one
        /// (`external_listen`). Left out when it has none, so that a broker of a
        /// version that does not know the field still reads every other registration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external: Option<Endpoint>,
    },
    /// A broker's registration of `broker_epoch` was fenced: its session expired or it
    /// is shutting down. A fenced broker leads no partition and takes no new replicas.
    BrokerFenced {
        node_id: i32,
        broker_epoch: u64,
    },
    /// A fenced broker's registration of `broker_epoch` heartbeats again, caught up.
    BrokerUnfenced {
        node_id: i32,
        broker_epoch: u64,
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
    /// leader epoch, every change the partition epoch.
    PartitionChanged {
        topic_id: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
        /// Eligible leader replicas: replicas outside the in-sync set that hold every
        /// record acknowledged with acks=all (see
        /// [`leadership`](super::front_end::leadership)). Absent when empty, and in
        /// records written before there were any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elr: Vec<i32>,
        /// The partition epoch after this change; records written before partition
        /// epochs lack it, and bump the epoch by one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition_epoch: Option<i32>,
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
