//! One listener, several services: requests go to the service that owns their kind's
//! range ([`super::frame::kind`]): the metadata quorum's Raft messages to one, the
//! others to the services the broker adds ([`ByKind`] splits them further: calls to
//! the active controller, replica fetches). A kind no service owns closes the
//! connection like any request the peer should not have sent.

use std::ops::RangeInclusive;
use std::sync::Arc;

use super::frame::{Frame, kind};
use super::listener::{InternalService, ServiceError};

/// Routes the quorum's kinds to `quorum` and every other kind to `controller` (which
/// refuses those it does not own).
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
        } else {
            self.controller.handle(request).await
        }
    }
}

/// Two services behind one: kinds in `range` go to `inside`, the others to `outside`.
#[derive(Debug)]
pub struct ByKind<A, B> {
    range: RangeInclusive<u8>,
    inside: Arc<A>,
    outside: Arc<B>,
}

impl<A, B> ByKind<A, B> {
    pub fn new(range: RangeInclusive<u8>, inside: Arc<A>, outside: Arc<B>) -> Self {
        Self {
            range,
            inside,
            outside,
        }
    }
}

impl<A: InternalService, B: InternalService> InternalService for ByKind<A, B> {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        if self.range.contains(&request.kind) {
            self.inside.handle(request).await
        } else {
            self.outside.handle(request).await
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
