//! Broker sessions on the active controller: the shell around the pure
//! [membership](super::membership) state machine, owned by the
//! [`Controller`](super::Controller), which proposes what it asks for.
//!
//! It adds what the state machine leaves out: a clock (monotonic milliseconds,
//! injected so that tests drive time), the quorum's leadership (membership runs only on
//! the node whose quorum member leads, and a node that starts leading, or leads again
//! in a new term, gives every registered broker a fresh session first), and the types
//! a broker's call and the controller's answer travel as (plain data with `serde`
//! derives, so that a broker on another node can send them as JSON).
//!
//! One exception to fresh sessions: the registration of this controller's own node by
//! an older process. The node is this process now, so that process is gone, and its
//! successor (this process's broker) must not be refused as a duplicate until the old
//! session expires.
//!
//! The lock here is a plain mutex, never held across a proposal: a heartbeat must not
//! wait for another broker's records to be committed to renew its session. The front
//! end turns a request proposed twice (a heartbeat and a tick racing) into no records.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::front_end::{BrokerRegistration, MetadataRequest, TopicError};
use super::image::MetadataImage;
use super::membership::{Heartbeat, HeartbeatReply, Membership, MembershipError, SilentBroker};
use super::metadata_log::{Leadership, ProposeError};

/// Milliseconds from some fixed start; never goes back.
pub trait SessionClock: Debug + Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The process's monotonic clock: sessions must not expire because the wall clock
/// was set forward.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    started: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionClock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualSessionClock {
    now_ms: AtomicU64,
}

impl ManualSessionClock {
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl SessionClock for ManualSessionClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The epoch of the broker's new registration; its heartbeats carry it.
    pub broker_epoch: u64,
    /// The controller's applied metadata index once the registration was applied.
    pub metadata_index: u64,
}

/// The answer to a heartbeat, once what it called for is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// The broker is fenced: it leads nothing and takes no new replicas.
    pub fenced: bool,
    /// The broker asked to shut down and nothing it leads could move any more: it
    /// may exit.
    pub controlled_shutdown_done: bool,
    /// The controller's applied metadata index; a broker that has applied as much is
    /// caught up (its next heartbeat says so).
    pub metadata_index: u64,
}

/// Why a registration or heartbeat did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipCallError {
    /// Membership refused it (a duplicate node id, a stale broker epoch, …).
    #[error(transparent)]
    Refused(#[from] MembershipError),
    /// Only the node whose quorum member leads keeps broker sessions.
    #[error("node {node_id} is not the active controller")]
    NotController { node_id: i32 },
    /// No node is known to lead the quorum: too few voters run, or an election is
    /// under way.
    #[error(
        "no active controller is known to node {node_id}: a majority of controller_quorum_voters must be running"
    )]
    NoActiveController { node_id: i32 },
    /// The records it called for were not applied.
    #[error("the controller could not record the change: {message}")]
    Metadata { message: String, retriable: bool },
}

impl MembershipCallError {
    /// Whether calling again (after re-registering, for a stale or unknown
    /// registration) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Refused(refusal) => !matches!(
                refusal,
                MembershipError::InvalidNodeId(_) | MembershipError::ConflictingRegistration { .. }
            ),
            Self::NotController { .. } | Self::NoActiveController { .. } => true,
            Self::Metadata { retriable, .. } => *retriable,
        }
    }

    /// The broker's registration is gone or replaced: it must register again.
    pub fn needs_registration(&self) -> bool {
        matches!(
            self,
            Self::Refused(
                MembershipError::StaleBrokerEpoch { .. } | MembershipError::NotRegistered(_)
            )
        )
    }
}

impl From<TopicError> for MembershipCallError {
    fn from(error: TopicError) -> Self {
        let retriable = match &error {
            TopicError::Metadata(propose) => propose.is_retriable(),
            TopicError::ControllerUnreachable { .. } => true,
            _ => false,
        };
        Self::Metadata {
            message: error.to_string(),
            retriable,
        }
    }
}

impl From<ProposeError> for MembershipCallError {
    fn from(error: ProposeError) -> Self {
        TopicError::Metadata(error).into()
    }
}

/// The position of the last entry applied to `image` (0 before any).
pub fn applied_index(image: &MetadataImage) -> u64 {
    image
        .applied_position()
        .map_or(0, |position| position.index)
}

#[derive(Debug)]
struct State {
    membership: Membership,
    leadership: Leadership,
    /// The term this node activated membership for; `None` while it does not lead.
    active_term: Option<u64>,
}

/// Membership, its clock and the quorum's leadership, for the controller.
#[derive(Debug)]
pub struct BrokerSessions {
    node_id: i32,
    /// This process's incarnation (its broker registers with it).
    incarnation_id: uuid::Uuid,
    clock: Arc<dyn SessionClock>,
    state: Mutex<State>,
}

impl BrokerSessions {
    pub fn new(
        node_id: i32,
        incarnation_id: uuid::Uuid,
        session_timeout_ms: u64,
        auto_leader_rebalance: bool,
        leadership: Leadership,
        clock: Arc<dyn SessionClock>,
    ) -> Self {
        Self {
            node_id,
            incarnation_id,
            clock,
            state: Mutex::new(State {
                membership: Membership::new(session_timeout_ms, auto_leader_rebalance),
                leadership,
                active_term: None,
            }),
        }
    }

    /// Runs `event` on membership at the clock's time, after activating it if this
    /// node has just started leading; `None` when it does not lead.
    fn when_active<T>(
        &self,
        image: &MetadataImage,
        event: impl FnOnce(&mut Membership, u64) -> T,
    ) -> Option<T> {
        let mut state = self.state.lock().expect("broker sessions lock poisoned");
        let now_ms = self.clock.now_ms();
        if state.leadership.leader() != Some(self.node_id) {
            state.active_term = None;
            return None;
        }
        let term = state.leadership.term();
        if state.active_term != Some(term) {
            state.membership.became_active(image, now_ms);
            if let Some(own) = image.brokers.get(&self.node_id)
                && own.incarnation_id != self.incarnation_id
            {
                state
                    .membership
                    .end_session(self.node_id, own.incarnation_id);
            }
            state.active_term = Some(term);
            tracing::info!(
                term,
                brokers = image.brokers.len(),
                "active controller: every registered broker's session starts afresh"
            );
        }
        Some(event(&mut state.membership, now_ms))
    }

    fn not_controller(&self) -> MembershipCallError {
        MembershipCallError::NotController {
            node_id: self.node_id,
        }
    }

    /// A broker process registers: the requests that record it.
    pub fn register(
        &self,
        image: &MetadataImage,
        registration: &BrokerRegistration,
    ) -> Result<Vec<MetadataRequest>, MembershipCallError> {
        self.when_active(image, |membership, now_ms| {
            membership.register(image, registration, now_ms)
        })
        .ok_or_else(|| self.not_controller())?
        .map_err(MembershipCallError::from)
    }

    /// A broker's heartbeat: the reply, and the requests it calls for.
    pub fn heartbeat(
        &self,
        image: &MetadataImage,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatReply, MembershipCallError> {
        self.when_active(image, |membership, now_ms| {
            membership.heartbeat(image, heartbeat, now_ms)
        })
        .ok_or_else(|| self.not_controller())?
        .map_err(MembershipCallError::from)
    }

    /// The brokers shutting down (see [`Membership::leaving`]); none when this node
    /// does not lead.
    pub fn leaving(&self, image: &MetadataImage) -> BTreeSet<i32> {
        self.when_active(image, |membership, _| membership.leaving())
            .unwrap_or_default()
    }

    /// Brokers silent for `silence_ms` whose sessions live on (see
    /// [`Membership::silent`]); none when this node does not lead.
    pub fn silent(&self, image: &MetadataImage, silence_ms: u64) -> Vec<SilentBroker> {
        let own = self.node_id;
        self.when_active(image, |membership, now_ms| {
            membership.silent(image, now_ms, silence_ms, own)
        })
        .unwrap_or_default()
    }

    /// A silent broker's process is gone: the requests that fence it (see
    /// [`Membership::gone`]); none when this node does not lead.
    pub fn gone(
        &self,
        image: &MetadataImage,
        node_id: i32,
        incarnation_id: uuid::Uuid,
    ) -> Vec<MetadataRequest> {
        self.when_active(image, |membership, _| {
            membership.gone(image, node_id, incarnation_id)
        })
        .unwrap_or_default()
    }

    /// Time passed: the requests that fence brokers whose session expired; none when
    /// this node does not lead.
    pub fn tick(&self, image: &MetadataImage) -> Vec<MetadataRequest> {
        self.when_active(image, |membership, now_ms| membership.tick(image, now_ms))
            .unwrap_or_default()
    }
}
