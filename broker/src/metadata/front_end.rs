//! The metadata front end: decides what a request does to the metadata. Given a
//! request, the current image and what it cannot know by itself ([`Inputs`]: the broker
//! defaults, the brokers that may take replicas and their partition budgets; and a
//! [`Randomness`] for new ids and placement), it returns the records that carry the
//! request out, or why the request is refused.
//!
//! Pure: no I/O, no clock, no locks and no randomness of its own, so that every decision
//! can be table-tested (`front_end/tests.rs`) and later driven by the cluster simulator.
//! The [`Controller`](super::Controller) is its shell: it serialises requests, supplies
//! real ids and limits, makes the records durable and publishes the image they make.

pub mod leadership;
pub mod placement;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use fjord_protocol::ErrorCode;
use fjord_protocol::limits::TOPIC_NAME_BYTES_MAX;

use super::image::{MetadataImage, PartitionImage, TopicImage};
use super::metadata_log::ProposeError;
use super::records::{Endpoint, MetadataRecord};
use super::topic_config::{self, TopicConfigError};
use crate::config::BrokerConfig;
use crate::storage::StorageError;

pub use crate::config::TOPIC_PARTITIONS_MAX;

/// Replicas of a topic created without a replication factor when the broker's
/// `default_replication_factor` is 0 (automatic), if there are that many brokers: one
/// broker's loss, disk included, loses nothing, while two stay in sync.
const AUTOMATIC_REPLICATION_FACTOR: usize = 3;

/// A request to create a topic; `None` takes the broker's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub config: BTreeMap<String, String>,
}

/// A change asked of the metadata. Plain data, so that a broker whose node does not
/// lead the quorum can send it to the active controller (see [`super::forwarding`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetadataRequest {
    /// Give a new cluster its identity; nothing to do when it has one.
    InitializeCluster,
    /// A broker process registers with the active controller (see
    /// [`super::membership`]): a new registration, fenced until it heartbeats caught
    /// up, with the next broker epoch. Should the node's previous registration still
    /// be unfenced (its process restarted faster than its session expired), its
    /// leaderships move away as if it were fenced. Nothing to do when this incarnation
    /// is already registered (a retry).
    RegisterIncarnation(BrokerRegistration),
    /// Fence a broker's registration of `broker_epoch`, moving its leaderships away
    /// ([`leadership::move_away`]); nothing to do when it is fenced already or the
    /// epoch is not its current registration's.
    FenceBroker {
        node_id: i32,
        broker_epoch: u64,
    },
    /// Unfence a broker's registration of `broker_epoch`: leaderless partitions it is
    /// in sync for get a leader, and with `restore_preferred_leaders` it leads again the
    /// partitions it is the preferred replica of ([`leadership::bring_back`]). Nothing
    /// to do when it is unfenced already or the epoch is not current.
    UnfenceBroker {
        node_id: i32,
        broker_epoch: u64,
        restore_preferred_leaders: bool,
    },
    CreateTopic(CreateTopic),
    DeleteTopic {
        name: String,
    },
    /// Change a topic's config overrides incrementally, like Kafka's
    /// IncrementalAlterConfigs: a key with a value sets that override, a key with `None`
    /// removes it (the broker default applies again), keys not named keep theirs.
    AlterTopicConfig {
        name: String,
        changes: BTreeMap<String, Option<String>>,
    },
    /// Bump a partition's leader epoch, keeping its leader and in-sync set (its log was
    /// recreated after a loss, and whoever checks epochs must see that history changed).
    BumpLeaderEpoch {
        name: String,
        partition: i32,
    },
    /// A partition leader's proposal of a new in-sync set; refused unless the partition
    /// is still at the proposal's leader, leader epoch and partition epoch.
    AlterPartition(IsrChange),
}

/// A new in-sync set, proposed by the leader of a partition (see
/// [`crate::replication`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrChange {
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    /// The proposing leader, and the leader and partition epochs it saw.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// What a broker process says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// Drawn by the process when it starts; a restart is a new incarnation.
    pub incarnation_id: uuid::Uuid,
    /// The address clients reach it at.
    pub host: String,
    pub port: u16,
    /// `host:port` where other brokers reach its internal listener.
    pub internal_address: String,
    pub rack: Option<String>,
    /// The address clients of its external listener reach it at, if it has one.
    #[serde(default)]
    pub external: Option<Endpoint>,
    /// The partitions whose directory the broker found when it started, by topic id
    /// and partition; `None` when it does not say (a single node registering itself).
    /// A replica it lacks lost its data (a replaced disk, a deleted directory): the
    /// controller takes it out of the partition's in-sync set and eligible leaders
    /// until it has copied the log again.
    #[serde(default)]
    pub held_replicas: Option<BTreeSet<(uuid::Uuid, i32)>>,
}

/// Where the front end's new ids and random choices come from. The controller draws
/// them from the operating system; tests script them.
pub trait Randomness {
    /// A new id that no topic or cluster had before.
    fn new_id(&mut self) -> uuid::Uuid;
    /// A number in `0..bound`; `bound` is at least 1.
    fn below(&mut self, bound: usize) -> usize;
}

/// What the front end needs to know besides the request and the image.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The broker's settings: the default partition count and replication factor, and
    /// the defaults that topic config overrides are checked against.
    pub defaults: &'a BrokerConfig,
    /// The brokers that may take replicas of new partitions: today every registered
    /// broker. Those the image shows fenced are skipped whatever this says.
    pub live_brokers: &'a BTreeSet<i32>,
    /// Most partitions each broker may hold, for the brokers whose budget is known.
    pub partition_budgets: &'a BTreeMap<i32, usize>,
    /// Most replicas a new partition may have ([`crate::config::REPLICATION_FACTOR_MAX`]).
    pub replication_factor_max: i16,
}

/// Why a topic operation was refused.
/// Travels (as JSON) from the active controller to the broker that forwarded the
/// request; a local storage failure never does (see [`TopicError::for_the_wire`]).
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TopicError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The topic belongs to the broker itself (such as the consumer offsets topic)
    /// and clients may not delete it.
    #[error("topic '{0}' is internal to the broker and cannot be deleted")]
    Protected(String),
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// More partitions than a broker's budget leaves room for (see
    /// [`crate::resources::partitions_max`]).
    #[error(
        "{requested} more partitions exceed the limit of broker {broker}: {held} of {limit} are held (max_partitions, or the open-file limit)"
    )]
    PartitionLimit {
        broker: i32,
        requested: usize,
        held: usize,
        limit: usize,
    },
    /// More replicas than brokers: the request is valid, the cluster too small for it.
    #[error("replication factor {requested} exceeds the number of brokers ({available})")]
    NotEnoughBrokers { requested: i16, available: usize },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// Each value is valid, but not together with the others and the broker's defaults.
    #[error("inconsistent topic config: {0}")]
    InconsistentConfig(String),
    /// An in-sync set change from a leader whose view of the partition is out of date,
    /// or that would break the partition's rules.
    #[error("partition change refused: {0}")]
    PartitionChangeRefused(String),
    /// An in-sync set change made from an older state of the partition (another change
    /// came first): the proposer learns the newer state from the metadata.
    #[error("partition change from a stale state: {0}")]
    StalePartitionState(String),
    /// The records could not be made durable (never from the front end itself).
    #[error("metadata storage failed: {0}")]
    #[serde(skip)]
    Storage(#[from] StorageError),
    /// The metadata log did not apply the change (never from the front end itself).
    #[error(transparent)]
    Metadata(#[from] ProposeError),
    /// The active controller is another node, and it could not be asked within the
    /// propose timeout (never from the front end itself).
    #[error("cannot reach the active controller, node {node_id}: {reason}")]
    ControllerUnreachable { node_id: i32, reason: String },
}

impl TopicError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
            Self::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
            Self::InvalidName(_) | Self::Protected(_) => ErrorCode::InvalidTopic,
            Self::InvalidPartitions(_) | Self::PartitionLimit { .. } => {
                ErrorCode::InvalidPartitions
            }
            Self::InvalidReplicationFactor(_) | Self::NotEnoughBrokers { .. } => {
                ErrorCode::InvalidReplicationFactor
            }
            Self::InvalidConfig(_) | Self::InconsistentConfig(_) => ErrorCode::InvalidConfig,
            Self::PartitionChangeRefused(_) => ErrorCode::InvalidRequest,
            Self::StalePartitionState(_) => ErrorCode::FencedLeaderEpoch,
            Self::Storage(_) => ErrorCode::StorageError,
            // The protocol has no NOT_CONTROLLER: "no leader here" is the closest
            // retriable code. A quorum of one leads from start to shutdown; it times out
            // only when its storage is slower than the propose timeout.
            Self::Metadata(ProposeError::NotLeader { .. }) => ErrorCode::LeaderNotAvailable,
            Self::Metadata(ProposeError::TimedOut { .. }) => ErrorCode::RequestTimedOut,
            Self::Metadata(ProposeError::ShutDown) => ErrorCode::BrokerShuttingDown,
            Self::Metadata(ProposeError::Failed(_)) => ErrorCode::StorageError,
            Self::ControllerUnreachable { .. } => ErrorCode::RequestTimedOut,
        }
    }
}

impl TopicError {
    /// This error as another broker can receive it: a storage failure, which holds
    /// the local error, becomes the quorum failure it is to them.
    pub fn for_the_wire(self) -> Self {
        // (`ControllerUnreachable` never crosses: the endpoint does not forward.)
        match self {
            Self::Storage(error) => Self::Metadata(ProposeError::Failed(error.to_string())),
            other => other,
        }
    }
}

impl From<TopicConfigError> for TopicError {
    fn from(error: TopicConfigError) -> Self {
        match error {
            TopicConfigError::Invalid(reason) => Self::InvalidConfig(reason),
            TopicConfigError::Inconsistent(reason) => Self::InconsistentConfig(reason),
        }
    }
}

/// Checks a topic name: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason: String| Err(TopicError::InvalidName(reason));
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(format!(
            "'{name}' must have 1 to {TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return invalid(format!("'{name}' is reserved"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "'{name}' contains '{bad}'; allowed are letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The records that carry out `request` on `image`, in the order they are to be
/// applied; empty when there is nothing to change.
pub fn records_for(
    request: &MetadataRequest,
    image: &MetadataImage,
    inputs: &Inputs<'_>,
    random: &mut dyn Randomness,
) -> Result<Vec<MetadataRecord>, TopicError> {
    match request {
        MetadataRequest::InitializeCluster => Ok(initialize_cluster(image, random)),
        MetadataRequest::RegisterIncarnation(registration) => Ok(register_incarnation(
            image,
            registration,
            electorate_defaults(inputs),
        )),
        MetadataRequest::FenceBroker {
            node_id,
            broker_epoch,
        } => Ok(fence_broker(
            image,
            *node_id,
            *broker_epoch,
            electorate_defaults(inputs),
        )),
        MetadataRequest::UnfenceBroker {
            node_id,
            broker_epoch,
            restore_preferred_leaders,
        } => Ok(unfence_broker(
            image,
            *node_id,
            *broker_epoch,
            *restore_preferred_leaders,
            electorate_defaults(inputs),
        )),
        MetadataRequest::CreateTopic(request) => create_topic(request, image, inputs, random),
        MetadataRequest::DeleteTopic { name } => delete_topic(name, image),
        MetadataRequest::AlterTopicConfig { name, changes } => {
            alter_topic_config(name, changes, image, inputs)
        }
        MetadataRequest::BumpLeaderEpoch { name, partition } => {
            bump_leader_epoch(name, *partition, image)
        }
        MetadataRequest::AlterPartition(change) => alter_partition(change, image, inputs.defaults),
    }
}

/// A leader's in-sync set change, if it still applies: the same leader, leader epoch
/// and partition epoch (else another change came first and the leader must look
/// again), a set of replicas that holds the leader, and new members that are not
/// fenced. The same set again changes nothing.
/// An in-sync set change from a partition's leader. With `restore_preferred`, a change
/// that brings the preferred (first) replica back into the set also gives it back the
/// leadership, in a new leader epoch: a broker that returns after a restart leads its
/// partitions again once it has caught up, which keeps leaders spread.
fn alter_partition(
    change: &IsrChange,
    image: &MetadataImage,
    defaults: &BrokerConfig,
) -> Result<Vec<MetadataRecord>, TopicError> {
    let restore_preferred = defaults.auto_leader_rebalance;
    let name = format!("{}-{}", change.topic_id, change.partition);
    let refused = |reason: String| Err(TopicError::PartitionChangeRefused(reason));
    let Some((topic, current)) = image
        .topics
        .values()
        .find(|topic| topic.topic_id == change.topic_id)
        .and_then(|topic| Some((topic, topic.partition(change.partition)?)))
    else {
        return Err(TopicError::UnknownTopic(name));
    };
    let stale = |reason: String| Err(TopicError::StalePartitionState(reason));
    if current.leader != change.leader || current.leader_epoch != change.leader_epoch {
        return stale(format!(
            "{name} is led by {} in epoch {}, not by {} in epoch {}",
            current.leader, current.leader_epoch, change.leader, change.leader_epoch
        ));
    }
    if current.partition_epoch != change.partition_epoch {
        return stale(format!(
            "{name} is at partition epoch {}, the change was made from {}",
            current.partition_epoch, change.partition_epoch
        ));
    }
    if current.isr == change.isr {
        return Ok(Vec::new());
    }
    let mut seen = BTreeSet::new();
    if !change.isr.contains(&change.leader)
        || !change
            .isr
            .iter()
            .all(|member| current.replicas.contains(member) && seen.insert(*member))
    {
        return refused(format!(
            "{:?} is not a set of {name}'s replicas {:?} holding its leader",
            change.isr, current.replicas
        ));
    }
    if let Some(fenced) = change
        .isr
        .iter()
        .find(|member| !current.isr.contains(member) && !image.is_unfenced(**member))
    {
        return refused(format!(
            "broker {fenced} is fenced: it cannot join {name}'s in-sync set"
        ));
    }
    let preferred = current.replicas.first().copied();
    let (leader, leader_epoch) = match preferred {
        Some(preferred)
            if restore_preferred
                && preferred != current.leader
                && change.isr.contains(&preferred)
                && !current.isr.contains(&preferred)
                && image.is_unfenced(preferred) =>
        {
            (preferred, current.leader_epoch + 1)
        }
        _ => (current.leader, current.leader_epoch),
    };
    let min_insync = topic_config::resolve(defaults, &topic.config)
        .map_or(defaults.min_insync_replicas.max(1) as usize, |config| {
            config.min_insync_for(current.replicas.len())
        });
    let decision = leadership::Decision {
        leader,
        leader_epoch,
        isr: change.isr.clone(),
        elr: leadership::next_elr(current, &change.isr, min_insync, None),
    };
    Ok(vec![leadership::partition_changed(
        topic, current, decision,
    )])
}

fn initialize_cluster(image: &MetadataImage, random: &mut dyn Randomness) -> Vec<MetadataRecord> {
    if !image.cluster_id.is_empty() {
        return Vec::new();
    }
    vec![MetadataRecord::ClusterInitialized {
        cluster_id: random.new_id().to_string(),
    }]
}

/// One more than the epoch of the node's current registration; 1 for a new node.
fn next_broker_epoch(image: &MetadataImage, node_id: i32) -> u64 {
    image
        .brokers
        .get(&node_id)
        .map_or(1, |broker| broker.broker_epoch + 1)
}

fn register_incarnation(
    image: &MetadataImage,
    registration: &BrokerRegistration,
    default_min_insync: i16,
) -> Vec<MetadataRecord> {
    let node_id = registration.node_id;
    let registered = image.brokers.get(&node_id);
    if registered.is_some_and(|broker| broker.incarnation_id == registration.incarnation_id) {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerRegistered {
        node_id,
        host: registration.host.clone(),
        port: registration.port,
        internal_address: registration.internal_address.clone(),
        incarnation_id: registration.incarnation_id.to_string(),
        rack: registration.rack.clone(),
        broker_epoch: next_broker_epoch(image, node_id),
        fenced: true,
        external: registration.external.clone(),
    }];
    // A replica of a replicated partition whose directory the new process did not
    // find has lost its data. (A partition of one replica has no other copy: its
    // broker keeps it offline until an operator accepts the loss.)
    let lost = |topic: &TopicImage, partition: &PartitionImage| {
        registration.held_replicas.as_ref().is_some_and(|held| {
            partition.replicas.len() > 1
                && partition.replicas.contains(&node_id)
                && !held.contains(&(topic.topic_id, partition.partition))
        })
    };
    let is_eligible = |broker| broker != node_id && image.is_unfenced(broker);
    records.extend(leadership::move_away(
        image,
        node_id,
        &lost,
        leadership::Electorate {
            is_eligible: &is_eligible,
            default_min_insync,
        },
    ));
    records
}

/// Whether the node's current registration is the one of `broker_epoch`, fenced or
/// not as `fenced` says.
fn is_registered_as(image: &MetadataImage, node_id: i32, broker_epoch: u64, fenced: bool) -> bool {
    image
        .brokers
        .get(&node_id)
        .is_some_and(|broker| broker.broker_epoch == broker_epoch && broker.fenced == fenced)
}

/// The broker's default `min_insync_replicas`, which elections need for topics that do
/// not set their own.
fn electorate_defaults(inputs: &Inputs<'_>) -> i16 {
    inputs.defaults.min_insync_replicas
}

fn fence_broker(
    image: &MetadataImage,
    node_id: i32,
    broker_epoch: u64,
    default_min_insync: i16,
) -> Vec<MetadataRecord> {
    if !is_registered_as(image, node_id, broker_epoch, false) {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerFenced {
        node_id,
        broker_epoch,
    }];
    let is_eligible = |broker| broker != node_id && image.is_unfenced(broker);
    records.extend(leadership::move_away(
        image,
        node_id,
        &|_, _| false,
        leadership::Electorate {
            is_eligible: &is_eligible,
            default_min_insync,
        },
    ));
    records
}

fn unfence_broker(
    image: &MetadataImage,
    node_id: i32,
    broker_epoch: u64,
    restore_preferred_leaders: bool,
    default_min_insync: i16,
) -> Vec<MetadataRecord> {
    if !is_registered_as(image, node_id, broker_epoch, true) {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerUnfenced {
        node_id,
        broker_epoch,
    }];
    let is_eligible = |broker| broker == node_id || image.is_unfenced(broker);
    records.extend(leadership::bring_back(
        image,
        node_id,
        restore_preferred_leaders,
        leadership::Electorate {
            is_eligible: &is_eligible,
            default_min_insync,
        },
    ));
    records
}

/// Checks the request by itself first (name, partition count, config), then against
/// the image and the cluster (name taken, replication factor, budgets).
fn create_topic(
    request: &CreateTopic,
    image: &MetadataImage,
    inputs: &Inputs<'_>,
    random: &mut dyn Randomness,
) -> Result<Vec<MetadataRecord>, TopicError> {
    validate_topic_name(&request.name)?;
    let partitions = request
        .partitions
        .unwrap_or(inputs.defaults.default_partitions);
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(format!(
            "{partitions}; must be between 1 and {TOPIC_PARTITIONS_MAX}"
        )));
    }
    topic_config::resolve(inputs.defaults, &request.config)?;
    if image.topic(&request.name).is_some() {
        return Err(TopicError::AlreadyExists(request.name.clone()));
    }
    let brokers: Vec<i32> = inputs
        .live_brokers
        .iter()
        .copied()
        .filter(|broker| !image.brokers.get(broker).is_some_and(|info| info.fenced))
        .collect();
    let replication_factor = match request.replication_factor {
        Some(factor) => factor,
        None if inputs.defaults.default_replication_factor == 0 => {
            brokers.len().clamp(1, AUTOMATIC_REPLICATION_FACTOR) as i16
        }
        None => inputs.defaults.default_replication_factor,
    };
    if replication_factor < 1 {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "{replication_factor}; must be at least 1"
        )));
    }
    if replication_factor as usize > brokers.len() {
        return Err(TopicError::NotEnoughBrokers {
            requested: replication_factor,
            available: brokers.len(),
        });
    }
    if replication_factor > inputs.replication_factor_max {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "{replication_factor}; at most {}",
            inputs.replication_factor_max
        )));
    }
    topic_config::check_min_insync(&request.config, replication_factor as usize)?;
    let start = random.below(brokers.len());
    let shift = random.below(brokers.len());
    // Rack-aware when every broker names its rack and there are several racks.
    let racked: Option<Vec<(i32, &str)>> = brokers
        .iter()
        .map(|broker| {
            let rack = image.brokers.get(broker)?.rack.as_deref()?;
            Some((*broker, rack))
        })
        .collect();
    let replicas = match racked {
        Some(racked) if racked.iter().any(|(_, rack)| *rack != racked[0].1) => {
            placement::place_replicas_in_racks(
                &racked,
                partitions as usize,
                replication_factor as usize,
                start,
                shift,
            )
        }
        _ => placement::place_replicas(
            &brokers,
            partitions as usize,
            replication_factor as usize,
            start,
            shift,
        ),
    };
    check_partition_budgets(image, &replicas, inputs.partition_budgets)?;
    Ok(vec![MetadataRecord::TopicCreated {
        name: request.name.clone(),
        topic_id: random.new_id().to_string(),
        config: request.config.clone(),
        replicas,
    }])
}

/// Refuses new partitions that would take a broker beyond its budget.
fn check_partition_budgets(
    image: &MetadataImage,
    new_replicas: &[Vec<i32>],
    budgets: &BTreeMap<i32, usize>,
) -> Result<(), TopicError> {
    for (&broker, &limit) in budgets {
        let requested = new_replicas
            .iter()
            .filter(|replicas| replicas.contains(&broker))
            .count();
        if requested == 0 {
            continue;
        }
        let held = image
            .topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .filter(|partition| partition.replicas.contains(&broker))
            .count();
        if held + requested > limit {
            return Err(TopicError::PartitionLimit {
                broker,
                requested,
                held,
                limit,
            });
        }
    }
    Ok(())
}

fn delete_topic(name: &str, image: &MetadataImage) -> Result<Vec<MetadataRecord>, TopicError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?;
    Ok(vec![MetadataRecord::TopicDeleted {
        topic_id: topic.topic_id.to_string(),
    }])
}

/// The merged overrides are validated as a whole, so that a change of one key cannot
/// leave the topic inconsistent with a key set earlier.
fn alter_topic_config(
    name: &str,
    changes: &BTreeMap<String, Option<String>>,
    image: &MetadataImage,
    inputs: &Inputs<'_>,
) -> Result<Vec<MetadataRecord>, TopicError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?;
    let mut config = topic.config.clone();
    for (key, value) in changes {
        match value {
            Some(value) => config.insert(key.clone(), value.clone()),
            None => config.remove(key),
        };
    }
    topic_config::resolve(inputs.defaults, &config)?;
    let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
    topic_config::check_min_insync(&config, replication_factor)?;
    Ok(vec![MetadataRecord::TopicConfigChanged {
        topic_id: topic.topic_id.to_string(),
        config,
    }])
}

fn bump_leader_epoch(
    name: &str,
    partition: i32,
    image: &MetadataImage,
) -> Result<Vec<MetadataRecord>, TopicError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| TopicError::UnknownTopic(name.to_owned()))?;
    let current = topic
        .partition(partition)
        .ok_or_else(|| TopicError::UnknownTopic(format!("{name}-{partition}")))?;
    Ok(vec![MetadataRecord::PartitionChanged {
        topic_id: topic.topic_id.to_string(),
        partition,
        leader: current.leader,
        leader_epoch: current.leader_epoch + 1,
        isr: current.isr.clone(),
        elr: current.elr.clone(),
        partition_epoch: Some(current.partition_epoch + 1),
    }])
}
