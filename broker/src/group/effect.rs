//! What the coordinator asks its runtime to do, and why groups change.

use super::records::OffsetRecord;

/// An effect of an event on the coordinator, for the runtime to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append `records` to the group's partition of `__consumer_offsets` and, once they
    /// are durable, apply each with its log offset
    /// ([`GroupCoordinator::apply_record`](super::GroupCoordinator::apply_record)).
    PersistRecords {
        group_id: String,
        records: Vec<OffsetRecord>,
    },
    /// The group epoch increased and a new target assignment was computed.
    Rebalanced {
        group_id: String,
        group_epoch: i32,
        reason: RebalanceReason,
    },
    /// A member left the group or was removed from it.
    MemberRemoved {
        group_id: String,
        member_id: String,
        reason: RemovalReason,
    },
}

/// Why a group's epoch increased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceReason {
    MemberJoined,
    MemberRemoved(RemovalReason),
    SubscriptionChanged,
    /// A subscribed topic was created, deleted or given more partitions.
    PartitionsChanged,
}

/// Why a member is no longer in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// It left (heartbeat with epoch -1).
    Left,
    /// It joined again (epoch 0) under the same member id: its old self is gone.
    Rejoined,
    /// No heartbeat within the session timeout.
    SessionTimeout,
    /// It kept revoked partitions beyond its rebalance timeout.
    RebalanceTimeout,
    /// It heartbeated with an epoch that is neither its current nor its previous one.
    Fenced,
}

impl RebalanceReason {
    pub fn name(self) -> &'static str {
        match self {
            Self::MemberJoined => "member_joined",
            Self::MemberRemoved(reason) => reason.name(),
            Self::SubscriptionChanged => "subscription_changed",
            Self::PartitionsChanged => "partitions_changed",
        }
    }
}

impl RemovalReason {
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "member_left",
            Self::Rejoined => "member_rejoined",
            Self::SessionTimeout => "session_timeout",
            Self::RebalanceTimeout => "rebalance_timeout",
            Self::Fenced => "member_fenced",
        }
    }
}
