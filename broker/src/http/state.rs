//! The state every HTTP handler shares: the handles of the services it calls, once the
//! broker has built them.
//!
//! The HTTP API starts serving before the broker has opened its data directory, so
//! that liveness and readiness probes answer during a long recovery; until then the
//! state holds no handles and resource routes answer 503.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::group::GroupService;
use crate::lifecycle::Lifecycle;
use crate::metadata::MetadataLog;
use crate::topics::{Partitions, TopicAdmin};

/// What the HTTP handlers use.
#[derive(Debug)]
pub struct ApiHandles {
    /// Topics, partitions and their logs as this broker has them.
    pub partitions: Partitions,
    /// Topic creation, deletion, config changes and partition recovery.
    pub admin: TopicAdmin,
    /// The groups this broker coordinates.
    pub groups: Arc<GroupService>,
    /// This broker's member of the metadata quorum, for its status.
    pub metadata_log: Arc<MetadataLog>,
    /// Whether the broker is ready, for the readiness probe and the resource routes.
    pub lifecycle: Lifecycle,
    /// When the broker started, for the uptime gauge.
    pub started_at: Instant,
}

#[derive(Debug, Clone, Default)]
pub struct HttpState {
    handles: Arc<OnceLock<Arc<ApiHandles>>>,
}

impl HttpState {
    /// A state without handles yet.
    pub fn starting() -> Self {
        Self::default()
    }

    /// Hands the services over once they exist (the broker may still be recovering).
    /// A second call is a bug in start-up.
    pub fn set_handles(&self, handles: ApiHandles) {
        assert!(
            self.handles.set(Arc::new(handles)).is_ok(),
            "the HTTP state got its handles twice"
        );
    }

    pub fn handles(&self) -> Option<&Arc<ApiHandles>> {
        self.handles.get()
    }

    /// The handles when the broker is ready, else why it is not.
    pub fn ready(&self) -> Result<Arc<ApiHandles>, &'static str> {
        match self.handles() {
            None => Err("opening the data directory and the metadata log"),
            Some(api) if api.lifecycle.is_ready() => Ok(api.clone()),
            Some(api) => Err(api.lifecycle.phase().describe()),
        }
    }
}
