//! Request handlers, one module per API group. Each turns a decoded request into a
//! response frame (or none, for produce with acks=0).

mod admin;
mod fetch;
mod groups;
mod list_offsets;
mod produce;
mod produce_rules;

use std::net::SocketAddr;
use std::sync::Arc;

use fjord_protocol::messages::Request;
use tokio::sync::watch;

use super::order::Turn;
use super::response::ResponseFrame;
use crate::broker::Broker;

/// Who sent a request: from its header and its connection.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
    /// Turns true when the broker begins to shut down (parked fetches answer then).
    pub shutdown: watch::Receiver<bool>,
}

/// Handles one request. `turn` is its place in its connection's chain for its kind
/// (see [`super::order`]); handlers whose effects need no order just drop it.
pub async fn handle(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: Request,
    turn: Turn,
) -> Option<ResponseFrame> {
    let correlation_id = context.correlation_id;
    match request {
        Request::ApiVersions(_) => Some(admin::api_versions(correlation_id)),
        Request::Metadata(request) => Some(admin::metadata(broker, correlation_id, request).await),
        Request::CreateTopics(request) => {
            Some(admin::create_topics(broker, correlation_id, request).await)
        }
        Request::DeleteTopics(request) => {
            Some(admin::delete_topics(broker, correlation_id, request).await)
        }
        Request::Produce(request) => produce::handle(broker, correlation_id, request, turn).await,
        Request::Fetch(request) => Some(fetch::handle(broker, context, request, turn).await),
        Request::ListOffsets(request) => {
            Some(list_offsets::handle(broker, correlation_id, request))
        }
        Request::FindCoordinator(request) => {
            Some(groups::find_coordinator(broker, context, request).await)
        }
        Request::ConsumerGroupHeartbeat(request) => {
            Some(groups::heartbeat(broker, context, request).await)
        }
        Request::OffsetCommit(request) => {
            Some(groups::offset_commit(broker, context, request).await)
        }
        Request::OffsetFetch(request) => Some(groups::offset_fetch(broker, context, request)),
        Request::ListGroups(request) => Some(groups::list_groups(broker, context, request)),
        Request::DescribeGroups(request) => Some(groups::describe_groups(broker, context, request)),
    }
}
