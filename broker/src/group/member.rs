//! One member of a consumer group, as the coordinator sees it.

use std::collections::BTreeSet;

use super::assignor::PartitionSet;
use crate::storage::TopicPartition;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// From the request header of the member's heartbeats.
    pub client_id: String,
    /// The address its heartbeats come from.
    pub client_host: String,
    /// The target epoch the member has caught up with; sent back in every response.
    pub member_epoch: i32,
    /// The epoch before the last change, still accepted once (after a lost response).
    pub previous_member_epoch: i32,
    pub subscribed_topics: BTreeSet<String>,
    pub rebalance_timeout_ms: i32,
    /// When its last heartbeat arrived (the coordinator's monotonic milliseconds).
    pub last_heartbeat_ms: i64,
    /// The partitions it may own now: the part of its target that nobody else holds.
    pub assigned: PartitionSet,
    /// Partitions taken from it that it still reports owning; nobody else gets them
    /// until it stops reporting them.
    pub revoking: PartitionSet,
    /// When it must have given up `revoking`; `None` while it revokes nothing.
    pub revocation_deadline_ms: Option<i64>,
}

impl Member {
    pub fn new(
        member_id: String,
        client_id: String,
        client_host: String,
        subscribed_topics: BTreeSet<String>,
        rebalance_timeout_ms: i32,
        now_ms: i64,
    ) -> Self {
        Self {
            member_id,
            client_id,
            client_host,
            member_epoch: 0,
            previous_member_epoch: 0,
            subscribed_topics,
            rebalance_timeout_ms,
            last_heartbeat_ms: now_ms,
            assigned: PartitionSet::new(),
            revoking: PartitionSet::new(),
            revocation_deadline_ms: None,
        }
    }

    /// Whether the member owns (or is still giving up) `partition`.
    pub fn holds(&self, partition: &TopicPartition) -> bool {
        self.assigned.contains(partition) || self.revoking.contains(partition)
    }

    /// Moves the member to `epoch`, remembering the one before.
    pub fn advance_epoch(&mut self, epoch: i32) {
        if self.member_epoch != epoch {
            self.previous_member_epoch = self.member_epoch;
            self.member_epoch = epoch;
        }
    }

    /// The earliest time at which the member must be removed unless it acts.
    pub fn deadline_ms(&self, session_timeout_ms: i64) -> i64 {
        let session = self.last_heartbeat_ms.saturating_add(session_timeout_ms);
        self.revocation_deadline_ms
            .map_or(session, |revocation| revocation.min(session))
    }
}
