//! The way to a group's coordinator: found with FindCoordinator on any broker, cached,
//! and forgotten when it stops being the coordinator or cannot be reached.

use std::sync::Mutex;

use fjord_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse, Message};
use fjord_protocol::{ApiKey, ErrorCode};

use crate::client::Client;
use crate::error::{Error, Result};

/// Sends a group's requests to its coordinator.
#[derive(Debug)]
pub(crate) struct CoordinatorLink {
    client: Client,
    group_id: String,
    /// `host:port` of the coordinator, once found.
    address: Mutex<Option<String>>,
}

/// Whether a group-level error code means "ask another broker": the coordinator moved
/// or is not ready.
pub(crate) fn code_invalidates_coordinator(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::BrokerShuttingDown
            | ErrorCode::RequestTimedOut
    )
}

impl CoordinatorLink {
    pub(crate) fn new(client: &Client, group_id: &str) -> Self {
        Self {
            client: client.clone(),
            group_id: group_id.to_owned(),
            address: Mutex::new(None),
        }
    }

    pub(crate) fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The client's request timeout, which also bounds the retries of group operations.
    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.client.config().request_timeout()
    }

    fn cached(&self) -> Option<String> {
        self.address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets the coordinator, so the next request finds it again.
    pub(crate) fn invalidate(&self) {
        *self
            .address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    async fn address(&self) -> Result<String> {
        if let Some(address) = self.cached() {
            return Ok(address);
        }
        let request = FindCoordinatorRequest {
            group_id: self.group_id.clone(),
        };
        let response: FindCoordinatorResponse = self
            .client
            .request_to_controller(ApiKey::FindCoordinator, &request)
            .await?;
        if !response.error_code.is_ok() {
            return Err(Error::Broker {
                context: format!("find the coordinator of group '{}'", self.group_id),
                code: response.error_code,
                message: response.error_message,
            });
        }
        let address = format!("{}:{}", response.host, response.port);
        *self
            .address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(address.clone());
        Ok(address)
    }

    /// Sends `request` to the coordinator. A transport failure forgets the
    /// coordinator; error codes in the response are the caller's to read (and
    /// [`CoordinatorLink::invalidate`] when they say the coordinator moved).
    pub(crate) async fn request<Req: Message, Resp: Message>(
        &self,
        api: ApiKey,
        request: &Req,
    ) -> Result<Resp> {
        let address = self.address().await?;
        let timeout = self.client.config().request_timeout();
        let result = self.client.request(&address, api, request, timeout).await;
        if result.is_err() {
            self.invalidate();
        }
        result
    }
}
