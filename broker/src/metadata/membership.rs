//! Broker membership as the active controller sees it: which broker processes are
//! registered, whether each still has a live session, and when to fence or unfence
//! one. A state machine: events in (a registration, a heartbeat, the passing of time,
//! becoming the active controller), effects out (requests for the
//! [front end](super::front_end) to turn into records, and replies to the brokers).
//!
//! What is metadata (each broker's incarnation, epoch and whether it is fenced) lives
//! in the image, which every event is given; what is not (when each session expires,
//! whether a broker asked to shut down) lives here, in memory, as in Kafka's KRaft
//! controller: a new active controller starts every session afresh instead of reading
//! them from the log.
//!
//! The rules:
//! - A broker process registers with its node id and an incarnation id it drew at
//!   start. It is registered fenced, with the next broker epoch, and gets a session.
//!   While the session of another incarnation of that node is live, the registration
//!   is refused: two processes claim one node id (or a restart came before the old
//!   session expired; the broker retries).
//! - A heartbeat carries the broker epoch it registered with; one from an older
//!   registration is refused. It renews the session. A fenced broker that says it is
//!   caught up with the metadata is unfenced; one that asks for a controlled shutdown
//!   is fenced, which moves its leaderships away, and is told the shutdown is done once
//!   the image shows it fenced. When no partition it leads has another live in-sync
//!   replica (a single broker), there is nothing to move: it is told at once that it
//!   is done, stays unfenced and leading until it exits, and is fenced when its
//!   session expires (or replaced by its next process's registration).
//! - A broker whose session expired (no heartbeat for `session_timeout_ms`) is fenced.
//! - A broker that has been silent for a while ([`Membership::silent`]) may be found
//!   gone before that: its shell connects to its internal address and, when the
//!   connection is refused (nothing listens: the process died, as after `kill -9`),
//!   reports it ([`Membership::gone`]); its session ends and it is fenced at once. A
//!   machine that vanished (no answer at all) still waits for the session to expire.
//!
//! Pure: time is a number of milliseconds passed in, nothing reads a clock, and
//! effects are returned, not carried out. Its shell is
//! [`broker_sessions`](super::broker_sessions), which the [`Controller`](super::Controller)
//! owns; brokers call it through [`heartbeats`](super::heartbeats).
//! Requests may be proposed more than once (a heartbeat, or a tick, before the first
//! proposal is applied): the front end turns a repeat into no records.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use super::front_end::{BrokerRegistration, MetadataRequest};
use super::image::MetadataImage;

/// Why a broker's registration or heartbeat was refused. Serializable, so that a
/// refusal can travel back to a broker that called the controller over the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MembershipError {
    #[error("invalid node id {0}: node ids are 0 or more")]
    InvalidNodeId(i32),
    #[error(
        "node id {node_id} is held by another live broker process (incarnation \
         {live_incarnation}); two brokers have one node id, or the previous process's \
         session has not expired yet (retry after the session timeout)"
    )]
    DuplicateNodeId {
        node_id: i32,
        live_incarnation: uuid::Uuid,
    },
    #[error(
        "broker {node_id} registered incarnation {incarnation_id} again with other \
         details; a new process must use a new incarnation id"
    )]
    ConflictingRegistration {
        node_id: i32,
        incarnation_id: uuid::Uuid,
    },
    #[error("broker {0} is not registered; register before sending heartbeats")]
    NotRegistered(i32),
    #[error(
        "heartbeat from broker {node_id} with broker epoch {offered}, but its current \
         registration is epoch {current}: the sender is an older process; register again"
    )]
    StaleBrokerEpoch {
        node_id: i32,
        offered: u64,
        current: u64,
    },
    #[error(
        "heartbeat from broker {node_id}, but a newer registration (incarnation \
         {pending}) is being recorded: the sender is an older process"
    )]
    SupersededIncarnation { node_id: i32, pending: uuid::Uuid },
}

/// A broker's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub node_id: i32,
    /// The epoch of the registration the broker holds.
    pub broker_epoch: u64,
    /// The broker has applied the metadata up to the controller's recent position
    /// (decided by the shell; an input here).
    pub caught_up: bool,
    /// The broker is shutting down and wants its leaderships moved away first.
    pub wants_shutdown: bool,
}

/// The answer to a heartbeat, and the requests it calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// Whether the image shows the broker fenced (before `propose` is applied).
    pub fenced: bool,
    /// The broker asked to shut down and leads nothing any more: it may exit.
    pub controlled_shutdown_done: bool,
    /// Requests for the front end.
    pub propose: Vec<MetadataRequest>,
}

/// The live part of a broker's membership: its session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    /// The process the session belongs to.
    incarnation_id: uuid::Uuid,
    /// The session is live while `now_ms` is below this.
    expires_at_ms: u64,
    /// Whether this controller heard from the process (a registration or heartbeat):
    /// a session it only inherited, becoming active, is worth checking at once.
    heard: bool,
    /// Once asked, a controlled shutdown stays asked for until the process is gone.
    wants_shutdown: bool,
}

/// A broker [`Membership::silent`] names: where to check that its process still lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentBroker {
    pub node_id: i32,
    pub incarnation_id: uuid::Uuid,
    pub internal_address: String,
}

/// Whether `node_id` leads a partition that another unfenced in-sync replica could
/// lead instead: what a controlled shutdown moves.
fn leads_movable_partition(image: &MetadataImage, node_id: i32) -> bool {
    image
        .topics
        .values()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| partition.leader == node_id)
        .any(|partition| {
            partition
                .isr
                .iter()
                .any(|&replica| replica != node_id && image.is_unfenced(replica))
        })
}

/// The active controller's view of broker sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    session_timeout_ms: u64,
    /// Whether an unfenced broker gets back the leadership of the partitions it is the
    /// preferred replica of.
    auto_leader_rebalance: bool,
    sessions: BTreeMap<i32, Session>,
}

impl Membership {
    pub fn new(session_timeout_ms: u64, auto_leader_rebalance: bool) -> Self {
        Self {
            session_timeout_ms,
            auto_leader_rebalance,
            sessions: BTreeMap::new(),
        }
    }

    /// This controller became the active one: every registered broker gets a fresh
    /// session, so that a failover does not fence brokers that were heartbeating to the
    /// previous controller. Those that are gone are fenced one timeout later.
    pub fn became_active(&mut self, image: &MetadataImage, now_ms: u64) {
        self.sessions = image
            .brokers
            .values()
            .map(|broker| {
                let session = Session {
                    incarnation_id: broker.incarnation_id,
                    expires_at_ms: now_ms.saturating_add(self.session_timeout_ms),
                    heard: false,
                    wants_shutdown: false,
                };
                (broker.node_id, session)
            })
            .collect();
    }

    /// The process `incarnation_id` of `node_id` is known to be gone (this controller
    /// is that node, in a newer process): its session protects nothing, and the node's
    /// new process must not wait for it to expire to register. Does nothing to the
    /// session of another incarnation.
    pub fn end_session(&mut self, node_id: i32, incarnation_id: uuid::Uuid) {
        if self
            .sessions
            .get(&node_id)
            .is_some_and(|session| session.incarnation_id == incarnation_id)
        {
            self.sessions.remove(&node_id);
        }
    }

    /// Unfenced brokers other than `except` whose sessions are live but who have not
    /// heartbeated for `silence_ms`, or not at all since this controller became active
    /// (the previous controller's node may be the one that died): worth checking
    /// whether their process is gone.
    pub fn silent(
        &self,
        image: &MetadataImage,
        now_ms: u64,
        silence_ms: u64,
        except: i32,
    ) -> Vec<SilentBroker> {
        self.sessions
            .iter()
            .filter(|(node_id, session)| {
                let last_heartbeat_ms = session
                    .expires_at_ms
                    .saturating_sub(self.session_timeout_ms);
                **node_id != except
                    && now_ms < session.expires_at_ms
                    && (!session.heard || now_ms >= last_heartbeat_ms.saturating_add(silence_ms))
            })
            .filter_map(|(&node_id, session)| {
                let broker = image.brokers.get(&node_id)?;
                (broker.incarnation_id == session.incarnation_id
                    && !broker.fenced
                    && !broker.internal_address.is_empty())
                .then(|| SilentBroker {
                    node_id,
                    incarnation_id: broker.incarnation_id,
                    internal_address: broker.internal_address.clone(),
                })
            })
            .collect()
    }

    /// The process `incarnation_id` of `node_id` is gone (nothing listens at its
    /// internal address): its session ends, so that its next process registers at
    /// once, and it is fenced, moving its leaderships away. Nothing when that process
    /// is not the node's current registration.
    pub fn gone(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        incarnation_id: uuid::Uuid,
    ) -> Vec<MetadataRequest> {
        self.end_session(node_id, incarnation_id);
        image
            .brokers
            .get(&node_id)
            .filter(|broker| broker.incarnation_id == incarnation_id && !broker.fenced)
            .map(|broker| MetadataRequest::FenceBroker {
                node_id,
                broker_epoch: broker.broker_epoch,
            })
            .into_iter()
            .collect()
    }

    /// The brokers whose processes asked to shut down: they take no replicas of new
    /// partitions (they would only lead them until they exit), like fenced ones.
    pub fn leaving(&self) -> BTreeSet<i32> {
        self.sessions
            .iter()
            .filter(|(_, session)| session.wants_shutdown)
            .map(|(node_id, _)| *node_id)
            .collect()
    }

    /// Whether `node_id` has a live session at `now_ms`.
    pub fn has_live_session(&self, node_id: i32, now_ms: u64) -> bool {
        self.sessions
            .get(&node_id)
            .is_some_and(|session| now_ms < session.expires_at_ms)
    }

    /// A broker process registers. Returns the requests that record it; the broker
    /// learns its epoch from the image once they are applied.
    pub fn register(
        &mut self,
        image: &MetadataImage,
        registration: &BrokerRegistration,
        now_ms: u64,
    ) -> Result<Vec<MetadataRequest>, MembershipError> {
        let node_id = registration.node_id;
        if node_id < 0 {
            return Err(MembershipError::InvalidNodeId(node_id));
        }
        if let Some(session) = self.sessions.get(&node_id)
            && session.incarnation_id != registration.incarnation_id
            && now_ms < session.expires_at_ms
        {
            return Err(MembershipError::DuplicateNodeId {
                node_id,
                live_incarnation: session.incarnation_id,
            });
        }
        if let Some(broker) = image.brokers.get(&node_id)
            && broker.incarnation_id == registration.incarnation_id
            && (broker.host != registration.host
                || broker.port != registration.port
                || broker.external != registration.external
                || broker.rack != registration.rack)
        {
            return Err(MembershipError::ConflictingRegistration {
                node_id,
                incarnation_id: registration.incarnation_id,
            });
        }
        // A retry by the same process keeps its request to shut down.
        let wants_shutdown = self.sessions.get(&node_id).is_some_and(|session| {
            session.incarnation_id == registration.incarnation_id && session.wants_shutdown
        });
        self.sessions.insert(
            node_id,
            Session {
                incarnation_id: registration.incarnation_id,
                expires_at_ms: now_ms.saturating_add(self.session_timeout_ms),
                heard: true,
                wants_shutdown,
            },
        );
        Ok(vec![MetadataRequest::RegisterIncarnation(
            registration.clone(),
        )])
    }

    /// A broker's heartbeat: renews its session and says whether it is fenced; may
    /// call for it to be unfenced (caught up) or fenced (shutting down).
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        heartbeat: Heartbeat,
        now_ms: u64,
    ) -> Result<HeartbeatReply, MembershipError> {
        let node_id = heartbeat.node_id;
        let broker = image
            .brokers
            .get(&node_id)
            .ok_or(MembershipError::NotRegistered(node_id))?;
        if broker.broker_epoch != heartbeat.broker_epoch {
            return Err(MembershipError::StaleBrokerEpoch {
                node_id,
                offered: heartbeat.broker_epoch,
                current: broker.broker_epoch,
            });
        }
        let session = self.sessions.entry(node_id).or_insert(Session {
            incarnation_id: broker.incarnation_id,
            expires_at_ms: 0,
            heard: true,
            wants_shutdown: false,
        });
        if session.incarnation_id != broker.incarnation_id {
            // A new process registered and its record is not applied yet; the image's
            // registration is the sender's, which is on its way out.
            return Err(MembershipError::SupersededIncarnation {
                node_id,
                pending: session.incarnation_id,
            });
        }
        session.expires_at_ms = session
            .expires_at_ms
            .max(now_ms.saturating_add(self.session_timeout_ms));
        session.heard = true;
        session.wants_shutdown |= heartbeat.wants_shutdown;
        let wants_shutdown = session.wants_shutdown;
        let broker_epoch = broker.broker_epoch;
        let movable = leads_movable_partition(image, node_id);
        let propose = if wants_shutdown && !broker.fenced && movable {
            vec![MetadataRequest::FenceBroker {
                node_id,
                broker_epoch,
            }]
        } else if !wants_shutdown && broker.fenced && heartbeat.caught_up {
            vec![MetadataRequest::UnfenceBroker {
                node_id,
                broker_epoch,
                restore_preferred_leaders: self.auto_leader_rebalance,
            }]
        } else {
            Vec::new()
        };
        // Done once nothing it leads could move: a fenced broker leads nothing, and
        // an unfenced one whose partitions have no other live in-sync replica keeps
        // them until it exits (fencing it would only take them offline sooner, under
        // the requests it is still finishing).
        let controlled_shutdown_done = wants_shutdown && !movable;
        if controlled_shutdown_done && broker.fenced {
            // The process is about to exit: its session protects nothing any more,
            // and its successor should not wait for it to expire to register. An
            // unfenced broker keeps its session, to be fenced when it expires.
            self.sessions.remove(&node_id);
        }
        Ok(HeartbeatReply {
            fenced: broker.fenced,
            controlled_shutdown_done,
            propose,
        })
    }

    /// Time passed: fences every unfenced broker whose session has expired.
    pub fn tick(&self, image: &MetadataImage, now_ms: u64) -> Vec<MetadataRequest> {
        self.sessions
            .iter()
            .filter(|(_, session)| now_ms >= session.expires_at_ms)
            .filter_map(|(&node_id, session)| {
                let broker = image.brokers.get(&node_id)?;
                // A session of a registration not applied yet has nothing to fence.
                (broker.incarnation_id == session.incarnation_id && !broker.fenced).then_some(
                    MetadataRequest::FenceBroker {
                        node_id,
                        broker_epoch: broker.broker_epoch,
                    },
                )
            })
            .collect()
    }
}
