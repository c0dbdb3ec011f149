//! Membership: the background task that heartbeats, and the state it shares with the
//! consumer.
//!
//! ```text
//!   GroupConsumer ── subscription, owned (+ acknowledged update) ──▶ heartbeat task
//!        ▲                                                              │
//!        └──────── assignment updates, member id and epoch ◀────────────┘
//! ```
//!
//! The task joins the group, heartbeats every `heartbeat_interval_ms` (and at once
//! whenever the consumer's owned partitions change, so that released partitions reach
//! their next owner quickly), and publishes every new assignment. The consumer acts on
//! an assignment during `poll` and reports what it owns afterwards, acknowledging the
//! update it acted on.
//!
//! What a heartbeat reports as owned is what the consumer owns *plus* the latest
//! assignment it has not acted on yet: the consumer may start consuming those at any
//! moment, so the coordinator must not give them to anyone else. That is the rule the
//! coordinator's incremental rebalancing relies on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, JOIN_MEMBER_EPOCH,
    LEAVE_MEMBER_EPOCH, TopicPartitions,
};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::sync::watch;

use super::coordinator::{CoordinatorLink, code_invalidates_coordinator};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;

/// Retries of heartbeats that failed (lost coordinator, connection errors).
const HEARTBEAT_BACKOFF: Backoff = Backoff {
    initial_ms: 50,
    max_ms: 2_000,
};
/// The wait after a heartbeat the coordinator answered, until it says otherwise.
const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(3);
/// How long leaving the group may take when the consumer closes.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who this member is in the group right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Empty until the first join succeeds, and again after the membership was lost.
    pub member_id: String,
    pub member_epoch: i32,
}

/// The latest word from the coordinator, numbered so the consumer can acknowledge it.
#[derive(Debug, Clone)]
pub(crate) struct AssignmentUpdate {
    pub sequence: u64,
    pub change: AssignmentChange,
}

#[derive(Debug, Clone)]
pub(crate) enum AssignmentChange {
    /// Own exactly these partitions.
    Assigned(BTreeSet<TopicPartition>),
    /// The membership was lost: drop everything without committing.
    Lost,
    /// The group refused this member for good (say, it is full); the task stopped.
    Failed(Error),
}

/// What the consumer owns, after acting on update `acknowledged`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OwnedReport {
    pub partitions: BTreeSet<TopicPartition>,
    pub acknowledged: u64,
}

/// The state shared by a group consumer and its heartbeat task.
#[derive(Debug)]
pub(crate) struct Membership {
    pub link: CoordinatorLink,
    pub rebalance_timeout_ms: i32,
    pub identity: watch::Sender<Identity>,
    pub subscription: watch::Sender<Vec<String>>,
    pub updates: watch::Sender<AssignmentUpdate>,
    pub owned: watch::Sender<OwnedReport>,
    pub leave: watch::Sender<bool>,
    /// Heartbeat now: a commit found that the coordinator no longer knows this member.
    pub wake: tokio::sync::Notify,
}

impl Membership {
    pub(crate) fn new(link: CoordinatorLink, rebalance_timeout_ms: i32) -> Self {
        Self {
            link,
            rebalance_timeout_ms,
            identity: watch::Sender::new(Identity::default()),
            subscription: watch::Sender::new(Vec::new()),
            updates: watch::Sender::new(AssignmentUpdate {
                sequence: 0,
                change: AssignmentChange::Assigned(BTreeSet::new()),
            }),
            owned: watch::Sender::new(OwnedReport::default()),
            leave: watch::Sender::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn identity(&self) -> Identity {
        self.identity.borrow().clone()
    }
}

pub(crate) fn to_wire(partitions: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    TopicPartitions::group(
        partitions
            .iter()
            .map(|partition| (partition.topic.as_str(), partition.partition)),
    )
}

pub(crate) fn from_wire(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    TopicPartitions::pairs(topics)
        .map(|(topic, partition)| TopicPartition::new(topic, partition))
        .collect()
}

/// The heartbeat task's own state.
struct Heartbeats {
    membership: Arc<Membership>,
    identity: Identity,
    /// The subscription must go with the next heartbeat (join, change).
    send_subscription: bool,
    latest: AssignmentUpdate,
    failures: u32,
}

/// What to do after a heartbeat.
enum Next {
    /// Heartbeat again after this long (sooner if something changes).
    After(Duration),
    Stop,
}

/// Runs until the consumer leaves (or is dropped, which aborts the task without
/// leaving, exactly like a crash).
pub(crate) async fn run(membership: Arc<Membership>) {
    let mut subscription = membership.subscription.subscribe();
    let mut owned = membership.owned.subscribe();
    let mut leave = membership.leave.subscribe();
    let latest = membership.updates.borrow().clone();
    let woken = membership.clone();
    let mut heartbeats = Heartbeats {
        latest,
        membership,
        identity: Identity::default(),
        send_subscription: true,
        failures: 0,
    };
    loop {
        if *leave.borrow_and_update() {
            heartbeats.leave().await;
            return;
        }
        if subscription.has_changed().unwrap_or(false) {
            subscription.mark_unchanged();
            heartbeats.send_subscription = true;
        }
        let report = owned.borrow_and_update().clone();
        let delay = match heartbeats.beat(report).await {
            Next::After(delay) => delay,
            Next::Stop => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = subscription.changed() => {}
            _ = owned.changed() => {}
            _ = leave.changed() => {}
            _ = woken.wake.notified() => {}
        }
    }
}

impl Heartbeats {
    async fn beat(&mut self, report: OwnedReport) -> Next {
        let mut reported = report.partitions;
        if report.acknowledged < self.latest.sequence
            && let AssignmentChange::Assigned(partitions) = &self.latest.change
        {
            reported.extend(partitions.iter().cloned());
        }
        let joining = self.identity.member_id.is_empty();
        let request = ConsumerGroupHeartbeatRequest {
            group_id: self.membership.link.group_id().to_owned(),
            member_id: self.identity.member_id.clone(),
            member_epoch: if joining {
                JOIN_MEMBER_EPOCH
            } else {
                self.identity.member_epoch
            },
            rebalance_timeout_ms: self.membership.rebalance_timeout_ms,
            subscribed_topic_names: (self.send_subscription || joining)
                .then(|| self.membership.subscription.borrow().clone()),
            owned_partitions: to_wire(&reported),
        };
        let result: Result<ConsumerGroupHeartbeatResponse> = self
            .membership
            .link
            .request(ApiKey::ConsumerGroupHeartbeat, &request)
            .await;
        match result {
            Ok(response) if response.error_code.is_ok() => {
                self.accept(response, request.subscribed_topic_names.is_some())
            }
            Ok(response) => self.refused(response),
            Err(error) if error.is_retriable() => {
                tracing::debug!(group = self.membership.link.group_id(), %error, "heartbeat failed; retrying");
                self.failures = self.failures.saturating_add(1);
                Next::After(HEARTBEAT_BACKOFF.delay(self.failures))
            }
            Err(error) => self.fail(error),
        }
    }

    fn accept(
        &mut self,
        response: ConsumerGroupHeartbeatResponse,
        subscription_sent: bool,
    ) -> Next {
        self.failures = 0;
        if subscription_sent {
            self.send_subscription = false;
        }
        self.identity = Identity {
            member_id: response.member_id,
            member_epoch: response.member_epoch,
        };
        self.membership.identity.send_if_modified(|identity| {
            std::mem::replace(identity, self.identity.clone()) != self.identity
        });
        let assignment = from_wire(&response.assignment);
        let unchanged = matches!(&self.latest.change, AssignmentChange::Assigned(latest) if *latest == assignment);
        if !unchanged {
            self.publish(AssignmentChange::Assigned(assignment));
        }
        let interval = u64::try_from(response.heartbeat_interval_ms).unwrap_or(0);
        Next::After(if interval == 0 {
            HEARTBEAT_INTERVAL_DEFAULT
        } else {
            Duration::from_millis(interval)
        })
    }

    fn refused(&mut self, response: ConsumerGroupHeartbeatResponse) -> Next {
        let code = response.error_code;
        let group_id = self.membership.link.group_id().to_owned();
        self.failures = self.failures.saturating_add(1);
        match code {
            ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
                tracing::info!(group = %group_id, %code, "membership lost; joining again");
                self.identity = Identity::default();
                self.membership.identity.send_replace(Identity::default());
                self.send_subscription = true;
                self.publish(AssignmentChange::Lost);
                // The first rejoin goes at once; repeated losses back off.
                Next::After(HEARTBEAT_BACKOFF.delay(self.failures.saturating_sub(1)))
            }
            code if code_invalidates_coordinator(code) || code.is_retriable() => {
                self.membership.link.invalidate();
                Next::After(HEARTBEAT_BACKOFF.delay(self.failures))
            }
            code => self.fail(Error::Broker {
                context: format!("heartbeat of group '{group_id}'"),
                code,
                message: response.error_message,
            }),
        }
    }

    fn fail(&mut self, error: Error) -> Next {
        tracing::warn!(group = self.membership.link.group_id(), %error, "the group refused this member; stopping");
        self.publish(AssignmentChange::Failed(error));
        Next::Stop
    }

    fn publish(&mut self, change: AssignmentChange) {
        self.latest = AssignmentUpdate {
            sequence: self.latest.sequence + 1,
            change,
        };
        self.membership.updates.send_replace(self.latest.clone());
    }

    /// Leaves the group (epoch -1), once, within [`LEAVE_TIMEOUT`].
    async fn leave(&mut self) {
        if self.identity.member_id.is_empty() {
            return;
        }
        let request = ConsumerGroupHeartbeatRequest {
            group_id: self.membership.link.group_id().to_owned(),
            member_id: self.identity.member_id.clone(),
            member_epoch: LEAVE_MEMBER_EPOCH,
            rebalance_timeout_ms: self.membership.rebalance_timeout_ms,
            subscribed_topic_names: None,
            owned_partitions: Vec::new(),
        };
        let leave = self
            .membership
            .link
            .request::<_, ConsumerGroupHeartbeatResponse>(ApiKey::ConsumerGroupHeartbeat, &request);
        match tokio::time::timeout(LEAVE_TIMEOUT, leave).await {
            Ok(Ok(response)) if response.error_code.is_ok() => {}
            Ok(Ok(response)) => {
                tracing::debug!(code = %response.error_code, "leaving the group was refused")
            }
            Ok(Err(error)) => tracing::debug!(%error, "leaving the group failed"),
            Err(_elapsed) => tracing::debug!("leaving the group timed out"),
        }
        self.membership.identity.send_replace(Identity::default());
    }
}
