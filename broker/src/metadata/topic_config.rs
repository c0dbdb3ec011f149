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

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::storage::{Durability, LogConfig};

/// Every key a topic may set.
pub const KEYS: [&str; 9] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "durability",
    "flush.ms",
    "flush.bytes",
    "min.insync.replicas",
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
    pub min_insync_replicas: i16,
}

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
    let mut min_insync_replicas = 1i16;
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
