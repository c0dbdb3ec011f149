//! The receiving side of [controller calls](super::forwarding): served by the internal
//! listener from start-up (frame kind `CONTROLLER_CALL`), bound to this node's
//! [`Controller`] once it exists, and carrying every call out here with the
//! controller's `_here` methods. Apart from the calls and the client, so that the
//! controller, which sends calls, and this, which answers them, do not import each
//! other.

use std::sync::{Arc, OnceLock, Weak};

use super::controller::Controller;
use super::forwarding::{ControllerCall, ControllerReply};
use super::front_end::TopicError;
use crate::internal::frame::{RESPONSE_BIT, kind};
use crate::internal::{Frame, InternalService, ServiceError};

/// The receiving side of controller calls on this node.
#[derive(Debug, Default)]
pub struct ControllerEndpoint {
    /// Weak: the controller owns the metadata log, whose listener owns this.
    controller: OnceLock<Weak<Controller>>,
}

impl ControllerEndpoint {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on calls are carried out by `controller`.
    pub fn serve(&self, controller: &Arc<Controller>) {
        if self.controller.set(Arc::downgrade(controller)).is_err() {
            tracing::error!("the controller endpoint was bound twice; keeping the first");
        }
    }

    async fn answer(&self, call: ControllerCall) -> ControllerReply {
        let Some(controller) = self.controller.get().and_then(Weak::upgrade) else {
            return ControllerReply::NotReady;
        };
        match call {
            ControllerCall::Submit(requests) => ControllerReply::Submitted(
                controller
                    .submit_here(&requests)
                    .await
                    .map(|(_, after)| super::broker_sessions::applied_index(&after))
                    .map_err(TopicError::for_the_wire),
            ),
            ControllerCall::Register(registration) => {
                ControllerReply::Registered(controller.register_here(&registration).await)
            }
            ControllerCall::Heartbeat(heartbeat) => {
                ControllerReply::Heartbeat(controller.heartbeat_here(heartbeat).await)
            }
            ControllerCall::AddLearner { node_id, address } => {
                ControllerReply::LearnerAdded(controller.add_learner_here(node_id, address).await)
            }
        }
    }
}

impl InternalService for ControllerEndpoint {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        if request.kind != kind::CONTROLLER_CALL {
            return Err(ServiceError::UnknownKind { kind: request.kind });
        }
        let call: ControllerCall =
            serde_json::from_slice(&request.body).map_err(|error| ServiceError::BadBody {
                kind: request.kind,
                reason: error.to_string(),
            })?;
        let reply = self.answer(call).await;
        Ok(Frame {
            kind: request.kind | RESPONSE_BIT,
            request_id: request.request_id,
            body: serde_json::to_vec(&reply).expect("controller replies serialize"),
        })
    }
}
