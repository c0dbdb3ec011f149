//! Per-topic configuration: the keys a topic may override and how they become a
//! [`LogConfig`]. Keys follow Kafka's names where Kafka has the setting.
//!
//! | key | meaning |
//! |---|---|
//! | `retention.ms` | delete segments older than this; -1 = forever |
//! | `retention.bytes` | keep each partition under this size; -1 = unlimited |
//! | `segment.bytes` | roll segments at this size |
//! | `segment.ms` | roll segments at this age |
//! | `max.message.bytes` | largest record batch accepted |
//! | `durability` | `fsync` (acknowledged = on disk) or `interval` |
//! | `flush.ms`, `flush.bytes` | the `interval` policy's period and byte threshold |
//! | `min.insync.replicas` | acks=all needs this many in-sync replicas |
//! | `cleanup.policy` | `delete` (compaction comes later) |
//! | `message.timestamp.type` | `CreateTime` (the producer's) or `LogAppendTime` (the broker stamps) |
//! | `message.timestamp.before.max.ms` | create time may be at most this far behind the broker's clock |
//! | `message.timestamp.after.max.ms` | create time may be at most this far ahead of the broker's clock |

use std::collections::BTreeMap;

use fjord_protocol::batch::TimestampType;

use crate::config::BrokerConfig;
use crate::storage::{Durability, LogConfig};

/// Default of `message.timestamp.before.max.ms`: no bound (Kafka's default).
pub const TIMESTAMP_BEFORE_MAX_MS_DEFAULT: u64 = i64::MAX as u64;
/// Default of `message.timestamp.after.max.ms`: one hour (Kafka's default since 4.0).
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: u64 = 3_600_000;

/// Every key a topic may set.
pub const KEYS: [&str; 13] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "durability",
    "flush.ms",
    "flush.bytes",
    "min.insync.replicas",
    UNCLEAN_LEADER_ELECTION,
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
];
const CLEANUP_POLICY: &str = "cleanup.policy";

/// Why topic config overrides were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// A key is unknown, or its value is invalid by itself.
    #[error("{0}")]
    Invalid(String),
    /// Every value is valid by itself, but together with each other and the broker's
    /// defaults and limits they cannot work.
    #[error("{0}")]
    Inconsistent(String),
}

/// A topic's effective settings: broker defaults with the topic's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub max_message_bytes: u32,
    /// The topic's `min.insync.replicas`, or else the broker's; see [`Self::min_insync_for`].
    pub min_insync_replicas: i16,
    /// Whether a replica outside the in-sync set may lead when none in it can.
    pub unclean_leader_election: bool,
    /// Whose clock the records' timestamps come from.
    pub timestamp_type: TimestampType,
    /// A create-time timestamp more than this many ms before the broker's clock is
    /// refused with `INVALID_TIMESTAMP`.
    pub timestamp_before_max_ms: u64,
    /// A create-time timestamp more than this many ms after the broker's clock is
    /// refused with `INVALID_TIMESTAMP`.
    pub timestamp_after_max_ms: u64,
}

impl TopicConfig {
    /// In-sync replicas an acks=all write needs on a partition of `replicas` replicas:
    /// the setting, capped to the replication factor. Only the broker's default is ever
    /// capped: a topic's own setting above its replication factor is refused when it is
    /// set ([`check_min_insync`]).
    pub fn min_insync_for(&self, replicas: usize) -> usize {
        (self.min_insync_replicas.max(1) as usize).min(replicas.max(1))
    }
}

/// Refuses a topic's own `min.insync.replicas` above its replication factor: acks=all
/// writes to it could never succeed. Call after [`resolve`] accepted `overrides`.
pub fn check_min_insync(
    overrides: &BTreeMap<String, String>,
    replication_factor: usize,
) -> Result<(), TopicConfigError> {
    let Some(value) = overrides.get("min.insync.replicas") else {
        return Ok(());
    };
    let min_insync = number(MIN_INSYNC_KEY, value, 1usize)?;
    if min_insync > replication_factor {
        return Err(TopicConfigError::Inconsistent(format!(
            "`{MIN_INSYNC_KEY}` ({min_insync}) must not exceed the topic's replication factor ({replication_factor}): acks=all writes could never succeed"
        )));
    }
    Ok(())
}

/// The topic setting of how many in-sync replicas acks=all writes need.
pub const MIN_INSYNC_KEY: &str = "min.insync.replicas";

/// The topic setting that lets a replica outside the in-sync set lead when none in it
/// can (`true` or `false`; off by default).
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

fn number<T>(key: &str, value: &str, min: T) -> Result<T, TopicConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match value.trim().parse::<T>() {
        Ok(number) if number >= min => Ok(number),
        _ => Err(TopicConfigError::Invalid(format!(
            "`{key}` must be a whole number of at least {min}, got `{value}`"
        ))),
    }
}

/// Resolves `overrides` on top of the broker's defaults, rejecting unknown keys and
/// invalid values with a message that names the key.
pub fn resolve(
    defaults: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicConfig, TopicConfigError> {
    let mut log = defaults.default_log_config();
    let mut max_message_bytes = defaults.max_message_bytes;
    let mut min_insync_replicas = defaults.min_insync_replicas;
    let mut unclean_leader_election = false;
    let mut timestamp_type = TimestampType::CreateTime;
    let mut timestamp_before_max_ms = TIMESTAMP_BEFORE_MAX_MS_DEFAULT;
    let mut timestamp_after_max_ms = TIMESTAMP_AFTER_MAX_MS_DEFAULT;
    let (mut flush_ms, mut flush_bytes) = (
        defaults.log_flush_interval_ms,
        defaults.log_flush_interval_bytes,
    );
    let mut durability = None;
    for (key, value) in overrides {
        match key.as_str() {
            "retention.ms" => log.retention_ms = u64::try_from(number::<i64>(key, value, -1)?).ok(),
            "retention.bytes" => {
                log.retention_bytes = u64::try_from(number::<i64>(key, value, -1)?).ok()
            }
            "segment.bytes" => log.segment_bytes = number(key, value, 1024u64)?,
            "segment.ms" => log.segment_ms = number(key, value, 1u64)?,
            "max.message.bytes" => max_message_bytes = number(key, value, 64u32)?,
            "flush.ms" => flush_ms = number(key, value, 1u64)?,
            "flush.bytes" => flush_bytes = number(key, value, 1u64)?,
            "min.insync.replicas" => min_insync_replicas = number(key, value, 1i16)?,
            UNCLEAN_LEADER_ELECTION => {
                unclean_leader_election = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(TopicConfigError::Invalid(format!(
                            "`{UNCLEAN_LEADER_ELECTION}` must be `true` or `false`, got `{other}`"
                        )));
                    }
                }
            }
            "message.timestamp.type" => {
                timestamp_type = match value.as_str() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(TopicConfigError::Invalid(format!(
                            "`message.timestamp.type` must be `CreateTime` or `LogAppendTime`, got `{other}`"
                        )));
                    }
                }
            }
            "message.timestamp.before.max.ms" => {
                timestamp_before_max_ms =
                    u64::try_from(number::<i64>(key, value, 0)?).expect("at least 0")
            }
            "message.timestamp.after.max.ms" => {
                timestamp_after_max_ms =
                    u64::try_from(number::<i64>(key, value, 0)?).expect("at least 0")
            }
            "durability" => match value.as_str() {
                "fsync" | "interval" => durability = Some(value.clone()),
                other => {
                    return Err(TopicConfigError::Invalid(format!(
                        "`durability` must be `fsync` or `interval`, got `{other}`"
                    )));
                }
            },
            CLEANUP_POLICY if value == "delete" => {}
            CLEANUP_POLICY => {
                return Err(TopicConfigError::Invalid(format!(
                    "`cleanup.policy` must be `delete` (compaction is not built yet), got `{value}`"
                )));
            }
            other => {
                return Err(TopicConfigError::Invalid(format!(
                    "unknown topic config `{other}`; known: {}, {CLEANUP_POLICY}",
                    KEYS.join(", ")
                )));
            }
        }
    }
    let interval = Durability::Interval {
        interval_ms: flush_ms,
        interval_bytes: flush_bytes,
    };
    log.durability = match durability.as_deref() {
        Some("fsync") => Durability::Fsync,
        Some(_) => interval,
        None if matches!(log.durability, Durability::Interval { .. }) => interval,
        None => log.durability,
    };
    if u64::from(max_message_bytes) > log.segment_bytes {
        return Err(TopicConfigError::Inconsistent(format!(
            "`max.message.bytes` ({max_message_bytes}) must not exceed `segment.bytes` ({})",
            log.segment_bytes
        )));
    }
    if max_message_bytes as usize > defaults.max_request_bytes {
        return Err(TopicConfigError::Inconsistent(format!(
            "`max.message.bytes` ({max_message_bytes}) must not exceed the broker's max_request_bytes ({})",
            defaults.max_request_bytes
        )));
    }
    Ok(TopicConfig {
        log,
        max_message_bytes,
        min_insync_replicas,
        unclean_leader_election,
        timestamp_type,
        timestamp_before_max_ms,
        timestamp_after_max_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overrides apply; unknown keys and bad values are refused by name as invalid,
    /// valid values that cannot work together as inconsistent.
    #[test]
    fn resolve_overrides() {
        let defaults = BrokerConfig::default();
        let config: BTreeMap<String, String> = [
            ("retention.ms", "-1"),
            ("durability", "interval"),
            ("flush.ms", "50"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let resolved = resolve(&defaults, &config).unwrap();
        assert_eq!(resolved.log.retention_ms, None);
        assert_eq!(
            resolved.log.durability,
            Durability::Interval {
                interval_ms: 50,
                interval_bytes: defaults.log_flush_interval_bytes
            }
        );
        for (key, value) in [
            ("retention.mss", "1"),
            ("segment.bytes", "10"),
            ("durability", "sometimes"),
            ("retention.ms", "x"),
            ("message.timestamp.type", "create"),
            ("message.timestamp.after.max.ms", "-1"),
        ] {
            let error =
                resolve(&defaults, &[(key.to_string(), value.to_string())].into()).unwrap_err();
            assert!(matches!(error, TopicConfigError::Invalid(_)), "{error}");
            assert!(error.to_string().contains(key), "{error}");
        }
        // Valid values that do not fit the broker's default max.message.bytes.
        let error = resolve(&defaults, &[("segment.bytes".into(), "1024".into())].into());
        assert!(
            matches!(error, Err(TopicConfigError::Inconsistent(_))),
            "{error:?}"
        );
    }
}
