//! Group consumer settings.

use crate::consumer::ConsumerConfig;
use crate::error::{Error, Result};

/// How a [`GroupConsumer`](super::GroupConsumer) behaves in its group.
///
/// ```
/// use fjord_client::{GroupConsumerConfig, OffsetReset};
///
/// let mut config = GroupConsumerConfig::new("shipping");
/// config.consumer.auto_offset_reset = OffsetReset::Earliest;
/// config.auto_commit_interval_ms = Some(1_000);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConsumerConfig {
    /// The group to join.
    pub group_id: String,
    /// Fetching and buffering; `auto_offset_reset` applies to partitions the group has
    /// no committed offset for.
    pub consumer: ConsumerConfig,
    /// Commit the positions of owned partitions this often, during `poll`; `None`
    /// commits only when the application asks. With auto-commit on, the positions of
    /// revoked partitions are also committed before they are given up, and all
    /// positions when the consumer closes; with it off, the offsets the application
    /// marked processed ([`GroupConsumer::mark_processed`](super::GroupConsumer::mark_processed)).
    pub auto_commit_interval_ms: Option<u64>,
    /// How long the application may take to give up a revoked partition (between two
    /// polls) before the coordinator removes this member.
    pub rebalance_timeout_ms: u64,
}

impl GroupConsumerConfig {
    /// Defaults for `group_id`: auto-commit every 5 s, a 5-minute rebalance timeout.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            consumer: ConsumerConfig::default(),
            auto_commit_interval_ms: Some(5_000),
            rebalance_timeout_ms: 300_000,
        }
    }

    /// Rejects settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: &str| Err(Error::Config(message.to_owned()));
        if self.group_id.is_empty()
            || self.group_id.len() > fjord_protocol::limits::GROUP_ID_BYTES_MAX
        {
            return invalid("group_id must have 1 to 255 bytes");
        }
        if self.auto_commit_interval_ms == Some(0) {
            return invalid("auto_commit_interval_ms must be positive");
        }
        if self.rebalance_timeout_ms == 0 || self.rebalance_timeout_ms > i32::MAX as u64 {
            return invalid("rebalance_timeout_ms must be positive and fit in an i32");
        }
        self.consumer.validate()
    }
}
