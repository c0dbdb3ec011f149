//! Calls to the active controller from a broker whose node does not lead the metadata
//! quorum (Kafka's forwarding to the KRaft controller): a metadata change, a
//! registration, a heartbeat. Only the node whose quorum member leads decides and
//! proposes, and only it keeps broker sessions; every other node sends the call to it
//! over the internal listener (frame kind `CONTROLLER_CALL`, a JSON body) and gets the
//! answer back the same way.
//!
//! - [`ControllerCall`] and [`ControllerReply`]: what travels. A change is answered
//!   with the log index its entry was applied at; the caller then waits until its own
//!   image has applied that index and answers its client from it, so that a broker
//!   never answers "created" before it knows the topic.
//! - [`ControllerEndpoint`](super::controller_endpoint::ControllerEndpoint) (its own
//!   module): the receiving side, served by the internal listener from start-up and
//!   bound to the controller once it exists (until then calls are answered
//!   [`ControllerReply::NotReady`]). It only ever carries a call out here: a node that
//!   no longer leads refuses with `NotLeader`, and the caller retries at the new
//!   leader, so calls never travel in circles.
//! - [`ControllerClient`]: the sending side, one connection per controller address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::broker_sessions::{HeartbeatAnswer, MembershipCallError, Registered};
use super::front_end::{BrokerRegistration, MetadataRequest, TopicError};
use super::membership::Heartbeat;
use super::metadata_log::ProposeError;
use crate::internal::frame::kind;
use crate::internal::{CallError, PeerClient};

/// A call to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCall {
    /// Decide and apply these requests as one entry of the metadata log.
    Submit(Vec<MetadataRequest>),
    Register(BrokerRegistration),
    Heartbeat(Heartbeat),
    /// Make this broker-only node a learner of the quorum at this internal address.
    AddLearner {
        node_id: i32,
        address: String,
    },
}

/// The active controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The index of the log entry the change was applied at (that of the last entry
    /// applied when the requests called for no change).
    Submitted(Result<u64, TopicError>),
    Registered(Result<Registered, MembershipCallError>),
    Heartbeat(Result<HeartbeatAnswer, MembershipCallError>),
    LearnerAdded(Result<(), ProposeError>),
    /// The node's controller has not started yet; try again shortly.
    NotReady,
}

/// Why a call to another node's controller got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot reach the active controller, node {node_id}: {error}")]
    Unreachable { node_id: i32, error: CallError },
    #[error("the active controller, node {node_id}, gave an answer that cannot be read: {reason}")]
    BadReply { node_id: i32, reason: String },
}

impl ForwardError {
    /// What went wrong, without naming the node (for errors that name it already).
    pub fn reason(&self) -> String {
        match self {
            Self::Unreachable { error, .. } => error.to_string(),
            Self::BadReply { reason, .. } => format!("its answer cannot be read: {reason}"),
        }
    }
}

/// The sending side: calls to the controller of another node.
#[derive(Debug)]
pub struct ControllerClient {
    connect_timeout: Duration,
    /// One connection per address, kept for the calls that follow.
    peers: Mutex<HashMap<String, Arc<PeerClient>>>,
}

impl ControllerClient {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peer(&self, address: &str) -> Arc<PeerClient> {
        let mut peers = self.peers.lock().expect("controller peers lock poisoned");
        peers
            .entry(address.to_owned())
            .or_insert_with(|| Arc::new(PeerClient::new(address.to_owned(), self.connect_timeout)))
            .clone()
    }

    /// Sends `call` to the controller of node `node_id` at `address`, waiting at most
    /// `timeout` for its answer.
    pub async fn call(
        &self,
        node_id: i32,
        address: &str,
        call: &ControllerCall,
        timeout: Duration,
    ) -> Result<ControllerReply, ForwardError> {
        let body = serde_json::to_vec(call).expect("controller calls serialize");
        let answer = self
            .peer(address)
            .call(kind::CONTROLLER_CALL, body, timeout)
            .await
            .map_err(|error| ForwardError::Unreachable { node_id, error })?;
        serde_json::from_slice(&answer).map_err(|error| ForwardError::BadReply {
            node_id,
            reason: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::front_end::CreateTopic;

    /// Calls and replies survive the trip as JSON, errors included.
    #[test]
    fn calls_and_replies_round_trip() {
        let calls = [
            ControllerCall::Submit(vec![
                MetadataRequest::InitializeCluster,
                MetadataRequest::CreateTopic(CreateTopic {
                    name: "orders".into(),
                    partitions: Some(3),
                    replication_factor: None,
                    config: [("retention.ms".to_owned(), "1000".to_owned())].into(),
                }),
                MetadataRequest::AlterTopicConfig {
                    name: "orders".into(),
                    changes: [("flush.ms".to_owned(), None)].into(),
                },
            ]),
            ControllerCall::Heartbeat(Heartbeat {
                node_id: 2,
                broker_epoch: 7,
                caught_up: true,
                wants_shutdown: false,
            }),
        ];
        for call in calls {
            let bytes = serde_json::to_vec(&call).unwrap();
            assert_eq!(
                serde_json::from_slice::<ControllerCall>(&bytes).unwrap(),
                call
            );
        }
        let replies = [
            ControllerReply::Submitted(Err(TopicError::AlreadyExists("orders".into()))),
            ControllerReply::Submitted(Err(TopicError::Metadata(ProposeError::TimedOut {
                timeout: Duration::from_secs(10),
            }))),
            ControllerReply::Submitted(Ok(42)),
        ];
        for reply in replies {
            let bytes = serde_json::to_vec(&reply).unwrap();
            let back: ControllerReply = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(format!("{back:?}"), format!("{reply:?}"));
        }
    }

    /// A local storage failure crosses as the quorum failure it is to the caller,
    /// keeping its message and its error code.
    #[test]
    fn a_storage_failure_crosses_as_a_quorum_failure() {
        let error = TopicError::Storage(crate::storage::StorageError::Corrupt {
            path: "raft.log".into(),
            reason: "bad checksum".into(),
        });
        let code = error.error_code();
        let wire = error.for_the_wire();
        assert_eq!(wire.error_code(), code);
        assert!(wire.to_string().contains("bad checksum"), "{wire}");
        assert!(serde_json::to_vec(&wire).is_ok());
    }
}
