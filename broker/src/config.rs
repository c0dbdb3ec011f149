//! The broker's configuration: one typed struct, read from a TOML file, then
//! `FJORD_*` environment variables, then command-line flags (each later source wins).
//!
//! Every setting is declared once in the [`settings!`] table below, which generates the
//! config struct, its defaults, the flags (with `--help` text) and the environment
//! variable names, so that the three can never disagree. `docs/configuration.md` lists
//! the same table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::group::assignor::AssignorName;
use crate::storage::{Durability, LogConfig};

/// Most partitions one topic may have (the internal offsets topic included).
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Most replicas a partition may have (and never more than the brokers there are):
/// every follower fetches from the leader, and beyond a handful of copies more of
/// them cost the leader more than they protect.
pub const REPLICATION_FACTOR_MAX: i16 = 16;

/// The durability policy names used in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityPolicy {
    /// fsync before acknowledging (group commit).
    Fsync,
    /// fsync in the background every `log_flush_interval_ms` / `_bytes`.
    Interval,
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $type:ty = $default:expr, $env:literal; )*) => {
        /// Every broker setting. See `docs/configuration.md`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct BrokerConfig {
            $( $(#[doc = $doc])* pub $name: $type, )*
        }

        impl Default for BrokerConfig {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// Command-line flags and environment variables; each overrides the file.
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct ConfigOverrides {
            $( $(#[doc = $doc])* #[arg(long, env = $env)] pub $name: Option<$type>, )*
        }

        impl ConfigOverrides {
            fn apply(self, config: &mut BrokerConfig) {
                $( if let Some(value) = self.$name { config.$name = value; } )*
            }
        }

        /// (setting, environment variable, default, description) for documentation.
        pub fn describe_settings() -> Vec<(&'static str, &'static str, String, String)> {
            let defaults = BrokerConfig::default();
            vec![ $( (
                stringify!($name),
                $env,
                toml::Value::try_from(&defaults.$name).map(|v| v.to_string()).unwrap_or_default(),
                [$($doc),*].join(" ").trim().to_string(),
            ), )* ]
        }
    };
}

settings! {
    /// This broker's id in the cluster. Recorded in the data directory at the first
    /// start; a later start with another id is refused.
    node_id: i32 = 0, "FJORD_NODE_ID";
    /// Directory for partition logs and metadata; created if missing.
    data_dir: PathBuf = PathBuf::from("./fjord-data"), "FJORD_DATA_DIR";
    /// Address of the client listener (native protocol).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9192)), "FJORD_LISTEN";
    /// Host name given to clients in metadata; empty = the listener's IP.
    advertised_host: String = String::new(), "FJORD_ADVERTISED_HOST";
    /// Port given to clients in metadata; 0 = the client listener's port. Set it when clients reach the listener through a port mapping (e.g. `docker run -p`).
    advertised_port: u16 = 0, "FJORD_ADVERTISED_PORT";
    /// Address of a second client listener, for clients that reach the broker under other addresses than the clients of `listen` (for example clients on the Docker host through published ports, while clients in other containers use the containers' names); empty = none. Its clients are given every broker's `external_advertised` address in metadata. Requires `external_advertised`.
    external_listen: String = String::new(), "FJORD_EXTERNAL_LISTEN";
    /// `host:port` at which the clients of `external_listen` reach this broker, given to them in metadata (`127.0.0.1:9292` for a port published on the host). Required with `external_listen`.
    external_advertised: String = String::new(), "FJORD_EXTERNAL_ADVERTISED";
    /// Address of the admin HTTP API.
    http_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9193)), "FJORD_HTTP_LISTEN";
    /// Address of the broker-to-broker listener, where the metadata quorum's members talk (a single broker serves its quorum of one there).
    internal_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9194)), "FJORD_INTERNAL_LISTEN";
    /// Voters of the metadata quorum, `id@host:port` of each one's internal listener, separated by commas. Empty = a quorum of one: this node, at its internal listener. A node with the controller role must be listed, a broker-only one must not. With several voters, start every node with the same list; a node waits at start until a majority of them run and have elected a leader.
    controller_quorum_voters: String = String::new(), "FJORD_CONTROLLER_QUORUM_VOTERS";
    /// What this node runs, comma-separated: `broker` (holds partitions, serves clients, registers with the active controller) and `controller` (a voter of the metadata quorum). A broker-only node follows the quorum's committed metadata without voting; a controller-only node holds no partitions.
    process_roles: String = "broker,controller".to_owned(), "FJORD_PROCESS_ROLES";
    /// How often this broker heartbeats to the active controller, which renews its session; at start-up it registers and heartbeats until it is unfenced, and on shutdown it heartbeats until its leaderships have moved away.
    broker_heartbeat_interval_ms: u64 = 1_000, "FJORD_BROKER_HEARTBEAT_INTERVAL_MS";
    /// A broker whose heartbeats stop for this long is fenced by the active controller (its leaderships move away). A new process of the same node is refused while the old one's session lives. Must be more than twice `broker_heartbeat_interval_ms`.
    broker_session_timeout_ms: u64 = 6_000, "FJORD_BROKER_SESSION_TIMEOUT_MS";
    /// The rack (or availability zone) this broker is in; empty = unknown. When every broker of the cluster names one, a new topic's partitions span as many racks as their replication factor allows.
    broker_rack: String = String::new(), "FJORD_BROKER_RACK";
    /// Whether a broker that comes back (unfenced) gets back the leadership of the partitions it is the preferred (first) replica of, keeping leaders spread (of a replicated partition once it has caught up and rejoined the in-sync set); off, it leads only partitions that had no leader. Read by the active controller.
    auto_leader_rebalance: bool = true, "FJORD_AUTO_LEADER_REBALANCE";
    /// File to which the broker writes the addresses its listeners bound (one `setting=address` line each), replaced atomically once all are bound; useful with port 0. Empty = none.
    bound_addresses_file: PathBuf = PathBuf::new(), "FJORD_BOUND_ADDRESSES_FILE";
    /// Create unknown topics on produce and metadata requests.
    auto_create_topics: bool = false, "FJORD_AUTO_CREATE_TOPICS";
    /// Partitions of a topic created without a count.
    default_partitions: i32 = 1, "FJORD_DEFAULT_PARTITIONS";
    /// Replication factor of a topic created without one: 1 to 16, and no more than the unfenced brokers when it is created. 0 = three, or every unfenced broker when there are fewer.
    default_replication_factor: i16 = 0, "FJORD_DEFAULT_REPLICATION_FACTOR";
    /// In-sync replicas an acks=all write needs, for a topic that does not set `min.insync.replicas`; capped to the topic's replication factor (a single-replica topic needs one). Below it, acks=all produce is refused with NOT_ENOUGH_REPLICAS before anything is appended.
    min_insync_replicas: i16 = 2, "FJORD_MIN_INSYNC_REPLICAS";
    /// Most client connections at once; a connection beyond it gets BROKER_BUSY in answer to its first request, then is closed.
    max_connections: usize = 10_000, "FJORD_MAX_CONNECTIONS";
    /// Most partitions this broker holds; creating more is refused. 0 = what the open-file limit allows (3 files per partition, half of what the sealed-segment files leave).
    max_partitions: usize = 0, "FJORD_MAX_PARTITIONS";
    /// Most sealed-segment files kept open for reads (least recently used closed first); index files keep none. 0 = an eighth of the open files left after a reserve, at most 4096.
    max_open_segment_files: usize = 0, "FJORD_MAX_OPEN_SEGMENT_FILES";
    /// Partition logs opened (recovered) or closed at once at start-up and shutdown (threads mostly waiting for fsyncs). 0 = 16, or the number of cores when more.
    recovery_threads: usize = 0, "FJORD_RECOVERY_THREADS";
    /// Largest request accepted (frame payload); a larger one is read, discarded and answered with INVALID_REQUEST.
    max_request_bytes: usize = 16 << 20, "FJORD_MAX_REQUEST_BYTES";
    /// Most requests in flight on one connection; the broker stops reading beyond it.
    max_in_flight_requests: usize = 64, "FJORD_MAX_IN_FLIGHT_REQUESTS";
    /// Bytes of requests held in memory across all connections; a frame is reserved whole once its length is read, until answered; reading waits beyond it.
    request_memory_bytes: usize = 256 << 20, "FJORD_REQUEST_MEMORY_BYTES";
    /// Longest a request frame may take to arrive, from its first byte (or from when memory was found for it, if it waited); a connection that is slower is closed and its request memory freed.
    request_read_timeout_ms: u64 = 30_000, "FJORD_REQUEST_READ_TIMEOUT_MS";
    /// A follower that has not caught up with its leader's log end for this long leaves the partition's in-sync set (acks=all writes stop waiting for it); it rejoins once it has caught up.
    replica_lag_ms: u64 = 10_000, "FJORD_REPLICA_LAG_MS";
    /// Bytes of fetched records held in responses not yet written, across all connections; fetches wait beyond it. Each connection holds at most one fetch response.
    response_memory_bytes: usize = 256 << 20, "FJORD_RESPONSE_MEMORY_BYTES";
    /// A connection whose client accepts no byte of a response for this long is closed (it stopped reading), freeing the response's memory.
    response_write_timeout_ms: u64 = 30_000, "FJORD_RESPONSE_WRITE_TIMEOUT_MS";
    /// Longest a request may take before it is answered with REQUEST_TIMED_OUT.
    request_timeout_ms: u64 = 30_000, "FJORD_REQUEST_TIMEOUT_MS";
    /// Longest a graceful shutdown waits for in-flight requests.
    shutdown_timeout_ms: u64 = 10_000, "FJORD_SHUTDOWN_TIMEOUT_MS";
    /// Default durability policy of topics: fsync or interval.
    log_durability: DurabilityPolicy = DurabilityPolicy::Fsync, "FJORD_LOG_DURABILITY";
    /// Interval policy: fsync at least this often.
    log_flush_interval_ms: u64 = 1_000, "FJORD_LOG_FLUSH_INTERVAL_MS";
    /// Interval policy: fsync once this many bytes are waiting.
    log_flush_interval_bytes: u64 = 64 << 20, "FJORD_LOG_FLUSH_INTERVAL_BYTES";
    /// Default segment size before rolling.
    log_segment_bytes: u64 = 1 << 30, "FJORD_LOG_SEGMENT_BYTES";
    /// Default segment age before rolling.
    log_segment_ms: u64 = 7 * 24 * 3_600_000, "FJORD_LOG_SEGMENT_MS";
    /// Default size limit of a partition; -1 = unlimited.
    log_retention_bytes: i64 = -1, "FJORD_LOG_RETENTION_BYTES";
    /// Default age limit of records; -1 = forever.
    log_retention_ms: i64 = 7 * 24 * 3_600_000, "FJORD_LOG_RETENTION_MS";
    /// Bytes of log between two index entries.
    log_index_interval_bytes: u64 = 4096, "FJORD_LOG_INDEX_INTERVAL_BYTES";
    /// How often retention runs.
    log_retention_check_interval_ms: u64 = 60_000, "FJORD_LOG_RETENTION_CHECK_INTERVAL_MS";
    /// Default largest record batch a topic accepts.
    max_message_bytes: u32 = 8 << 20, "FJORD_MAX_MESSAGE_BYTES";
    /// Metadata log entries between two snapshots of the metadata image; the log behind a snapshot is removed.
    metadata_snapshot_entries: u64 = 1_000, "FJORD_METADATA_SNAPSHOT_ENTRIES";
    /// A voter that hears no metadata quorum leader for a random time between this and twice this calls an election; voters refuse votes for twice this after the leader's last heartbeat, so a leader that stops is replaced after about three to four times this. Give every voter the same value.
    metadata_election_timeout_ms: u64 = 1_000, "FJORD_METADATA_ELECTION_TIMEOUT_MS";
    /// How often the metadata quorum's leader heartbeats to the other voters; at most a third of metadata_election_timeout_ms.
    metadata_heartbeat_interval_ms: u64 = 300, "FJORD_METADATA_HEARTBEAT_INTERVAL_MS";
    /// How long a metadata change (topic creation, deletion, config change) may wait for the quorum, forwarding to the active controller included, before it fails with a retriable error.
    metadata_propose_timeout_ms: u64 = 10_000, "FJORD_METADATA_PROPOSE_TIMEOUT_MS";
    /// Partitions of the internal `__consumer_offsets` topic, used when the broker creates it (first start); group coordination is spread over them.
    offsets_topic_partitions: i32 = 8, "FJORD_OFFSETS_TOPIC_PARTITIONS";
    /// A group member that sends no heartbeat for this long is removed and its partitions reassigned.
    group_session_timeout_ms: u64 = 45_000, "FJORD_GROUP_SESSION_TIMEOUT_MS";
    /// How often group members heartbeat (told to them in every heartbeat response).
    group_heartbeat_interval_ms: u64 = 5_000, "FJORD_GROUP_HEARTBEAT_INTERVAL_MS";
    /// Most members of one consumer group; more are refused with GROUP_MAX_SIZE_REACHED.
    group_members_max: usize = 1_000, "FJORD_GROUP_MEMBERS_MAX";
    /// Server-side assignor of consumer groups: uniform (even, sticky) or range.
    group_assignor: AssignorName = AssignorName::Uniform, "FJORD_GROUP_ASSIGNOR";
}

/// A configuration that cannot work.
/// The second client listener (`external_listen`, `external_advertised`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalListener {
    /// The address to bind.
    pub listen: SocketAddr,
    /// What its clients are given in metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

/// The roles `process_roles` gives a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Holds partitions, serves clients, registers with the active controller.
    pub broker: bool,
    /// Votes in the metadata quorum, and may become the active controller.
    pub controller: bool,
}

impl ProcessRoles {
    /// `broker`, `controller`, or both, comma-separated.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut roles = Self {
            broker: false,
            controller: false,
        };
        for role in text.split(',').map(str::trim) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                other => {
                    return Err(format!(
                        "`{other}` is not a role: give broker, controller, or both (broker,controller)"
                    ));
                }
            }
        }
        Ok(roles)
    }
}

impl BrokerConfig {
    /// The roles of this node; the settings were validated, so they parse.
    pub fn roles(&self) -> ProcessRoles {
        ProcessRoles::parse(&self.process_roles).unwrap_or(ProcessRoles {
            broker: true,
            controller: true,
        })
    }

    /// File (if any), then overrides (flags and environment), then validation.
    pub fn load(file: Option<&Path>, overrides: ConfigOverrides) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?
            }
            None => BrokerConfig::default(),
        };
        overrides.apply(&mut config);
        config.validate()?;
        Ok(config)
    }

    /// A configuration for in-process tests: every listener on an ephemeral port of
    /// 127.0.0.1, data in `data_dir`, fast background intervals.
    pub fn for_tests(data_dir: &Path) -> Self {
        let ephemeral = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            data_dir: data_dir.to_owned(),
            listen: ephemeral,
            http_listen: ephemeral,
            internal_listen: ephemeral,
            shutdown_timeout_ms: 5_000,
            ..Self::default()
        }
    }

    /// Rejects settings that cannot work, naming the setting and why.
    /// The second client listener; `None` when `external_listen` is empty.
    pub fn external_listener(&self) -> Result<Option<ExternalListener>, ConfigError> {
        let invalid = |setting, reason: String| ConfigError::Invalid { setting, reason };
        match (
            self.external_listen.is_empty(),
            self.external_advertised.is_empty(),
        ) {
            (true, true) => return Ok(None),
            (true, false) => {
                return Err(invalid(
                    "external_advertised",
                    "is only used with external_listen, which is empty".into(),
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "external_advertised",
                    "must name the host:port clients of external_listen reach this broker at"
                        .into(),
                ));
            }
            (false, false) => {}
        }
        let listen: SocketAddr = self.external_listen.parse().map_err(|_| {
            invalid(
                "external_listen",
                format!("{:?} is not an address (ip:port)", self.external_listen),
            )
        })?;
        let advertised = self
            .external_advertised
            .rsplit_once(':')
            .and_then(|(host, port)| {
                let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                (!host.is_empty()).then(|| (host.to_owned(), port))
            })
            .ok_or_else(|| {
                invalid(
                    "external_advertised",
                    format!("{:?} is not host:port", self.external_advertised),
                )
            })?;
        Ok(Some(ExternalListener {
            listen,
            advertised_host: advertised.0,
            advertised_port: advertised.1,
        }))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.into(),
            })
        };
        if self.node_id < 0 {
            return invalid("node_id", "must be 0 or more");
        }
        let roles = match ProcessRoles::parse(&self.process_roles) {
            Ok(roles) => roles,
            Err(reason) => return invalid("process_roles", &reason),
        };
        let voters = match crate::quorum_voters::parse(&self.controller_quorum_voters) {
            Ok(voters) => voters,
            Err(error) => return invalid("controller_quorum_voters", &error.to_string()),
        };
        if roles.controller {
            if let Err(error) = crate::quorum_voters::check_member(self.node_id, &voters) {
                return invalid("controller_quorum_voters", &error.to_string());
            }
            if voters.is_empty() && !roles.broker {
                return invalid(
                    "process_roles",
                    "a controller-only node needs controller_quorum_voters and brokers to control",
                );
            }
        } else if voters.is_empty() || voters.contains_key(&self.node_id) {
            return invalid(
                "controller_quorum_voters",
                &format!(
                    "a broker-only node (process_roles = broker) follows the voters of controller_quorum_voters and must not be one of them; node {} is {}",
                    self.node_id,
                    if voters.is_empty() {
                        "given no voters"
                    } else {
                        "listed"
                    }
                ),
            );
        }
        if self.broker_heartbeat_interval_ms == 0 {
            return invalid("broker_heartbeat_interval_ms", "must be at least 1");
        }
        if self.broker_session_timeout_ms <= 2 * self.broker_heartbeat_interval_ms {
            return invalid(
                "broker_session_timeout_ms",
                &format!(
                    "{} ms must be more than twice broker_heartbeat_interval_ms ({} ms), or one late heartbeat would fence a live broker",
                    self.broker_session_timeout_ms, self.broker_heartbeat_interval_ms
                ),
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        self.external_listener()?;
        if self.metadata_snapshot_entries == 0 {
            return invalid("metadata_snapshot_entries", "must be at least 1");
        }
        if self.metadata_heartbeat_interval_ms < 10 {
            return invalid("metadata_heartbeat_interval_ms", "must be at least 10");
        }
        if self.metadata_election_timeout_ms < 3 * self.metadata_heartbeat_interval_ms {
            return invalid(
                "metadata_election_timeout_ms",
                &format!(
                    "{} ms must be at least three times metadata_heartbeat_interval_ms ({} ms), or a live leader would be deposed",
                    self.metadata_election_timeout_ms, self.metadata_heartbeat_interval_ms
                ),
            );
        }
        if self.replica_lag_ms < 100 {
            return invalid("replica_lag_ms", "must be at least 100");
        }
        if self.metadata_propose_timeout_ms < 100 {
            return invalid("metadata_propose_timeout_ms", "must be at least 100");
        }
        if self.default_partitions < 1 {
            return invalid("default_partitions", "must be at least 1");
        }
        if !(0..=REPLICATION_FACTOR_MAX).contains(&self.default_replication_factor) {
            return invalid(
                "default_replication_factor",
                &format!("must be between 0 (automatic) and {REPLICATION_FACTOR_MAX}"),
            );
        }
        if !(1..=REPLICATION_FACTOR_MAX).contains(&self.min_insync_replicas) {
            return invalid(
                "min_insync_replicas",
                &format!("must be between 1 and {REPLICATION_FACTOR_MAX}"),
            );
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        // Half a frame: a fetch response must carry the largest batch with room to spare.
        let request_bytes_max = fjord_protocol::limits::FRAME_BYTES_MAX / 2;
        if self.max_request_bytes < 1024 || self.max_request_bytes > request_bytes_max {
            return invalid(
                "max_request_bytes",
                &format!("must be between 1024 and {request_bytes_max}"),
            );
        }
        if self.max_in_flight_requests == 0 {
            return invalid("max_in_flight_requests", "must be at least 1");
        }
        if self.request_memory_bytes < self.max_request_bytes {
            return invalid(
                "request_memory_bytes",
                "must be at least max_request_bytes, or a largest request could never be read",
            );
        }
        if self.response_memory_bytes < self.max_request_bytes {
            return invalid(
                "response_memory_bytes",
                "must be at least max_request_bytes, or a largest batch could never be fetched",
            );
        }
        if self.request_timeout_ms == 0
            || self.request_read_timeout_ms == 0
            || self.response_write_timeout_ms == 0
        {
            return invalid(
                "request_timeout_ms",
                "request_timeout_ms, request_read_timeout_ms and response_write_timeout_ms must be at least 1",
            );
        }
        if self.log_segment_bytes < 1024 {
            return invalid("log_segment_bytes", "must be at least 1024");
        }
        if self.log_segment_ms == 0
            || self.log_flush_interval_ms == 0
            || self.log_retention_check_interval_ms == 0
        {
            return invalid("log_*_ms", "durations must be at least 1 ms");
        }
        if self.log_retention_bytes < -1 || self.log_retention_ms < -1 {
            return invalid("log_retention_*", "must be -1 (unlimited) or 0 or more");
        }
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&self.offsets_topic_partitions) {
            return invalid(
                "offsets_topic_partitions",
                &format!("must be between 1 and {TOPIC_PARTITIONS_MAX}"),
            );
        }
        if self.group_heartbeat_interval_ms == 0
            || self.group_heartbeat_interval_ms >= self.group_session_timeout_ms
        {
            return invalid(
                "group_heartbeat_interval_ms",
                "must be at least 1 and below group_session_timeout_ms, or members would expire between heartbeats",
            );
        }
        if self.group_session_timeout_ms > i32::MAX as u64 {
            return invalid(
                "group_session_timeout_ms",
                "must fit in an i32 of milliseconds",
            );
        }
        if self.group_members_max == 0 {
            return invalid("group_members_max", "must be at least 1");
        }
        if self.max_message_bytes as u64 > self.log_segment_bytes
            || self.max_message_bytes as usize > self.max_request_bytes
        {
            return invalid(
                "max_message_bytes",
                "must not exceed log_segment_bytes or max_request_bytes",
            );
        }
        Ok(())
    }

    /// The log configuration of a topic that overrides nothing.
    pub fn default_log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_segment_ms,
            retention_bytes: u64::try_from(self.log_retention_bytes).ok(),
            retention_ms: u64::try_from(self.log_retention_ms).ok(),
            durability: match self.log_durability {
                DurabilityPolicy::Fsync => Durability::Fsync,
                DurabilityPolicy::Interval => Durability::Interval {
                    interval_ms: self.log_flush_interval_ms,
                    interval_bytes: self.log_flush_interval_bytes,
                },
            },
            index_interval_bytes: self.log_index_interval_bytes,
            index_bytes_max: LogConfig::default().index_bytes_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults validate, a file is read, overrides win over it, and unknown keys
    /// and nonsense are refused with the setting's name.
    #[test]
    fn load_precedence_and_validation() {
        BrokerConfig::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fjord.toml");
        std::fs::write(&file, "node_id = 3\nlog_durability = \"interval\"\n").unwrap();
        let overrides = ConfigOverrides {
            node_id: Some(7),
            ..Default::default()
        };
        let config = BrokerConfig::load(Some(&file), overrides).unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.log_durability, DurabilityPolicy::Interval);

        std::fs::write(&file, "node_idd = 3\n").unwrap();
        let error = BrokerConfig::load(Some(&file), ConfigOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("node_idd"), "{error}");

        let overrides = ConfigOverrides {
            max_in_flight_requests: Some(0),
            ..Default::default()
        };
        let error = BrokerConfig::load(None, overrides).unwrap_err().to_string();
        assert!(error.contains("max_in_flight_requests"), "{error}");

        let overrides = ConfigOverrides {
            broker_heartbeat_interval_ms: Some(3_000),
            ..Default::default()
        };
        let error = BrokerConfig::load(None, overrides).unwrap_err().to_string();
        assert!(error.contains("broker_session_timeout_ms"), "{error}");
        assert!(error.contains("more than twice"), "{error}");

        // Roles: a broker-only node must not be a voter, a controller must be one.
        let roles = |node_id, roles: &str, list: &str| ConfigOverrides {
            node_id: Some(node_id),
            process_roles: Some(roles.to_owned()),
            controller_quorum_voters: Some(list.to_owned()),
            ..Default::default()
        };
        let three = "1@127.0.0.1:9194,2@127.0.0.1:9294,3@127.0.0.1:9394";
        let config = BrokerConfig::load(None, roles(4, "broker", three)).unwrap();
        assert_eq!(
            config.roles(),
            ProcessRoles {
                broker: true,
                controller: false
            }
        );
        BrokerConfig::load(None, roles(3, "controller", three)).unwrap();
        BrokerConfig::load(None, roles(3, " controller , broker ", three)).unwrap();
        for (node_id, text, list, setting) in [
            (3, "broker", three, "controller_quorum_voters"),
            (4, "broker", "", "controller_quorum_voters"),
            (4, "controller", three, "controller_quorum_voters"),
            (1, "controller", "", "process_roles"),
            (1, "brokers", three, "process_roles"),
            (1, "", three, "process_roles"),
        ] {
            let error = BrokerConfig::load(None, roles(node_id, text, list))
                .unwrap_err()
                .to_string();
            assert!(error.contains(setting), "{text} {list}: {error}");
        }

        // A leader's heartbeats must come well within the election timeout.
        let overrides = ConfigOverrides {
            metadata_election_timeout_ms: Some(500),
            metadata_heartbeat_interval_ms: Some(200),
            ..Default::default()
        };
        let error = BrokerConfig::load(None, overrides).unwrap_err().to_string();
        assert!(error.contains("metadata_election_timeout_ms"), "{error}");

        // More copies than any cluster should keep are refused.
        let overrides = ConfigOverrides {
            default_replication_factor: Some(17),
            ..Default::default()
        };
        let error = BrokerConfig::load(None, overrides).unwrap_err().to_string();
        assert!(error.contains("default_replication_factor"), "{error}");
        for min_insync_replicas in [0, 17] {
            let overrides = ConfigOverrides {
                min_insync_replicas: Some(min_insync_replicas),
                ..Default::default()
            };
            let error = BrokerConfig::load(None, overrides).unwrap_err().to_string();
            assert!(error.contains("min_insync_replicas"), "{error}");
        }

        // The voters must include this node.
        let voters = |node_id, list: &str| ConfigOverrides {
            node_id: Some(node_id),
            controller_quorum_voters: Some(list.to_owned()),
            ..Default::default()
        };
        BrokerConfig::load(None, voters(1, "1@127.0.0.1:9194")).unwrap();
        BrokerConfig::load(None, voters(2, "1@127.0.0.1:9194,2@127.0.0.1:9294")).unwrap();
        let error = BrokerConfig::load(None, voters(3, "1@127.0.0.1:9194,2@127.0.0.1:9294"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("controller_quorum_voters"), "{error}");
        assert!(
            describe_settings()
                .iter()
                .all(|(_, env, _, doc)| env.starts_with("FJORD_") && !doc.is_empty())
        );
    }

    /// The external listener needs both of its settings, each well formed.
    #[test]
    fn external_listener_settings() {
        let with = |listen: &str, advertised: &str| BrokerConfig {
            external_listen: listen.into(),
            external_advertised: advertised.into(),
            ..BrokerConfig::default()
        };
        assert_eq!(with("", "").external_listener().unwrap(), None);
        let listener = |listen: &str, host: &str, port| ExternalListener {
            listen: listen.parse().unwrap(),
            advertised_host: host.into(),
            advertised_port: port,
        };
        assert_eq!(
            with("0.0.0.0:19192", "127.0.0.1:9292")
                .external_listener()
                .unwrap(),
            Some(listener("0.0.0.0:19192", "127.0.0.1", 9292))
        );
        assert_eq!(
            with("[::]:19192", "[::1]:9292")
                .external_listener()
                .unwrap(),
            Some(listener("[::]:19192", "::1", 9292))
        );
        for (listen, advertised, setting) in [
            ("0.0.0.0:19192", "", "external_advertised"),
            ("", "127.0.0.1:9292", "external_advertised"),
            ("somewhere", "127.0.0.1:9292", "external_listen"),
            ("0.0.0.0:19192", "localhost", "external_advertised"),
            ("0.0.0.0:19192", ":9292", "external_advertised"),
            ("0.0.0.0:19192", "localhost:0", "external_advertised"),
        ] {
            let error = with(listen, advertised).validate().unwrap_err().to_string();
            assert!(
                error.contains(&format!("`{setting}`")),
                "{listen} {advertised}: {error}"
            );
        }
    }

    /// `docs/configuration.md` has a row for every setting, with its flag and
    /// environment variable.
    #[test]
    fn every_setting_is_documented() {
        let docs = include_str!("../../docs/configuration.md");
        for (name, env, _, _) in describe_settings() {
            let flag = name.replace('_', "-");
            let row = format!("| `{name}` / `--{flag}` | `{env}` |");
            assert!(
                docs.contains(&row),
                "docs/configuration.md has no row {row}"
            );
        }
    }
}
