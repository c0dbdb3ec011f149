//! Topic config overrides in JSON: typed values (integers, enumerations) with the
//! bounds the broker enforces, so that the OpenAPI schema says exactly which single
//! values are valid. The metadata keeps Kafka's string map; this module converts both
//! ways. Which combinations work depends on the broker's defaults and limits (for
//! example `max.message.bytes` must not exceed `segment.bytes`), so that is checked by
//! [`crate::metadata::topic_config::resolve`] alone, and refused with 409.
//!
//! One table below declares every key once, for both JSON shapes: the overrides of a
//! topic (create, describe) and changes to them (a merge patch, where `null` removes an
//! override). A unit test checks the table's bounds against `resolve`.
//!
//! Requests are read as a JSON object first and then key by key (`from_json`), so that
//! an unknown key or a bad value is refused as `invalid_config` with a message naming
//! the setting, rather than as serde's error about the whole body.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `durability`: when appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before acknowledging.
    Fsync,
    /// fsync in the background every `flush.ms` or `flush.bytes`.
    Interval,
}

/// `cleanup.policy`: what happens to old records. Only `delete` (retention) exists yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CleanupPolicy {
    Delete,
}

/// `message.timestamp.type`: whose clock records' timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MessageTimestampType {
    /// The producer's create time, checked against the broker's clock.
    CreateTime,
    /// The broker's clock when it appends the batch.
    LogAppendTime,
}

/// A value as JSON and as the metadata stores it.
trait ConfigValue: Sized {
    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
    fn to_text(&self) -> String;
    fn from_text(text: &str) -> Option<Self>;
}

/// Reads a [`ConfigValue`] where serde expects `Deserialize`.
struct Read<T>(T);

impl<'de, T: ConfigValue> Deserialize<'de> for Read<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::read(deserializer).map(Self)
    }
}

/// An optional override: `null` or left out is `None`.
fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: ConfigValue,
{
    Ok(Option::<Read<T>>::deserialize(deserializer)?.map(|Read(value)| value))
}

macro_rules! number_config_value {
    ($($type:ty),*) => {$(
        impl ConfigValue for $type {
            fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::json::integer(deserializer)
            }

            fn to_text(&self) -> String {
                self.to_string()
            }

            fn from_text(text: &str) -> Option<Self> {
                text.trim().parse().ok()
            }
        }
    )*};
}
number_config_value!(i16, i32, i64);

macro_rules! enumeration_config_value {
    ($($type:ty),*) => {$(
        impl ConfigValue for $type {
            fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::deserialize(deserializer)
            }

            fn to_text(&self) -> String {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(text)) => text,
                    other => unreachable!("a unit variant serializes as a string: {other:?}"),
                }
            }

            fn from_text(text: &str) -> Option<Self> {
                serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
            }
        }
    )*};
}
enumeration_config_value!(Durability, CleanupPolicy, MessageTimestampType);

impl ConfigValue for bool {
    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize(deserializer)
    }

    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

/// Deserializes a present key, `null` included, as `Some`; an absent key stays `None`
/// through `#[serde(default)]`. That tells "remove the override" from "leave it".
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: ConfigValue,
{
    optional(deserializer).map(Some)
}

/// Reads one setting's JSON value with `read`; an error names the setting.
fn setting<T>(
    key: &str,
    value: Value,
    read: impl FnOnce(Value) -> Result<T, serde_json::Error>,
) -> Result<T, String> {
    read(value).map_err(|error| format!("topic config `{key}`: {error}"))
}

fn unknown_setting(key: &str, known: &[&str]) -> String {
    format!("unknown topic config `{key}`; known: {}", known.join(", "))
}

macro_rules! topic_config_keys {
    ($(
        $(#[doc = $doc:literal])*
        // `tt`, not `literal`: a `literal` fragment reaches the derives wrapped in an
        // invisible group, and utoipa then misses the serde rename.
        $field:ident: $type:ty = $key:tt, schema($($schema:tt)*);
    )*) => {
        /// A topic's config overrides; keys left out take the broker's defaults.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct TopicConfigOverrides {
            $(
                $(#[doc = $doc])*
                #[schema($($schema)*)]
                #[serde(
                    rename = $key,
                    default,
                    deserialize_with = "optional",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $field: Option<$type>,
            )*
        }

        /// Changes to a topic's config overrides, merged like a JSON Merge Patch
        /// (RFC 7396): a value sets that key, `null` removes its override (the broker
        /// default applies again), keys left out keep their overrides.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        #[schema(example = json!({"retention.ms": 86_400_000, "segment.bytes": null}))]
        pub struct TopicConfigChanges {
            $(
                $(#[doc = $doc])*
                #[schema($($schema)*)]
                #[serde(rename = $key, default, deserialize_with = "present")]
                pub $field: Option<Option<$type>>,
            )*
        }

        impl TopicConfigOverrides {
            /// The overrides as the metadata stores them.
            pub fn into_map(self) -> BTreeMap<String, String> {
                let mut map = BTreeMap::new();
                $(
                    if let Some(value) = self.$field {
                        map.insert($key.to_owned(), value.to_text());
                    }
                )*
                map
            }

            /// Stored overrides as JSON. They were validated when set; a value that no
            /// longer reads (an older broker's format) is left out with a warning
            /// rather than failing the whole topic.
            pub fn from_map(map: &BTreeMap<String, String>) -> Self {
                let mut overrides = Self::default();
                for (key, text) in map {
                    let read = match key.as_str() {
                        $( $key => ConfigValue::from_text(text).map(|value| overrides.$field = Some(value)), )*
                        _ => None,
                    };
                    if read.is_none() {
                        tracing::warn!(%key, value = %text, "stored topic config cannot be shown");
                    }
                }
                overrides
            }
        }

        /// Every key, as JSON names them.
        const JSON_KEYS: &[&str] = &[$($key),*];

        impl TopicConfigOverrides {
            /// Reads overrides from a JSON object. Every error names the setting: an
            /// unknown key, a value of the wrong type, or one outside its type's range
            /// (the broker's own bounds are checked by `resolve`).
            pub fn from_json(object: Map<String, Value>) -> Result<Self, String> {
                let mut overrides = Self::default();
                for (key, value) in object {
                    match key.as_str() {
                        $( $key => overrides.$field = setting($key, value, optional)?, )*
                        other => return Err(unknown_setting(other, JSON_KEYS)),
                    }
                }
                Ok(overrides)
            }
        }

        impl TopicConfigChanges {
            /// Reads changes from a JSON object (`null` removes an override), with
            /// errors that name the setting, as [`TopicConfigOverrides::from_json`].
            pub fn from_json(object: Map<String, Value>) -> Result<Self, String> {
                let mut changes = Self::default();
                for (key, value) in object {
                    match key.as_str() {
                        $( $key => changes.$field = setting($key, value, present)?, )*
                        other => return Err(unknown_setting(other, JSON_KEYS)),
                    }
                }
                Ok(changes)
            }

            /// The changes as the controller takes them: `None` removes a key.
            pub fn into_map(self) -> BTreeMap<String, Option<String>> {
                let mut map = BTreeMap::new();
                $(
                    if let Some(change) = self.$field {
                        map.insert($key.to_owned(), change.map(|value| value.to_text()));
                    }
                )*
                map
            }
        }
    };
}

topic_config_keys! {
    /// Delete segments older than this many milliseconds; -1 keeps them forever.
    retention_ms: i64 = "retention.ms", schema(minimum = -1);
    /// Keep each partition under this many bytes; -1 means no limit.
    retention_bytes: i64 = "retention.bytes", schema(minimum = -1);
    /// Roll the active segment at this size. Must be at least `max.message.bytes`.
    segment_bytes: i64 = "segment.bytes", schema(minimum = 1024);
    /// Roll the active segment at this age, in milliseconds.
    segment_ms: i64 = "segment.ms", schema(minimum = 1);
    /// Largest record batch accepted, in bytes. At most `segment.bytes` and the
    /// broker's `max_request_bytes`. (An i32, as on the wire: the broker stores a u32,
    /// but requests are far smaller than 2 GiB.)
    max_message_bytes: i32 = "max.message.bytes", schema(minimum = 64, maximum = 2147483647);
    /// When appended records are forced to disk.
    durability: Durability = "durability", schema(inline);
    /// The `interval` policy's period, in milliseconds.
    flush_ms: i64 = "flush.ms", schema(minimum = 1);
    /// The `interval` policy's byte threshold.
    flush_bytes: i64 = "flush.bytes", schema(minimum = 1);
    /// In-sync replicas an `acks=all` produce needs. At most the replication factor.
    min_insync_replicas: i16 = "min.insync.replicas", schema(minimum = 1, maximum = 32767);
    /// Whether a replica outside the in-sync set may lead when none in it can: the
    /// partition is available again, without the acknowledged records that replica
    /// lacks. Default: false.
    unclean_leader_election_enable: bool = "unclean.leader.election.enable", schema(example = false);
    /// `delete`: retention removes old segments.
    cleanup_policy: CleanupPolicy = "cleanup.policy", schema(inline);
    /// `CreateTime` keeps the producer's timestamps; `LogAppendTime` stamps the
    /// broker's clock on every batch it appends.
    message_timestamp_type: MessageTimestampType = "message.timestamp.type", schema(inline);
    /// Create time: a record timestamp further behind the broker's clock is refused
    /// (`INVALID_TIMESTAMP`). Default: no bound.
    message_timestamp_before_max_ms: i64 = "message.timestamp.before.max.ms", schema(minimum = 0);
    /// Create time: a record timestamp further ahead of the broker's clock is refused
    /// (`INVALID_TIMESTAMP`). Default: 3600000 (one hour).
    message_timestamp_after_max_ms: i64 = "message.timestamp.after.max.ms", schema(minimum = 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::metadata::topic_config::{KEYS, TopicConfigError, resolve};

    fn outcome(key: &str, value: &str) -> Result<(), TopicConfigError> {
        let defaults = BrokerConfig::default();
        // A small max.message.bytes, so that a small segment.bytes alone is consistent.
        let mut overrides: BTreeMap<String, String> =
            [("max.message.bytes".to_owned(), "64".to_owned())].into();
        overrides.insert(key.to_owned(), value.to_owned());
        resolve(&defaults, &overrides).map(drop)
    }

    /// The JSON schema has a property for every key the broker knows, and its bounds
    /// are the broker's: each minimum is valid and one below it is invalid, each
    /// enumeration value is valid. So a value the schema allows is never refused as
    /// invalid (only, in combination, as inconsistent).
    #[test]
    fn schema_bounds_are_the_brokers() {
        let schema =
            serde_json::to_value(<TopicConfigOverrides as utoipa::PartialSchema>::schema())
                .unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let mut keys: Vec<&str> = properties.keys().map(String::as_str).collect();
        let mut known: Vec<&str> = KEYS.iter().copied().chain(["cleanup.policy"]).collect();
        keys.sort_unstable();
        known.sort_unstable();
        assert_eq!(keys, known);
        for (key, property) in properties {
            // An optional value is `oneOf: [value, null]` or `type: [.., "null"]`.
            let value = property["oneOf"]
                .as_array()
                .and_then(|choices| choices.iter().find(|choice| choice["type"] != "null"))
                .unwrap_or(property);
            if let Some(values) = value["enum"].as_array() {
                for value in values {
                    outcome(key, value.as_str().unwrap()).unwrap();
                }
                continue;
            }
            let types = value["type"].as_array().cloned().unwrap_or_default();
            if types.contains(&Value::from("boolean")) {
                outcome(key, "true").unwrap();
                outcome(key, "false").unwrap();
                assert!(matches!(
                    outcome(key, "yes"),
                    Err(TopicConfigError::Invalid(_))
                ));
                continue;
            }
            assert!(types.contains(&Value::from("integer")), "{key}: {value}");
            let minimum = value["minimum"]
                .as_i64()
                .unwrap_or_else(|| panic!("{key} has no minimum: {value}"));
            outcome(key, &minimum.to_string()).unwrap();
            // The largest value the field's type takes must be in the schema too.
            let maximum = value["maximum"].as_i64().unwrap_or(i64::MAX);
            assert!(
                !matches!(
                    outcome(key, &maximum.to_string()),
                    Err(TopicConfigError::Invalid(_))
                ),
                "{key} at {maximum}"
            );
            let format = value["format"].as_str().unwrap_or_default();
            assert!(
                format == "int64" || value["maximum"].is_i64(),
                "{key}: a {format} needs an explicit maximum"
            );
            assert!(
                matches!(
                    outcome(key, &(minimum - 1).to_string()),
                    Err(TopicConfigError::Invalid(_))
                ),
                "{key} below {minimum}"
            );
        }
    }

    /// Overrides convert to the stored strings and back unchanged; changes keep the
    /// difference between `null` (remove) and left out (keep).
    #[test]
    fn conversions_round_trip() {
        let overrides: TopicConfigOverrides = serde_json::from_value(serde_json::json!({
            "retention.ms": -1, "durability": "interval", "min.insync.replicas": 2,
        }))
        .unwrap();
        let map = overrides.clone().into_map();
        assert_eq!(map["retention.ms"], "-1");
        assert_eq!(map["durability"], "interval");
        assert_eq!(TopicConfigOverrides::from_map(&map), overrides);

        let changes: TopicConfigChanges = serde_json::from_value(serde_json::json!({
            "retention.ms": null, "flush.ms": 10,
        }))
        .unwrap();
        assert_eq!(
            changes.into_map(),
            [
                ("flush.ms".to_owned(), Some("10".to_owned())),
                ("retention.ms".to_owned(), None),
            ]
            .into()
        );
        let unknown = serde_json::from_value::<TopicConfigChanges>(serde_json::json!({"x": 1}));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `x`")
        );
    }
}
