//! One listener, several services: requests go to the service that owns their kind's
//! range ([`super::frame::kind`]), the metadata quorum's Raft messages to one and the
//! calls to the active controller to another. A kind in no range closes the connection
//! like any request the peer should not have sent.

use std::sync::Arc;

use super::frame::{Frame, kind};
use super::listener::{InternalService, ServiceError};

/// Routes the quorum's kinds to `quorum` and the controller's to `controller`.
#[derive(Debug)]
pub struct Dispatch<Q, C> {
    quorum: Arc<Q>,
    controller: Arc<C>,
}

impl<Q, C> Dispatch<Q, C> {
    pub fn new(quorum: Arc<Q>, controller: Arc<C>) -> Self {
        Self { quorum, controller }
    }
}

impl<Q: InternalService, C: InternalService> InternalService for Dispatch<Q, C> {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        if kind::QUORUM.contains(&request.kind) {
            self.quorum.handle(request).await
        } else if kind::CONTROLLER.contains(&request.kind) {
            self.controller.handle(request).await
        } else {
            Err(ServiceError::UnknownKind { kind: request.kind })
        }
    }
}

/// A service that owns no kind: what a listener without a controller behind it
/// answers controller calls with (tests of the quorum alone).
#[derive(Debug, Default)]
pub struct NoService;

impl InternalService for NoService {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        Err(ServiceError::UnknownKind { kind: request.kind })
    }
}
