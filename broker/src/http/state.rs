//! The state every HTTP handler shares: the broker, once it exists.
//!
//! The HTTP API starts serving before the broker has opened its data directory, so
//! that liveness and readiness probes answer during a long recovery; until then the
//! state holds no broker and resource routes answer 503.

use std::sync::{Arc, OnceLock};

use crate::broker::Broker;

#[derive(Debug, Clone, Default)]
pub struct HttpState {
    broker: Arc<OnceLock<Arc<Broker>>>,
}

impl HttpState {
    /// A state without a broker yet.
    pub fn starting() -> Self {
        Self::default()
    }

    /// Hands the broker over once it exists (it may still be recovering). A second
    /// call is a bug in start-up.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        assert!(
            self.broker.set(broker).is_ok(),
            "the HTTP state got a broker twice"
        );
    }

    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// The broker when it is ready, else why not.
    pub fn ready_broker(&self) -> Result<Arc<Broker>, &'static str> {
        match self.broker() {
            None => Err("opening the data directory and the metadata log"),
            Some(broker) if broker.is_ready() => Ok(broker.clone()),
            Some(broker) => Err(broker.phase().describe()),
        }
    }
}
